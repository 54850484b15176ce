"""A directory as a backup target (`file:///path`), for a second disk, a mounted NAS, or tests.

Creating an object follows WAL rule 8: write a temporary file in the same folder, fsync it, link it to its
final name, fsync the folder. `os.link` fails if the name exists, so creation is atomic and create-only even
with two shippers racing: a name, once present, is never replaced. A crash leaves at most a hidden
temporary file (`.name.*.tmp`), which is never listed and is removed the next time the name is written.

Each object's SHA-256 sits beside it in `name.sha256`, in `sha256sum` format so an operator can run
`sha256sum -c` in the folder. It is created, create-only as well, by whoever created the object.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from service.backup.targets import (
    CHUNK,
    MANIFEST_NAME,
    Manifest,
    ObjectInfo,
    TargetError,
    digest_file,
    manifest_from_bytes,
    manifest_to_bytes,
)

SIDECAR = ".sha256"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(folder: Path, final_name: str, source: bytes | Path) -> Path:
    """A fsynced temporary copy of `source` in `folder`, named so no lister mistakes it for an object."""
    tmp = folder / f".{final_name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "xb") as out:
            if isinstance(source, Path):
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, CHUNK)
            else:
                out.write(source)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _create_only(path: Path, source: bytes | Path) -> bool:
    """Give `path` the content of `source` unless it exists (os.link refuses to replace a name, so of
    two racing writers exactly one succeeds); True if this call created it."""
    tmp = _write_temp(path.parent, path.name, source)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader (or a crash) sees the old file or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path.parent, path.name, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class DirectoryTarget:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._url = f"file://{root.absolute()}"

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"DirectoryTarget({self._url})"

    def _path(self, name: str) -> Path:
        parts = name.split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad object name {name!r}")
        return self.root.joinpath(*parts)

    def _error(self, name: str, exc: OSError) -> TargetError:
        return TargetError(f"{self._url}: {name}: {exc.strerror or exc}")

    def put_if_absent(self, name: str, source: bytes | Path, sha256: str) -> bool:
        final = self._path(name)
        sidecar = final.with_name(final.name + SIDECAR)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            created = not final.exists() and _create_only(final, source)
            if created or not sidecar.exists():
                # The winner writes the sidecar; a crash between the two links leaves an object without
                # one, which the next writer of the same bytes repairs (never for other bytes).
                if created or digest_file(final).sha256 == sha256:
                    _create_only(sidecar, f"{sha256}  {final.name}\n".encode())
        except OSError as exc:
            raise self._error(name, exc) from exc
        return created

    def head(self, name: str) -> ObjectInfo | None:
        path = self._path(name)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error(name, exc) from exc
        try:
            stored: str | None = path.with_name(path.name + SIDECAR).read_text().split()[0]
        except (OSError, IndexError):
            stored = None
        return ObjectInfo(size, stored)

    def digest(self, name: str) -> ObjectInfo:
        try:
            return digest_file(self._path(name))
        except OSError as exc:
            raise self._error(name, exc) from exc

    def get(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except OSError as exc:
            raise self._error(name, exc) from exc

    def get_to_file(self, name: str, dest: Path) -> None:
        try:
            shutil.copyfile(self._path(name), dest)
        except OSError as exc:
            raise self._error(name, exc) from exc

    def list(self, prefix: str) -> list[str]:
        folder = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        names: list[str] = []

        def fail(exc: OSError) -> None:  # os.walk would otherwise skip an unreadable folder silently
            raise exc

        try:
            if not folder.exists():
                return []
            for dirpath, _dirs, files in os.walk(folder, onerror=fail):
                rel = Path(dirpath).relative_to(self.root).as_posix()
                for file in files:
                    if file.startswith(".") or file.endswith(SIDECAR):
                        continue
                    names.append(file if rel == "." else f"{rel}/{file}")
        except OSError as exc:
            raise self._error(prefix, exc) from exc
        return sorted(names)

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            path.unlink(missing_ok=True)
            path.with_name(path.name + SIDECAR).unlink(missing_ok=True)
            with contextlib.suppress(FileNotFoundError):
                fsync_dir(path.parent)
        except OSError as exc:
            raise self._error(name, exc) from exc

    def read_manifest(self) -> Manifest | None:
        path = self.root / MANIFEST_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error(MANIFEST_NAME, exc) from exc
        return manifest_from_bytes(data, f"{self._url}/{MANIFEST_NAME}")

    def write_manifest(self, manifest: Manifest) -> None:
        try:
            write_atomically(self.root / MANIFEST_NAME, manifest_to_bytes(manifest))
        except OSError as exc:
            raise self._error(MANIFEST_NAME, exc) from exc

"""An S3-compatible bucket as a backup target (`s3://bucket/prefix`): AWS S3, Cloudflare R2, MinIO,
Backblaze B2, through obstore's blocking API (called from worker threads; obstore's async API is
asyncio-only, and the shipper must also run on trio).

Create-only: an upload first asks whether the name exists (so a present 64 MiB segment is not sent again),
then PUTs with `If-None-Match: *` (obstore's put mode "create"), which AWS S3, R2, MinIO and moto honour:
of two racing writers, the second gets 412 and nothing is overwritten. A store that answers "not
implemented" to the condition gets a plain PUT after the existence check; there a race between two
shippers of the same segment could let the later PUT replace the earlier one — with the same bytes, since
a sealed segment never changes, and the read-back check catches anything else.

The SHA-256 travels as user metadata (`x-amz-meta-sha256`), so `head` returns it without reading the
object, and the manifest can be rebuilt from the segments alone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    NotFoundError,
    NotSupportedError,
    PreconditionError,
)
from obstore.store import S3Store

from service.backup.targets import (
    CHUNK,
    MANIFEST_NAME,
    Manifest,
    ObjectInfo,
    TargetError,
    digest_chunks,
    manifest_from_bytes,
    manifest_to_bytes,
)

if TYPE_CHECKING:
    from service.config import BackupConfig, Secret

META_KEY = "sha256"


def is_loopback(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class S3Target:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: Secret | None = None,
        session_token: Secret | None = None,
        allow_http: bool = False,
        timeout_s: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        if endpoint:
            self._url += f" at {endpoint}"
        # Secrets to scrub from error texts, in case a library ever echoes one.
        self._secrets = [
            s.reveal() for s in (secret_access_key, session_token) if s is not None and s.reveal()
        ]
        config: dict[str, Any] = {}
        if endpoint:
            config["endpoint"] = endpoint
        if region:
            config["region"] = region
        if access_key_id:
            config["access_key_id"] = access_key_id
        if secret_access_key is not None:
            config["secret_access_key"] = secret_access_key.reveal()
        if session_token is not None:
            config["session_token"] = session_token.reveal()
        plain_http = bool(endpoint) and (allow_http or is_loopback(endpoint or ""))
        # obstore retries a failed request itself; keep that short, since the shipper has its own
        # backoff and its status should show an outage within one request timeout.
        self._store = S3Store(
            bucket,
            prefix=self.prefix or None,
            config=config,  # type: ignore[arg-type]
            client_options={
                "allow_http": plain_http,
                "timeout": timedelta(seconds=timeout_s),
                "connect_timeout": timedelta(seconds=min(timeout_s, 10.0)),
            },
            retry_config={
                "max_retries": max_retries,
                "retry_timeout": timedelta(seconds=timeout_s),
                "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2)},
            },
        )
        self._conditional = True  # False once the store said it cannot do If-None-Match

    @classmethod
    def from_url(cls, url: str, config: BackupConfig | None = None) -> S3Target:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"backup target {url!r}: expected s3://bucket/prefix")
        if config is None:
            return cls(parts.netloc, parts.path)
        s3 = config.s3
        return cls(
            parts.netloc,
            parts.path,
            endpoint=s3.endpoint,
            region=s3.region,
            access_key_id=s3.access_key_id,
            secret_access_key=s3.secret_access_key,
            session_token=s3.session_token,
            allow_http=s3.allow_http,
            timeout_s=config.request_timeout_s,
        )

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"S3Target({self._url})"

    def _error(self, name: str, exc: BaseException) -> TargetError:
        # obstore's text is a first line plus a long debug dump; the first line says what happened.
        text = str(exc).split("\n", 1)[0].strip() or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return TargetError(f"{self._url}: {name}: {text[:400]}")

    def put_if_absent(self, name: str, source: bytes | Path, sha256: str) -> bool:
        if self.head(name) is not None:
            return False
        attributes = {"Content-Type": "application/octet-stream", META_KEY: sha256}
        try:
            if self._conditional:
                try:
                    obstore.put(self._store, name, source, mode="create", attributes=attributes)
                    return True
                except (AlreadyExistsError, PreconditionError):
                    return False
                except NotSupportedError:
                    self._conditional = False
            obstore.put(self._store, name, source, attributes=attributes, use_multipart=False)
            return True
        except (BaseError, OSError) as exc:
            if "501" in str(exc).split("\n", 1)[0] and self._conditional:
                self._conditional = False  # "Not Implemented": a store without conditional PUT
                return self.put_if_absent(name, source, sha256)
            raise self._error(name, exc) from exc

    def head(self, name: str) -> ObjectInfo | None:
        try:
            result = obstore.get(self._store, name, options={"head": True})
        except (NotFoundError, FileNotFoundError):  # obstore raises the builtin
            return None
        except (BaseError, OSError) as exc:
            raise self._error(name, exc) from exc
        return ObjectInfo(result.meta["size"], result.attributes.get(META_KEY))

    def _chunks(self, name: str) -> Iterator[bytes]:
        try:
            result = obstore.get(self._store, name)
            for chunk in result.stream(min_chunk_size=CHUNK):
                yield bytes(chunk)
        except (BaseError, OSError) as exc:
            raise self._error(name, exc) from exc

    def digest(self, name: str) -> ObjectInfo:
        return digest_chunks(self._chunks(name))

    def get(self, name: str) -> bytes:
        return b"".join(self._chunks(name))

    def get_to_file(self, name: str, dest: Path) -> None:
        with open(dest, "wb") as out:
            for chunk in self._chunks(name):
                out.write(chunk)

    def list(self, prefix: str) -> list[str]:
        names: list[str] = []
        try:
            for batch in obstore.list(self._store, prefix=prefix.rstrip("/") or None):
                names.extend(meta["path"] for meta in batch)
        except (BaseError, OSError) as exc:
            raise self._error(prefix, exc) from exc
        return sorted(names)

    def delete(self, name: str) -> None:
        try:
            obstore.delete(self._store, name)
        except (NotFoundError, FileNotFoundError):  # obstore raises the builtin
            pass
        except (BaseError, OSError) as exc:
            raise self._error(name, exc) from exc

    def read_manifest(self) -> Manifest | None:
        try:
            data = bytes(obstore.get(self._store, MANIFEST_NAME).bytes())
        except (NotFoundError, FileNotFoundError):  # obstore raises the builtin
            return None
        except (BaseError, OSError) as exc:
            raise self._error(MANIFEST_NAME, exc) from exc
        return manifest_from_bytes(data, f"{self._url}/{MANIFEST_NAME}")

    def write_manifest(self, manifest: Manifest) -> None:
        try:
            obstore.put(
                self._store,
                MANIFEST_NAME,
                manifest_to_bytes(manifest),
                attributes={"Content-Type": "application/json"},
            )
        except (BaseError, OSError) as exc:
            raise self._error(MANIFEST_NAME, exc) from exc

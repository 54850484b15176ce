"""Configuration: a TOML file plus environment overrides, typed with attrs and checked before use.

Precedence, lowest first: the defaults here; the standard AWS_* variables (only for S3 settings the file
leaves unset); the file; `backup.s3.credentials_file`; then `DISCORD_TOKEN` and `INVITE_LEDGER_*`.
Every option carries its documentation in its attrs metadata ("doc"), so the README table
(`options_markdown`) and the example file (`render_example`, `deploy/invite-ledger.example.toml`) are
generated from, and checked against, one source.

An invalid file is refused with a message naming the key (`config error: wal.segment_bytes: expected an
integer, got "big"`); unknown keys are refused too, since a misspelt option silently falling back to its
default is how a backup ends up on the wrong disk. Relative paths are taken from the working directory.
"""

from __future__ import annotations

import configparser
import json
import os
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from service import convert

ENV_PREFIX = "INVITE_LEDGER_"
CONFIG_PATH_ENV = "INVITE_LEDGER_CONFIG"  # read by the command line, not an option of the file
MiB = 1024 * 1024


class ConfigError(ValueError):
    """A configuration that must not be used; str() is the line to show the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(f"config error: {message}")


class Secret:
    """A token or key: its repr and str are '***' so it never reaches a log; `reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


convert.register_value_type(Secret, lambda value, _type: Secret(str(value)), lambda secret: "***")


def _at_least(minimum: float) -> Callable[[Any, Any, Any], None]:
    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")

    return check


def option(
    default: Any,
    doc: str,
    *,
    env: tuple[str, ...] = (),
    fallback_env: tuple[str, ...] = (),
    example: str | None = None,
    validator: Callable[[Any, Any, Any], None] | None = None,
    snowflake: bool = False,
) -> Any:
    """A documented option. `env` names extra override variables (besides INVITE_LEDGER_{SECTION}_{KEY});
    `fallback_env` names variables used only when the file leaves the option unset; `example` is the TOML
    value shown, commented out, in the example file for options without a default. A `snowflake` (a
    Discord id, kept as a string like every id in the log) may also be written as a TOML integer."""
    metadata = {
        "doc": doc,
        "env": env,
        "fallback_env": fallback_env,
        "example": example,
        "snowflake": snowflake,
    }
    return attrs.field(default=default, validator=validator, metadata=metadata)


@attrs.frozen
class DiscordConfig:
    token: Secret | None = option(  # noqa: RUF009 (option() is attrs.field with docs; ruff cannot tell)
        None,
        "Bot token; better given by DISCORD_TOKEN or token_file than written here.",
        env=("DISCORD_TOKEN",),
        example='"..."',
    )
    token_file: str | None = option(
        None,
        "File holding the bot token (one line), e.g. a systemd credential.",
        example='"/run/credentials/invite-ledger.service/discord-token"',
    )
    api_base_url: str = option(
        "https://discord.com/api/v10",
        "Discord REST base URL; point it at the simulator (sim/) for the demo and tests.",
        env=("INVITE_LEDGER_DISCORD_API_BASE",),
    )
    join_log_channel_id: str | None = option(
        None,
        "Channel that receives one message per join (a snowflake); unset: none.",
        example='"123456789012345678"',
        snowflake=True,
    )
    young_account_days: int = option(
        7, "Accounts younger than this many days get the young_account flag.", validator=_at_least(0)
    )


@attrs.frozen
class StorageConfig:
    data_dir: str = option(
        "./data",
        "Directory of the log (wal/), the database and the backup state.",
        env=("INVITE_LEDGER_DATA_DIR",),
    )


@attrs.frozen
class WalConfig:
    segment_bytes: int = option(
        64 * MiB,
        "A log segment is sealed (and shipped) once it reaches this size.",
        validator=_at_least(4096),
    )
    batch_bytes: int = option(
        1 * MiB, "Most bytes one group commit writes before its fdatasync.", validator=_at_least(4096)
    )


@attrs.frozen
class S3Config:
    endpoint: str | None = option(
        None,
        "S3 API endpoint (R2, MinIO, B2...); unset: AWS. http:// is allowed only for loopback.",
        fallback_env=("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        example='"https://ACCOUNT.r2.cloudflarestorage.com"',
    )
    region: str | None = option(
        None,
        'Bucket region (R2: "auto"); unset: us-east-1.',
        fallback_env=("AWS_REGION", "AWS_DEFAULT_REGION"),
        example='"us-east-1"',
    )
    access_key_id: str | None = option(
        None,
        "Access key id; or AWS_ACCESS_KEY_ID, or credentials_file.",
        fallback_env=("AWS_ACCESS_KEY_ID",),
        example='"AKIA..."',
    )
    secret_access_key: Secret | None = option(  # noqa: RUF009 (option() is attrs.field with docs; ruff cannot tell)
        None,
        "Secret access key; better given by AWS_SECRET_ACCESS_KEY or credentials_file.",
        fallback_env=("AWS_SECRET_ACCESS_KEY",),
        example='"..."',
    )
    session_token: Secret | None = option(  # noqa: RUF009 (option() is attrs.field with docs; ruff cannot tell)  # noqa: RUF009 (option() is attrs.field with docs; ruff cannot tell)
        None, "Session token for temporary credentials.", fallback_env=("AWS_SESSION_TOKEN",), example='"..."'
    )
    credentials_file: str | None = option(
        None,
        "AWS-style credentials file (INI: aws_access_key_id, aws_secret_access_key).",
        example='"/etc/invite-ledger/s3-credentials"',
    )
    profile: str = option("default", "Section of credentials_file to read.")
    allow_http: bool = option(False, "Allow a plain-http endpoint that is not loopback (testing only).")


@attrs.frozen
class BackupConfig:
    targets: tuple[str, ...] | None = option(
        None,
        "Where sealed log segments are copied: file:///path and s3://bucket/prefix URLs (env: comma-"
        "separated). Unset: file://{data_dir}/backups, which is on the same disk; [] turns backup off.",
        example='["s3://my-bucket/invite-ledger", "file:///mnt/backup-disk/invite-ledger"]',
    )
    interval_s: float = option(
        60.0,
        "Seconds between scans for sealed segments (a sealed segment also wakes the shipper).",
        validator=_at_least(0.01),
    )
    retry_min_s: float = option(
        1.0,
        "First retry delay after a failed upload; doubles per failure, with jitter.",
        validator=_at_least(0.001),
    )
    retry_max_s: float = option(300.0, "Longest retry delay.", validator=_at_least(0.001))
    active_prefix_interval_s: float = option(
        300.0,
        "Also ship the active segment's durable prefix this often (seconds), bounding what an"
        " off-box restore can miss; 0 turns it off.",
        validator=_at_least(0),
    )
    request_timeout_s: float = option(
        60.0, "Timeout of one request to an S3 target.", validator=_at_least(0.1)
    )
    s3: S3Config = attrs.field(factory=S3Config, metadata={"doc": "S3-compatible storage settings."})


@attrs.frozen
class AttributionConfig:
    dedup_window_s: float = option(
        60.0,
        "A repeated member-join for the same member within this many seconds is a duplicate.",
        validator=_at_least(0),
    )
    fetch_timeout_s: float = option(
        10.0, "Timeout of one invite fetch from Discord.", validator=_at_least(0.1)
    )
    max_wait_s: float = option(
        30.0,
        "Longest a join waits for an invite fetch before it is recorded as unattributed.",
        validator=_at_least(0.1),
    )
    gateway_latency_s: float = option(
        3.0,
        "Longest delay between a join and its GUILD_MEMBER_ADD; a fetch is compared only after it.",
        validator=_at_least(0.0),
    )
    audit_log_latency_s: float = option(
        5.0,
        "Longest a join that may have used an invite deleted by hand waits for the deletion's audit log "
        "entry (its final use count) before it is recorded ambiguous; 0 never waits.",
        validator=_at_least(0.0),
    )


@attrs.frozen
class HttpConfig:
    enabled: bool = option(False, "Serve /healthz and /metrics on 127.0.0.1.")
    port: int = option(9464, "Port of the health and metrics endpoint.", validator=_at_least(1))


@attrs.frozen
class LoggingConfig:
    format: Literal["kv", "json"] = option("kv", 'Log line format: "kv" (key=value) or "json".')
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = option("INFO", "Least severe level logged.")


@attrs.frozen
class Config:
    discord: DiscordConfig = attrs.field(factory=DiscordConfig, metadata={"doc": "The Discord bot."})
    storage: StorageConfig = attrs.field(factory=StorageConfig, metadata={"doc": "Local files."})
    wal: WalConfig = attrs.field(factory=WalConfig, metadata={"doc": "The write-ahead log."})
    backup: BackupConfig = attrs.field(
        factory=BackupConfig, metadata={"doc": "Copies of sealed log segments off the machine."}
    )
    attribution: AttributionConfig = attrs.field(
        factory=AttributionConfig, metadata={"doc": "Deciding which invite a member used."}
    )
    http: HttpConfig = attrs.field(factory=HttpConfig, metadata={"doc": "Health and metrics endpoint."})
    logging: LoggingConfig = attrs.field(factory=LoggingConfig, metadata={"doc": "Log output."})
    source: str | None = attrs.field(default=None, eq=False)  # the file it came from, for messages

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir)

    @property
    def wal_dir(self) -> Path:
        return self.data_dir / "wal"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    @property
    def backup_state_path(self) -> Path:
        return self.data_dir / "backup-state.json"

    @property
    def backup_targets(self) -> tuple[str, ...]:
        """The target URLs in effect: the configured ones, or the default directory under data_dir."""
        if self.backup.targets is None:
            return (f"file://{(self.data_dir / 'backups').absolute()}",)
        return self.backup.targets

    def warnings(self) -> list[str]:
        """Start-up warnings: things that work but leave the log less safe than it should be."""
        found: list[str] = []
        if not self.backup_targets:
            found.append("backup is off (backup.targets = []): the log exists only on this machine's disk")
        for url in self.backup_targets:
            directory = _directory_of(url)
            if directory is not None and _same_disk(directory, self.data_dir):
                found.append(
                    f"backup target {url} is on the same disk as {self.data_dir}: it is not off-box and will "
                    "not survive losing the disk; add an s3:// target or a directory on another machine"
                )
        if self.source is not None and (self.discord.token or self.backup.s3.secret_access_key):
            try:
                mode = Path(self.source).stat().st_mode
            except OSError:
                mode = 0
            if mode & 0o077:
                found.append(f"{self.source} holds a secret and is readable by others: chmod 600 it")
        return found


def _directory_of(url: str) -> Path | None:
    if url.startswith("file://"):
        return Path(url.removeprefix("file://"))
    if "://" not in url:
        return Path(url)
    return None


def _same_disk(a: Path, b: Path) -> bool:
    def device(path: Path) -> int | None:
        path = path.absolute()
        for candidate in (path, *path.parents):  # the nearest existing ancestor decides the disk
            try:
                return candidate.stat().st_dev
            except OSError:
                continue
        return None

    if a.absolute().is_relative_to(b.absolute()):
        return True
    dev_a, dev_b = device(a), device(b)
    return dev_a is not None and dev_a == dev_b


# ---- the option tree ---------------------------------------------------------------------------------


@attrs.frozen
class OptionInfo:
    key: str  # dotted, e.g. "wal.segment_bytes"
    type_name: str
    default: Any
    doc: str
    env: tuple[str, ...]
    fallback_env: tuple[str, ...]
    example: str | None
    field: attrs.Attribute[Any]
    annotation: Any


def iter_options(cls: type[Any] = Config, prefix: str = "") -> Iterator[OptionInfo]:
    """Every option, in file order, with its documentation (nested tables such as backup.s3 included)."""
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        if field.name == "source" and cls is Config:
            continue
        key = f"{prefix}{field.name}"
        annotation = hints[field.name]
        if attrs.has(annotation):
            yield from iter_options(annotation, key + ".")
            continue
        env = (ENV_PREFIX + key.replace(".", "_").upper(), *field.metadata.get("env", ()))
        yield OptionInfo(
            key=key,
            type_name=_type_name(annotation),
            default=field.default,
            doc=field.metadata["doc"],
            env=env,
            fallback_env=field.metadata.get("fallback_env", ()),
            example=field.metadata.get("example"),
            field=field,
            annotation=annotation,
        )


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _type_name(tp: Any) -> str:
    inner, optional = _unwrap_optional(tp)
    if typing.get_origin(inner) is Literal:
        name = "one of " + ", ".join(json.dumps(a) for a in typing.get_args(inner))
    elif typing.get_origin(inner) is tuple:
        name = "list of strings"
    else:
        name = {int: "integer", float: "number", bool: "boolean", str: "string", Secret: "secret string"}[
            inner
        ]
    return f"{name} (optional)" if optional else name


# ---- loading -----------------------------------------------------------------------------------------


def load_config(path: Path | None, env: Mapping[str, str]) -> Config:
    """The configuration from `path` (None: defaults only) and `env`; raises ConfigError naming the key."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _check_table(Config, data, "", {})  # unknown keys and types in the file itself, before merging
    sources: dict[str, str] = {}
    for info in iter_options():
        present = _lookup(data, info.key) is not None
        for name in info.env:
            # An empty variable counts as unset (compose files pass them), except for a list: "" is [].
            if env.get(name) or (
                name in env and typing.get_origin(_unwrap_optional(info.annotation)[0]) is tuple
            ):
                _assign(data, info.key, _from_env(info.annotation, env[name]))
                sources[info.key] = name
                break
        else:
            if not present:
                for name in info.fallback_env:
                    if env.get(name):
                        _assign(data, info.key, _from_env(info.annotation, env[name]))
                        sources[info.key] = name
                        break
    _check_table(Config, data, "", sources)
    _read_credential_files(data, sources)
    result: Config = convert.structure(data, Config)
    return attrs.evolve(result, source=None if path is None else str(path))


def unknown_env(env: Mapping[str, str]) -> list[str]:
    """INVITE_LEDGER_* variables that set no option (likely misspelt); the caller may warn about them."""
    known = {name for info in iter_options() for name in info.env} | {CONFIG_PATH_ENV}
    return sorted(n for n in env if n.startswith(ENV_PREFIX) and n not in known)


def _lookup(data: Mapping[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _assign(data: dict[str, Any], key: str, value: Any) -> None:
    *tables, last = key.split(".")
    node = data
    for part in tables:
        node = node.setdefault(part, {})
    node[last] = value


def _from_env(annotation: Any, text: str) -> Any:
    """An environment string as the option's type; a string that does not parse is left as it is, so the
    type check reports it with the key and the variable's name."""
    inner, _ = _unwrap_optional(annotation)
    if typing.get_origin(inner) is tuple:
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        if inner is int:
            return int(text)
        if inner is float:
            return float(text)
    except ValueError:
        return text
    if inner is bool and text.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return text.strip().lower() in ("1", "true", "yes", "on")
    return text


def _check_table(cls: type[Any], table: Any, prefix: str, sources: Mapping[str, str]) -> None:
    if not isinstance(table, dict):  # a TOML table; mutable, so snowflakes can be normalised
        raise ConfigError(f"{prefix.rstrip('.')}: expected a table, got {_show(table)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in attrs.fields(cls) if not (cls is Config and f.name == "source")}
    unknown = [f"{prefix}{k}" for k in table if k not in fields]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ConfigError(f"unknown key{plural} {', '.join(unknown)} (see deploy/invite-ledger.example.toml)")
    for name, value in table.items():
        key = f"{prefix}{name}"
        annotation = hints[name]
        if attrs.has(annotation):
            _check_table(annotation, value, key + ".", sources)
            continue
        where = f"{key} (from {sources[key]})" if key in sources else key
        if fields[name].metadata.get("snowflake") and isinstance(value, int) and not isinstance(value, bool):
            value = table[name] = str(value)
        problem = _type_problem(annotation, value)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")
        validator = fields[name].validator
        if validator is not None:
            try:
                validator(None, fields[name], value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None


def _type_problem(annotation: Any, value: Any) -> str | None:
    inner, _ = _unwrap_optional(annotation)
    if typing.get_origin(inner) is Literal:
        choices = typing.get_args(inner)
        if value in choices:
            return None
        return f"expected one of {', '.join(json.dumps(c) for c in choices)}, got {_show(value)}"
    if typing.get_origin(inner) is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return None
        return f"expected a list of strings, got {_show(value)}"
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
        Secret: isinstance(value, str),
    }[inner]
    if ok:
        return None
    article = {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        Secret: "a string",
    }
    return f"expected {article[inner]}, got {_show(value)}"


def _show(value: Any) -> str:
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _read_credential_files(data: dict[str, Any], sources: dict[str, str]) -> None:
    """Replace file references by their contents: discord.token_file, backup.s3.credentials_file. A
    credentials file beats the ambient AWS_* variables but not keys set in the file or INVITE_LEDGER_*."""
    token_file = _lookup(data, "discord.token_file")
    if token_file and _lookup(data, "discord.token") is None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"discord.token_file: cannot read {token_file}: {exc.strerror or exc}"
            ) from None
        _assign(data, "discord.token", token)
    cred_file = _lookup(data, "backup.s3.credentials_file")
    if not cred_file:
        return
    profile = _lookup(data, "backup.s3.profile") or "default"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(cred_file) as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as exc:
        raise ConfigError(f"backup.s3.credentials_file: cannot read {cred_file}: {exc}") from None
    if not parser.has_section(profile):
        raise ConfigError(f"backup.s3.credentials_file: {cred_file} has no [{profile}] section")
    section = parser[profile]
    for key, ini_key in (
        ("access_key_id", "aws_access_key_id"),
        ("secret_access_key", "aws_secret_access_key"),
        ("session_token", "aws_session_token"),
    ):
        dotted = f"backup.s3.{key}"
        ambient = sources.get(dotted, "").startswith("AWS_")  # came from a fallback AWS_* variable
        if ini_key in section and (_lookup(data, dotted) is None or ambient):
            _assign(data, dotted, section[ini_key])


# ---- documentation and checks ------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return repr(value)


def options_markdown() -> str:
    """The README's table of options."""
    lines = ["| option | type | default | environment | meaning |", "| --- | --- | --- | --- | --- |"]
    for info in iter_options():
        default = "unset" if info.default is None else f"`{_toml_value(info.default)}`"
        env = ", ".join(f"`{n}`" for n in (*info.env, *info.fallback_env))
        lines.append(f"| `{info.key}` | {info.type_name} | {default} | {env} | {info.doc} |")
    return "\n".join(lines) + "\n"


def render_example() -> str:
    """The example file: every option with its documentation, defaults set, the rest commented out."""
    out = [
        "# invite-ledger configuration: every option, with its default. Check a file with",
        "#   invite-ledger config check FILE",
        "# Environment variables override the file (DISCORD_TOKEN, INVITE_LEDGER_<SECTION>_<KEY>).",
    ]
    section = None
    for info in iter_options():
        table = info.key.rpartition(".")[0]
        if table != section:
            section = table
            out += ["", f"[{table}]"]
        out.append(f"# {info.doc}")
        if info.default is None:
            out.append(f"# {info.key.rpartition('.')[2]} = {info.example}")
        else:
            out.append(f"{info.key.rpartition('.')[2]} = {_toml_value(info.default)}")
    return "\n".join(out) + "\n"


def missing_from_example(text: str) -> list[str]:
    """Options (dotted keys) that an example file does not show, set or commented out, with their doc line
    right above them in the right table."""
    shown: set[str] = set()
    table, previous = "", ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            table = line.strip("[]").strip()
        else:
            body = line.removeprefix("#").strip()
            if "=" in body and previous.startswith("#"):
                shown.add(f"{table}.{body.split('=', 1)[0].strip()}|{previous.removeprefix('#').strip()}")
        previous = line
    return [info.key for info in iter_options() if f"{info.key}|{info.doc}" not in shown]


def config_check(path: Path, env: Mapping[str, str]) -> tuple[int, list[str]]:
    """For `invite-ledger config check FILE`: an exit status and the lines to print."""
    try:
        config = load_config(path, env)
    except ConfigError as exc:
        return 2, [str(exc)]
    lines = [f"warning: {w}" for w in config.warnings()]
    lines += [f"warning: {n} is set but is not an option" for n in unknown_env(env)]
    lines.append(
        f"{path}: ok (data in {config.data_dir}, backup to {', '.join(config.backup_targets) or 'nowhere'})"
    )
    return 0, lines


def load_from_environment(env: Mapping[str, str] | None = None) -> Config:
    """The configuration for the running service: the file named by INVITE_LEDGER_CONFIG, if any."""
    env = os.environ if env is None else env
    path = env.get(CONFIG_PATH_ENV)
    return load_config(Path(path) if path else None, env)

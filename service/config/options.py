"""Every option of the configuration file: its default, its check and its documentation, in one place.

Each table of the file is an attrs class, each option an `option()` field whose metadata carries the
documentation and the environment variables, so the README table and the example file are generated from
here (`documentation.py`) and the loader knows each option's type and check (`loading.py`). `Config` is
the whole file, with the paths derived from it and the start-up warnings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import attrs

from service import convert

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

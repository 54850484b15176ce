"""Configuration: a TOML file plus environment overrides, typed with attrs and checked before use.

Precedence, lowest first: the defaults here; the standard AWS_* variables (only for S3 settings the file
leaves unset); the file; `backup.s3.credentials_file`; then `DISCORD_TOKEN` and `INVITE_LEDGER_*`.
Every option carries its documentation in its attrs metadata ("doc"), so the README table
(`options_markdown`) and the example file (`render_example`, `deploy/invite-ledger.example.toml`) are
generated from, and checked against, one source.

An invalid file is refused with a message naming the key (`config error: wal.segment_bytes: expected an
integer, got "big"`); unknown keys are refused too, since a misspelt option silently falling back to its
default is how a backup ends up on the wrong disk. Relative paths are taken from the working directory.

The package, by what a reader comes for: `options.py` (every option, with its default, check and
documentation, and the `Config` they make up), `option_tree.py` (the options walked as dotted keys with
their types and environment variables), `loading.py` (the file, the environment, the credential files and
the checks that name the key) and `documentation.py` (the README table and the example file, generated from
the options).
"""

from service.config.documentation import missing_from_example, options_markdown, render_example
from service.config.loading import (
    CONFIG_PATH_ENV,
    config_check,
    load_config,
    load_from_environment,
    unknown_env,
)
from service.config.option_tree import ENV_PREFIX, OptionInfo, iter_options
from service.config.options import (
    AttributionConfig,
    BackupConfig,
    Config,
    ConfigError,
    DiscordConfig,
    HttpConfig,
    LoggingConfig,
    MiB,
    S3Config,
    Secret,
    StorageConfig,
    WalConfig,
    option,
)

__all__ = [
    "CONFIG_PATH_ENV",
    "ENV_PREFIX",
    "AttributionConfig",
    "BackupConfig",
    "Config",
    "ConfigError",
    "DiscordConfig",
    "HttpConfig",
    "LoggingConfig",
    "MiB",
    "OptionInfo",
    "S3Config",
    "Secret",
    "StorageConfig",
    "WalConfig",
    "config_check",
    "iter_options",
    "load_config",
    "load_from_environment",
    "missing_from_example",
    "option",
    "options_markdown",
    "render_example",
    "unknown_env",
]

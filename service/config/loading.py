"""Loading a configuration: the TOML file, the environment overrides, the credential files, and the checks.

The precedence is in the package docstring (`service/config/__init__.py`). Every value is checked against
its option's type and validator before `Config` is built, so an error names the key (and the variable it
came from); `config_check` is `invite-ledger config check FILE`.
"""

from __future__ import annotations

import configparser
import json
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from service import convert
from service.config.option_tree import ENV_PREFIX, _unwrap_optional, iter_options
from service.config.options import Config, ConfigError, Secret

CONFIG_PATH_ENV = "INVITE_LEDGER_CONFIG"  # read by the command line, not an option of the file


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

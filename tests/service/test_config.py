"""Configuration: defaults, environment overrides, errors that name the key, secrets kept out of repr, and
the example file agreeing with the documented options."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.config import (
    Config,
    ConfigError,
    Secret,
    config_check,
    iter_options,
    load_config,
    missing_from_example,
    options_markdown,
    render_example,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "invite-ledger.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_defaults() -> None:
    config = load_config(None, {})
    assert config.data_dir == Path("data")
    assert config.wal_dir == Path("data/wal")
    assert config.db_path.parent == config.data_dir
    assert config.backup_state_path.parent == config.data_dir
    assert config.wal.segment_bytes == 64 * 1024 * 1024
    assert config.discord.api_base_url == "https://discord.com/api/v10"
    assert config.discord.young_account_days == 7
    assert config.discord.token is None
    assert config.backup.active_prefix_interval_s == 300  # the active segment goes off-box every 5 min
    assert config.http.enabled is False
    assert config.logging.format == "kv"
    assert config.backup_targets == (f"file://{Path('data/backups').absolute()}",)
    [warning] = config.warnings()
    assert "same disk" in warning and "not off-box" in warning


def test_every_option_is_documented_with_a_default() -> None:
    options = list(iter_options())
    assert len(options) > 20
    for info in options:
        assert info.doc.strip(), info.key
        assert info.default is not None or info.example is not None, info.key
    table = options_markdown()
    for info in options:
        assert f"`{info.key}`" in table


def test_file_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
[storage]
data_dir = "{tmp_path / "d"}"
[wal]
segment_bytes = 1048576
[backup]
targets = ["s3://bucket/prefix", "file:///mnt/other"]
interval_s = 5
[backup.s3]
endpoint = "http://127.0.0.1:9000"
[logging]
format = "json"
[discord]
join_log_channel_id = 123456789012345678
""",
    )
    config = load_config(path, {})
    assert config.wal_dir == tmp_path / "d" / "wal"
    assert config.wal.segment_bytes == 1048576
    assert config.backup.targets == ("s3://bucket/prefix", "file:///mnt/other")
    assert config.backup.interval_s == 5.0 and isinstance(config.backup.interval_s, float)
    assert config.backup.s3.endpoint == "http://127.0.0.1:9000"
    assert config.logging.format == "json"
    assert config.discord.join_log_channel_id == "123456789012345678"  # a snowflake stays a string
    assert config.source == str(path)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[wal]\nsegment_bytes = 1048576\n[discord]\napi_base_url = "https://x.invalid"\n')
    env = {
        "DISCORD_TOKEN": "tok-123",
        "INVITE_LEDGER_DATA_DIR": str(tmp_path / "env-data"),
        "INVITE_LEDGER_BACKUP_TARGETS": "s3://b/p, file:///srv/b",
        "INVITE_LEDGER_DISCORD_API_BASE": "http://127.0.0.1:8080/api/v10",
        "INVITE_LEDGER_WAL_SEGMENT_BYTES": "2097152",
        "INVITE_LEDGER_HTTP_ENABLED": "true",
        "INVITE_LEDGER_BACKUP_S3_ENDPOINT": "http://127.0.0.1:9000",
        "AWS_ENDPOINT_URL": "https://ignored.example",  # a fallback loses to the explicit variable
        "AWS_ACCESS_KEY_ID": "AKIDENV",
        "AWS_SECRET_ACCESS_KEY": "env-secret",
        "AWS_REGION": "eu-west-3",
    }
    config = load_config(path, env)
    assert config.discord.token == Secret("tok-123")
    assert config.data_dir == tmp_path / "env-data"
    assert config.backup.targets == ("s3://b/p", "file:///srv/b")
    assert config.discord.api_base_url == "http://127.0.0.1:8080/api/v10"
    assert config.wal.segment_bytes == 2097152
    assert config.http.enabled is True
    assert config.backup.s3.endpoint == "http://127.0.0.1:9000"
    assert config.backup.s3.access_key_id == "AKIDENV"
    assert config.backup.s3.secret_access_key == Secret("env-secret")
    assert config.backup.s3.region == "eu-west-3"
    # Only a directory target can share the data disk (here /srv/b may, on a one-disk test machine).
    assert all(w.startswith("backup target file:///srv/b ") for w in config.warnings())


def test_aws_variables_do_not_beat_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[backup.s3]\nregion = "auto"\n')
    config = load_config(path, {"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "x"})
    assert config.backup.s3.region == "auto"


def test_empty_target_list_turns_backup_off_with_a_warning() -> None:
    config = load_config(None, {"INVITE_LEDGER_BACKUP_TARGETS": ""})
    assert config.backup_targets == ()
    assert any("backup is off" in w for w in config.warnings())


def test_token_and_credentials_files(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("file-token\n")
    creds = tmp_path / "creds"
    creds.write_text(
        "[default]\naws_access_key_id = A1\naws_secret_access_key = S1\n"
        "[r2]\naws_access_key_id = A2\naws_secret_access_key = S2\n"
    )
    path = write(
        tmp_path,
        f'[discord]\ntoken_file = "{token}"\n[backup.s3]\ncredentials_file = "{creds}"\nprofile = "r2"\n',
    )
    config = load_config(path, {"AWS_ACCESS_KEY_ID": "ambient", "AWS_SECRET_ACCESS_KEY": "ambient"})
    assert config.discord.token == Secret("file-token")
    assert config.backup.s3.access_key_id == "A2"
    assert config.backup.s3.secret_access_key == Secret("S2")
    # DISCORD_TOKEN beats the token file.
    assert load_config(path, {"DISCORD_TOKEN": "env"}).discord.token == Secret("env")


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (
            '[wal]\nsegment_bytes = "big"\n',
            {},
            'config error: wal.segment_bytes: expected an integer, got "big"',
        ),
        ("[wal]\nsegment_bytes = true\n", {}, "wal.segment_bytes: expected an integer, got true"),
        ("[wal]\nsegment_bytes = 10\n", {}, "wal.segment_bytes: must be at least 4096, got 10"),
        ('[logging]\nformat = "xml"\n', {}, 'logging.format: expected one of "kv", "json", got "xml"'),
        ('[backup]\ntargets = "s3://b"\n', {}, "backup.targets: expected a list of strings"),
        ("[backup]\ninterval_s = -1\n", {}, "backup.interval_s: must be at least"),
        ('[http]\nenabled = "yes"\n', {}, "http.enabled: expected true or false"),
        ("[wal]\nsegmnt_bytes = 1\n", {}, "unknown key wal.segmnt_bytes"),
        ("[wall]\nx = 1\n", {}, "unknown key wall"),
        ("[backup.s3]\nbucket = 1\nkey = 2\n", {}, "unknown keys backup.s3.bucket, backup.s3.key"),
        ("wal = 3\n", {}, "wal: expected a table, got 3"),
        ("[wal\n", {}, "not valid TOML"),
        (
            "",
            {"INVITE_LEDGER_WAL_SEGMENT_BYTES": "big"},
            'wal.segment_bytes (from INVITE_LEDGER_WAL_SEGMENT_BYTES): expected an integer, got "big"',
        ),
    ],
)
def test_invalid_configuration_names_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env)
    assert message in str(info.value)
    assert str(info.value).startswith("config error: ")


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml", {})
    path = write(tmp_path, f'[discord]\ntoken_file = "{tmp_path / "nope"}"\n')
    with pytest.raises(ConfigError, match=r"discord\.token_file: cannot read"):
        load_config(path, {})


def test_secrets_never_appear_in_repr(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[backup.s3]\nsecret_access_key = "s3-very-secret"\nsession_token = "sess-secret"\n'
    )
    config = load_config(path, {"DISCORD_TOKEN": "discord-very-secret"})
    for text in (repr(config), str(config), f"{config.discord.token}", repr(config.backup.s3)):
        assert "very-secret" not in text and "sess-secret" not in text
    assert "***" in repr(config)
    assert config.discord.token is not None and config.discord.token.reveal() == "discord-very-secret"


def test_world_readable_file_with_a_secret_warns(tmp_path: Path) -> None:
    path = write(tmp_path, '[discord]\ntoken = "t"\n[backup]\ntargets = []\n')
    path.chmod(0o644)
    assert any("chmod 600" in w for w in load_config(path, {}).warnings())


def test_same_disk_directory_target_warns(tmp_path: Path) -> None:
    path = write(
        tmp_path, f'[storage]\ndata_dir = "{tmp_path}/data"\n[backup]\ntargets = ["file://{tmp_path}/b"]\n'
    )
    [warning] = load_config(path, {}).warnings()
    assert "same disk" in warning


def test_example_file_loads_and_shows_every_option() -> None:
    text = EXAMPLE.read_text()
    assert missing_from_example(text) == []
    # Every value it sets is the default, so the example documents rather than changes behaviour.
    assert load_config(EXAMPLE, {}) == load_config(None, {})
    assert text == render_example(), "regenerate: python -c 'from service.config import render_example; ...'"


def test_missing_from_example_notices_an_absent_option() -> None:
    text = EXAMPLE.read_text().replace("young_account_days = 7", "")
    assert missing_from_example(text) == ["discord.young_account_days"]


def test_config_check() -> None:
    status, lines = config_check(EXAMPLE, {"INVITE_LEDGER_WALL_SEGMENT_BYTES": "1"})
    assert status == 0
    assert any("same disk" in line for line in lines)
    assert any("INVITE_LEDGER_WALL_SEGMENT_BYTES is set but is not an option" in line for line in lines)
    assert lines[-1].endswith(")") and ": ok" in lines[-1]


def test_config_check_reports_errors(tmp_path: Path) -> None:
    status, lines = config_check(write(tmp_path, "[wal]\nbatch_bytes = 1.5\n"), {})
    assert status == 2
    assert lines == ["config error: wal.batch_bytes: expected an integer, got 1.5"]


def test_config_is_a_frozen_attrs_value() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.storage = None  # type: ignore[misc, assignment]
    assert os.fspath(config.wal_dir).endswith("wal")

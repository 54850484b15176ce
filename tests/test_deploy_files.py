"""The deployment files, checked as far as a machine without a container engine allows: the unit's
directives (and `systemd-analyze verify` where it exists), the Dockerfile's shape, its HEALTHCHECK command
run for real against the health endpoint, compose.yaml parsed, and its bucket job's script run with a fake
`mc`. Environment variable names are checked against the real configuration options."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import anyio
import pytest

from service.config import iter_options
from service.health import DISCORD, RECOVERY, HealthServer, Readiness
from service.metrics import ServiceMetrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "invite-ledger.service"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
OPTION_ENV = {name for info in iter_options() for name in (*info.env, *info.fallback_env)}


def unit_directives() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line}"
        current.setdefault(key, []).append(value)
    return sections


def test_unit_has_the_required_directives() -> None:
    sections = unit_directives()
    service = {key: values[-1] for key, values in sections["Service"].items()}
    expected = {
        "Restart": "always",
        "User": "invite-ledger",
        "Group": "invite-ledger",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/invite-ledger",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "EnvironmentFile": "/etc/invite-ledger/env",
        "ExecStart": "/opt/invite-ledger/.venv/bin/invite-ledger run --config /etc/invite-ledger/config.toml",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert int(service["RestartSec"]) > 0
    assert 5 < int(service["TimeoutStopSec"]) <= 30  # a bit over the 5 s drain
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]
    # no secret in the world-readable unit, and the env file's permissions are documented
    assert not any(
        "TOKEN" in value or "SECRET" in value for value in sections["Service"].get("Environment", [])
    )
    assert "chmod 600 /etc/invite-ledger/env" in UNIT.read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # The real ExecStart does not exist here; everything else is verified as written.
    text = re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/bin/true", UNIT.read_text())
    copy = tmp_path / "invite-ledger.service"
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            result.append((instruction.upper(), arguments.strip()))
    return result


def test_dockerfile_shape() -> None:
    instructions = dockerfile_instructions()
    froms = [args for ins, args in instructions if ins == "FROM"]
    assert all(args.split()[0] == "python:3.11-slim" for args in froms)
    runtime = instructions[max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM") :]
    users = [args for ins, args in runtime if ins == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(ins == "RUN" and re.search(r"pip install \.(\s|$)", args) for ins, args in instructions)
    assert ("VOLUME", '["/data"]') in runtime
    [healthcheck] = [args for ins, args in runtime if ins == "HEALTHCHECK"]
    assert "/healthz" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck
    # every package directory setuptools collects is copied into the build
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = {args.split()[0] for ins, args in instructions if ins == "COPY"}
    assert [p for p in packages if (ROOT / p).is_dir() and p not in copied] == []
    # the environment it sets names real options
    env_names = set(
        re.findall(r"\b(INVITE_LEDGER_[A-Z0-9_]+)=", " ".join(a for i, a in runtime if i == "ENV"))
    )
    assert env_names and env_names <= OPTION_ENV


def healthcheck_argv() -> list[str]:
    [healthcheck] = [args for ins, args in dockerfile_instructions() if ins == "HEALTHCHECK"]
    argv = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


@pytest.mark.anyio
async def test_the_image_healthcheck_command_follows_readiness() -> None:
    metrics = ServiceMetrics.create()
    readiness = Readiness(gauge=metrics.ready)
    server = HealthServer(readiness, metrics.registry, port=0)
    argv = healthcheck_argv()

    async def check(port: int, **extra_env: str) -> int:
        env = {**os.environ, "INVITE_LEDGER_HTTP_PORT": str(port), **extra_env}
        with anyio.fail_after(20):
            result = await anyio.run_process(argv, env=env, check=False)
        return result.returncode

    async with anyio.create_task_group() as tg:
        port = await tg.start(server.run)
        assert await check(port) == 1  # 503: recovering, not logged in
        readiness.mark_ready(RECOVERY)
        readiness.mark_ready(DISCORD)
        assert await check(port) == 0
        # a proxy in the environment must not capture the loopback request
        assert await check(port, HTTP_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9") == 0
        readiness.mark_not_ready(DISCORD, "gateway disconnected")
        assert await check(port) == 1
        tg.cancel_scope.cancel()
    assert await check(port) == 1  # nothing listening


def compose() -> dict:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_wires_the_bot_minio_and_the_bucket_job() -> None:
    data = compose()
    services = data["services"]
    assert set(services) == {"bot", "minio", "bucket"}
    bot, minio, bucket = services["bot"], services["minio"], services["bucket"]

    build = bot["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT and (context / build["dockerfile"]).resolve() == DOCKERFILE
    assert bot["depends_on"] == {"bucket": {"condition": "service_completed_successfully"}}
    assert bucket["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert minio["healthcheck"]["test"]
    assert bucket["restart"] == "no"
    assert "ledger-data:/data" in bot["volumes"]
    assert set(data["volumes"]) == {"ledger-data", "minio-data"}
    assert bot["init"] is True
    assert int(bot["stop_grace_period"].rstrip("s")) > 5

    env = bot["environment"]
    for name in ("DISCORD_TOKEN", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert name in env
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert env["INVITE_LEDGER_BACKUP_TARGETS"].startswith("s3://")
    assert {n for n in env if n.startswith("INVITE_LEDGER_")} <= OPTION_ENV
    assert {n for n in env if n.startswith("AWS_")} <= OPTION_ENV
    # secrets come from .env, required (:?), never written in the file
    for service in services.values():
        for name, value in service.get("environment", {}).items():
            if re.search(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY|ROOT_USER", name):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", value), f"{name}={value}"
    # every published port is bound to loopback
    for service in services.values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


def test_the_bucket_job_script_runs(tmp_path: Path) -> None:
    [script] = compose()["services"]["bucket"]["command"]
    # Compose substitutes ${...} and $NAME itself; the script must escape every $ it means for the shell.
    assert re.findall(r"(?<!\$)\$(?!\$)", script.replace("$$", "")) == []
    shell_script = script.replace("$$", "$").replace("/tmp/policy.json", str(tmp_path / "policy.json"))

    calls = tmp_path / "calls"
    fake_mc = tmp_path / "bin" / "mc"
    fake_mc.parent.mkdir()
    fake_mc.write_text(
        '#!/bin/sh\necho "$*" >> "$CALLS"\n'
        'if [ "$1 $2 $3" = "admin user info" ]; then echo "AccessKey: $5"; echo "PolicyName: $POLICY"; fi\n'
    )
    fake_mc.chmod(0o755)
    env = {
        "PATH": f"{fake_mc.parent}:/usr/bin:/bin",
        "CALLS": str(calls),
        "MINIO_ROOT_USER": "admin",
        "MINIO_ROOT_PASSWORD": "root-password",
        "BACKUP_BUCKET": "ledger-bucket",
        "BACKUP_ACCESS_KEY_ID": "bot",
        "BACKUP_SECRET_ACCESS_KEY": "bot-secret",
        "POLICY": "",
    }

    def run() -> list[str]:
        calls.unlink(missing_ok=True)
        result = subprocess.run(
            ["/bin/sh", "-ec", shell_script], env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "bucket ledger-bucket ready" in result.stdout
        return calls.read_text().splitlines()

    made = run()
    assert made[0] == "alias set store http://minio:9000 admin root-password"
    assert "mb --ignore-existing store/ledger-bucket" in made
    assert "version enable store/ledger-bucket" in made
    assert "admin user add store bot bot-secret" in made
    assert made[-1] == "admin policy attach store invite-ledger-backup --user bot"
    policy = json.loads((tmp_path / "policy.json").read_text())
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert "s3:PutObject" in actions and not any("Delete" in a for a in actions)
    assert resources == {"arn:aws:s3:::ledger-bucket", "arn:aws:s3:::ledger-bucket/*"}

    # a second `up`: the policy is already attached, and the job still succeeds without attaching again
    env["POLICY"] = "invite-ledger-backup"
    assert not any(call.startswith("admin policy attach") for call in run())

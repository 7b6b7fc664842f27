"""The Docker image and compose file describe a service the code can actually run."""

import json
import re
import shlex
from pathlib import Path

import typer
import yaml

from app.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile_cmd() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^CMD\s+(\[.*\])\s*$", text, re.MULTILINE)
    assert match, "Dockerfile has no exec-form CMD"
    return json.loads(match.group(1))


def assert_cli_accepts(argv: list[str]) -> None:
    """``sepguard <argv>`` names an existing command and only its options."""
    assert argv[0] == "sepguard", argv
    command = typer.main.get_command(cli)
    ctx = command.make_context("sepguard", ["--help"], resilient_parsing=True)
    rest = argv[1:]
    while hasattr(command, "list_commands"):  # a group: descend into the named subcommand
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"no command {rest[0]!r} in {argv}"
        command, rest = sub, rest[1:]
    command.make_context(argv[1], list(rest))  # raises on an unknown option or a bad value


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert re.search(r"^USER\s+(?!root)\w+", text, re.MULTILINE), "the image must not run as root"
    assert "pip install" in text
    cmd = dockerfile_cmd()
    assert cmd[:2] == ["sepguard", "serve"] and "0.0.0.0" in cmd and "--no-worker" in cmd
    assert_cli_accepts(cmd)


def test_compose_services_and_shared_storage() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "api", "worker", "flower"} <= set(services)
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["SEPGUARD_DATABASE_URL"].startswith("postgresql+psycopg://sepguard:${POSTGRES_PASSWORD:?")
        assert "@postgres:5432/" in env["SEPGUARD_DATABASE_URL"]
        assert env["SEPGUARD_BROKER_URL"].startswith("redis://:${REDIS_PASSWORD:?")
        assert env["SEPGUARD_BROKER_URL"].endswith("@redis:6379/0")
        assert env["SEPGUARD_DATA_DIR"] == "/data"
        assert "data:/data" in services[name]["volumes"]
    assert "data" in compose()["volumes"]
    url = services["api"]["environment"]["SEPGUARD_DATABASE_URL"]
    assert url.endswith("/" + services["postgres"]["environment"]["POSTGRES_DB"])


def test_compose_keeps_secrets_in_env_and_ports_on_loopback() -> None:
    """Passwords come from .env (no default, so a missing one stops compose), nothing listens publicly."""
    services = compose()["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "--requirepass" in services["redis"]["command"]
    assert services["redis"]["command"][-1].startswith("${REDIS_PASSWORD:?")
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    for name in ("api", "flower"):
        assert all(str(port).startswith("127.0.0.1:") for port in services[name]["ports"]), services[name]["ports"]
    text = (ROOT / "docker-compose.yml").read_text()
    assert "sepguard:sepguard@" not in text and "POSTGRES_PASSWORD: sepguard" not in text


def test_compose_worker_reserves_a_gpu() -> None:
    devices = compose()["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]} in devices


def test_compose_commands_exist() -> None:
    services = compose()["services"]
    api = services["api"]["command"]
    assert api[:2] == ["sh", "-c"]
    steps = [shlex.split(part) for part in api[2].split("&&")]
    assert [s[:2] for s in steps] == [["sepguard", "db"], ["sepguard", "serve"]]
    for step in steps:
        assert_cli_accepts(step)
    assert_cli_accepts(services["worker"]["command"])
    flower = services["flower"]["command"]
    assert flower[:3] == ["celery", "-A", "app.jobs.task_queue"] and "flower" in flower
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "sepguard-data"):
        assert entry in ignored

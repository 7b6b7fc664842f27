"""The service commands, run as real processes: token management and ``serve``."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPGUARD_")}
    return env | {"SEPGUARD_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}


def sepguard(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=cli_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_token_create_prints_the_token_alone_on_the_last_line(tmp_path: Path) -> None:
    result = sepguard(tmp_path, "token", "create", "--name", "alice")
    token = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", token)
    combined = subprocess.run(
        f'"{sys.executable}" -m app.cli token create --name bob --admin 2>&1',
        shell=True,
        cwd=ROOT,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", combined.stdout.strip().splitlines()[-1])

    listing = sepguard(tmp_path, "token", "list").stdout
    assert token[:8] in listing and "alice" in listing and "bob" in listing
    assert token not in listing
    assert token.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("*.sqlite*"))

    revoked = sepguard(tmp_path, "token", "revoke", token[:8]).stdout
    assert "revoked" in revoked and "alice" in revoked
    missing = sepguard(tmp_path, "token", "revoke", "nosuchtoken", check=False)
    assert missing.returncode == 1 and "no token" in missing.stderr


def test_token_create_rejects_an_empty_name(tmp_path: Path) -> None:
    result = sepguard(tmp_path, "token", "create", "--name", " ", check=False)
    assert result.returncode == 1 and result.stderr.strip().startswith("error:")


def test_db_upgrade_and_python_dash_m(tmp_path: Path) -> None:
    assert "up to date" in sepguard(tmp_path, "db", "upgrade").stdout
    assert (tmp_path / "sepguard.sqlite").is_file()
    other_cwd = subprocess.run(
        [sys.executable, "-m", "app", "db", "upgrade"],
        cwd=tmp_path,
        env=cli_env(tmp_path) | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert other_cwd.returncode == 0, other_cwd.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``sepguard serve`` in a child process."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), *args],
            cwd=ROOT,
            env=cli_env(data_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []

    def read_until(self, pattern: str) -> re.Match[str]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError("server output ended:\n" + "".join(self.lines))

    def wait_ready(self) -> None:
        url = f"http://127.0.0.1:{self.port}/livez"
        for _ in range(600):
            assert self.process.poll() is None, "".join(self.lines)
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("server never became ready")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        if self.process.stdout is not None:
            self.lines.extend(self.process.stdout.readlines())
        return code


def test_serve_prints_a_login_url_once_and_serves_the_api(tmp_path: Path) -> None:
    server = Server(tmp_path, "--no-worker")
    try:
        match = server.read_until(r"(http://127\.0\.0\.1:\d+)/login#code=([A-Za-z0-9_-]+)")
        code = match.group(2)
        server.wait_ready()
        signed_in = httpx.post(f"{match.group(1)}/login/code", data={"code": code}, timeout=10)
        assert signed_in.status_code == 200 and signed_in.cookies.get("sepguard_session")
        cookie = {"Cookie": f"sepguard_session={signed_in.cookies['sepguard_session']}"}  # Secure: not sent over http
        r = httpx.get(f"{match.group(1)}/api/v1/jobs", headers=cookie, timeout=10)
        assert r.status_code == 200 and r.json()["total"] == 0
        assert httpx.get(f"{match.group(1)}/api/v1/jobs", timeout=10).status_code == 401
        assert httpx.post(f"{match.group(1)}/login/code", data={"code": code}, timeout=10).status_code == 401
    finally:
        assert server.stop() == 0
    assert code.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("*.sqlite*"))

    again = Server(tmp_path, "--no-worker")
    try:
        second = again.read_until(r"/login#code=([A-Za-z0-9_-]+)").group(1)
        again.wait_ready()
    finally:
        assert again.stop() == 0
    assert second != code  # a fresh one-time link at every start
    assert "token=" not in "".join(server.lines + again.lines)


def test_serve_starts_a_worker_and_stops_it(tmp_path: Path) -> None:
    pytest.importorskip("worker.main")
    server = Server(tmp_path)
    try:
        server.read_until(r"login#code=")
        server.wait_ready()
        parent = psutil.Process(server.process.pid)
        children = []
        for _ in range(600):
            children = [c for c in parent.children() if "worker" in " ".join(c.cmdline())]
            if children:
                break
            time.sleep(0.1)
        assert children, "no worker process"
        worker = children[0]
        assert worker.is_running()
    finally:
        code = server.stop()
    assert code == 0, "".join(server.lines)
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE

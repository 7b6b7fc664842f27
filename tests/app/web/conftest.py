"""Fixtures for the browser tests: a live `sepguard serve` (API, web page and a real worker) and Chromium."""

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
# screenshots go to build/ so that a test run leaves tracked files alone; `make screenshots` runs the
# browser tests with SEPGUARD_SCREENSHOTS=docs/screenshots to refresh the ones the README shows
SCREENSHOTS = ROOT / os.environ.get("SEPGUARD_SCREENSHOTS", "build/screenshots")
LOGIN_URL = re.compile(r"(http://\S+?)/login#code=(\S+)")
START_SECONDS = 120
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


@dataclass
class LiveServer:
    base_url: str
    login_url: str
    token: str  # an API token of the administrator, whom the printed sign-in link signs in
    data_dir: Path
    env: dict[str, str]
    log: Path

    def create_token(self, name: str) -> str:
        """A new token from `sepguard token create` against the server's data folder (its last output line)."""
        return self.cli_last_line("token", "create", "--name", name)

    def login_link(self, name: str) -> str:
        """A one-time sign-in link from `sepguard token login-link`."""
        return self.cli_last_line("token", "login-link", "--name", name, "--url", self.base_url)

    def cli_last_line(self, *args: str) -> str:
        """The last output line of a `sepguard` command run against the server's data folder."""
        out = subprocess.run(
            [sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        return out.stdout.strip().splitlines()[-1].strip()

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Stop the server the way Ctrl+C does (it stops its worker), then harder if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the server's own process group: it and its worker
            process.wait()


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Chromium with `apt-get install -y chromium`")
    return CHROMIUM


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("sepguard-web") / "data"
    log = data_dir.parent / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPGUARD_")}
    env |= {
        "SEPGUARD_DATA_DIR": str(data_dir),
        "SEPGUARD_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        match = None
        while match is None:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("`sepguard serve` did not print a login URL:\n" + log.read_text(errors="replace"))
            match = LOGIN_URL.search(log.read_text(errors="replace"))
            time.sleep(0.2)
        base_url = match.group(1)
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/login", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("`sepguard serve` did not answer:\n" + log.read_text(errors="replace"))
            time.sleep(0.2)
        server = LiveServer(base_url, match.group(0), "", data_dir, env, log)
        server.token = server.create_token("admin")  # the API token of the owner the printed link signs in
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="session")
def browser(chromium_path: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zip of 4 real CIFAR-10 images from each of the 10 classes of the bundled sample."""
    out = tmp_path_factory.mktemp("dataset") / "cifar-small.zip"
    per_class: dict[str, int] = {}
    with zipfile.ZipFile(ROOT / "samples" / "cifar10-train.zip") as src, zipfile.ZipFile(out, "w") as dst:
        for info in sorted(src.infolist(), key=lambda i: i.filename):
            if info.is_dir() or not info.filename.lower().endswith(".png"):
                continue
            parts = info.filename.split("/")
            cls = parts[-2]
            if per_class.get(cls, 0) >= 4:
                continue
            per_class[cls] = per_class.get(cls, 0) + 1
            dst.writestr("/".join(parts[-2:]), src.read(info))
    assert len(per_class) >= 2
    return out


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return z.namelist()

"""A real deployment per test: the API and Celery workers as subprocesses, sharing a fresh
PostgreSQL database, a fresh Redis database and a data folder (or, embedded, SQLite for both).

Workers run in their own process group so that a test can SIGKILL a whole worker (main
process and task processes), as when its machine dies.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from app.core.db import make_engine, upgrade_database
from app.core.security import create_token
from app.db_models import Job

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379"
FINAL = ("succeeded", "failed", "cancelled")
# Tiny runs: a few seconds per stage on a CPU.
FORM = {"preset": "fast", "epochs": "2", "steps": "2", "checkpoints": "2", "inner_steps": "2"}
SHARD_SIZE = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """The processes of one deployment and a client for its API."""

    def __init__(self, tmp: Path, env: dict[str, str], db_url: str) -> None:
        self.tmp, self.env, self.db_url = tmp, env, db_url
        self.engine: Engine = make_engine(db_url)
        self.port = free_port()
        self.token = ""
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.api: subprocess.Popen[bytes] | None = None

    # --- processes ---------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def start_worker(self, concurrency: int = 2) -> subprocess.Popen[bytes]:
        """A real ``celery -A worker.main worker``."""
        argv = [sys.executable, "-m", "celery", "-A", "worker.main", "worker", "--loglevel=info"]
        argv += [f"--concurrency={concurrency}", "--pool=prefork", "--without-gossip", "--without-mingle"]
        argv += [f"--hostname=w{uuid.uuid4().hex[:6]}@%h"]
        return self.spawn("worker", argv)

    def start_api(self, with_worker: bool = False) -> subprocess.Popen[bytes]:
        """``sepguard serve`` (the API; with its embedded worker if asked); waits until it answers."""
        argv = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.api = self.spawn("api", argv if with_worker else argv + ["--no-worker"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise AssertionError(f"the API exited:\n{self.log_text()}")
            try:
                if httpx.get(f"{self.base}/livez", timeout=2).status_code == 200:
                    return self.api
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the API did not start:\n{self.log_text()}")

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a process and all its children: no cleanup, no acknowledgements."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it hangs."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        Stack.kill(proc)

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        self.engine.dispose()

    def log_text(self, tail: int = 4000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}" for p in self.logs if p.exists())

    # --- API ---------------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, f"{self.base}/api/v1{path}", headers=headers, timeout=60, **kw)

    def submit(self, dataset: Path, **form: str) -> str:
        with dataset.open("rb") as f:
            r = self.request(
                "POST", "/jobs", data={**FORM, **form}, files={"dataset": (dataset.name, f, "application/zip")}
            )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        self.small_craft_batches(job_id)
        return str(job_id)

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.request("GET", f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 300) -> dict[str, Any]:
        """Poll the job until ``until(job)``; a generous deadline only guards against hangs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                job = self.job(job_id)
            except httpx.HTTPError:  # the API is restarting
                time.sleep(0.5)
                continue
            if until(job):
                return job
            if job["status"] in FINAL:
                raise AssertionError(f"job ended {job['status']}: {job.get('error')}\n{self.log_text()}")
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not get there in time\n{self.log_text()}")

    def wait_final(self, job_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                job = self.job(job_id)
                if job["status"] in FINAL:
                    return job
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not finish in time\n{self.log_text()}")

    def download(self, job_id: str) -> bytes:
        r = self.request("GET", f"/jobs/{job_id}/download")
        assert r.status_code == 200, r.text
        return r.content

    # --- database ----------------------------------------------------------------------------

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def small_craft_batches(self, job_id: str) -> None:
        """Shards are whole multiples of the crafting batch, which the API does not expose:
        lower it to the shard size so a tiny dataset gets several shards."""
        with self.session() as s:
            job = s.get(Job, job_id)
            assert job is not None
            if job.params["craft_batch"] > job.params["shard_size"]:
                params = {**job.params, "craft_batch": job.params["shard_size"]}
                s.execute(update(Job).where(Job.id == job_id).values(params=params))
                s.commit()


def base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPGUARD_")}
    env.update(
        SEPGUARD_DATA_DIR=str(data_dir),
        SEPGUARD_SHARD_SIZE=str(SHARD_SIZE),
        SEPGUARD_TORCH_THREADS="1",
        SEPGUARD_WORKER_LEASE_SECONDS="6",
        SEPGUARD_PROGRESS_INTERVAL_SECONDS="0.5",
        PYTHONUNBUFFERED="1",
    )
    return env


def with_token(stack: Stack) -> Stack:
    upgrade_database(stack.db_url)
    with stack.session() as s:
        stack.token = create_token(s, "alice", "integration")
        s.commit()
    return stack


@pytest.fixture
def production(tmp_path: Path) -> Iterator[Stack]:
    """PostgreSQL (a new database) + Redis (an empty database number) + a data folder."""
    import psycopg
    import redis

    db_name = f"sepguard_it_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    free = [n for n in random.sample(range(1, 16), 15) if redis.Redis.from_url(f"{REDIS}/{n}").dbsize() == 0]
    assert free, "no empty Redis database"
    broker = f"{REDIS}/{free[0]}"
    db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db_name}"
    env = base_env(tmp_path / "data") | {"SEPGUARD_DATABASE_URL": db_url, "SEPGUARD_BROKER_URL": broker}
    stack = Stack(tmp_path, env, db_url)
    try:
        yield with_token(stack)
    finally:
        stack.close()
        redis.Redis.from_url(broker).flushdb()
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Stack]:
    """The defaults: SQLite database and SQLite broker in the data folder."""
    data = tmp_path / "data"
    stack = Stack(tmp_path, base_env(data), f"sqlite:///{data / 'sepguard.sqlite'}")
    try:
        yield with_token(stack)
    finally:
        stack.close()

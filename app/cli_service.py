"""Service commands: serve, worker, db, token."""

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.engine import make_url

WORKER_APP = "worker.main"  # the worker's entry point: the task queue with its tasks and signals
WORKER_STOP_SECONDS = 10.0
WORKER_RESTART_FIRST_SECONDS = 1.0
WORKER_RESTART_MAX_SECONDS = 60.0

db_cli = typer.Typer(help="Database maintenance.", no_args_is_help=True)
token_cli = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)


def fail(message: str) -> NoReturn:
    """Print one clear line to stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def safe_url(url: str) -> str:
    """A database or broker URL with any password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def prepare_database() -> None:
    """Create the data folder and bring the database schema up to date."""
    from app.core.config import get_settings
    from app.core.db import upgrade_database

    settings = get_settings()
    settings.data_path.mkdir(parents=True, exist_ok=True)
    try:
        upgrade_database()
    except Exception as exc:
        fail(f"cannot prepare the database at {safe_url(settings.sqlalchemy_url)}: {exc}".splitlines()[0])


def login_code(owner_name: str | None = None) -> str:
    """A one-time sign-in code for ``owner_name`` (default: the first admin, created on first start)."""
    from datetime import timedelta

    from app.core.config import get_settings
    from app.core.db import session_scope
    from app.core.security import create_login_code, get_or_create_owner
    from app.db_models import Owner

    lifetime = timedelta(seconds=get_settings().login_code_seconds)
    with session_scope() as session:
        if owner_name is None:
            owner = session.scalar(select(Owner).where(Owner.is_admin.is_(True)).order_by(Owner.id).limit(1))
            owner = owner or get_or_create_owner(session, "admin", is_admin=True)
        else:
            owner = session.scalar(select(Owner).where(Owner.name == owner_name.strip()))
            if owner is None:
                fail(f"no owner called {owner_name!r}; create a token for them first")
        return create_login_code(session, owner, lifetime)


def login_link(base: str, code: str) -> str:
    """The sign-in link: the code travels in the fragment, which browsers never send to the server."""
    return f"{base}/login#code={code}"


def browser_host(host: str) -> str:
    """The host to put in a URL for a server listening on ``host``."""
    if host in ("0.0.0.0", "", "*"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def start_worker_process() -> subprocess.Popen[bytes]:
    """Start ``sepguard worker`` as a child process sharing this process's settings."""
    from app.core.config import get_settings

    env = dict(os.environ, SEPGUARD_DATA_DIR=str(get_settings().data_path))
    return subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env)


class WorkerSupervisor:
    """Keeps the embedded worker running: one that dies is started again after a pause that doubles
    (1 s up to a minute) while it keeps dying, and resets once a worker has run for a minute."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def start(self) -> None:
        self.process = start_worker_process()
        threading.Thread(target=self.watch, name="worker-supervisor", daemon=True).start()

    def watch(self) -> None:
        delay = WORKER_RESTART_FIRST_SECONDS
        while True:
            process = self.process
            assert process is not None
            started = time.monotonic()
            code = process.wait()
            if self.stopping.is_set():
                return
            if time.monotonic() - started >= WORKER_RESTART_MAX_SECONDS:
                delay = WORKER_RESTART_FIRST_SECONDS
            typer.echo(f"warning: the worker exited with code {code}; restarting it in {delay:.0f} s", err=True)
            if self.stopping.wait(delay):
                return
            with self.lock:
                if self.stopping.is_set():
                    return
                self.process = start_worker_process()
            typer.echo(f"restarted the worker (pid {self.process.pid})", err=True)
            delay = min(delay * 2, WORKER_RESTART_MAX_SECONDS)

    def stop(self) -> None:
        """Stop supervising, then stop the worker."""
        self.stopping.set()
        with self.lock:
            process = self.process
        if process is not None:
            stop_worker_process(process)


def stop_worker_process(process: subprocess.Popen[bytes]) -> None:
    """Ask the worker to finish (SIGTERM), then stop it harder if it does not."""
    for sig, wait in ((signal.SIGTERM, WORKER_STOP_SECONDS), (signal.SIGQUIT, 5.0)):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    process.wait()


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not start a worker (run `sepguard worker` elsewhere).")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Web server processes.")] = 1,
) -> None:
    """Run the web page and REST API, with one job worker unless --no-worker."""
    import uvicorn

    from app.core.config import get_settings

    settings = get_settings()
    prepare_database()
    base = f"http://{browser_host(host)}:{port}"
    code = login_code()
    minutes = max(1, settings.login_code_seconds // 60)
    typer.echo(f"sepguard data: {settings.data_path}")
    typer.echo(f"database: {safe_url(settings.sqlalchemy_url)}  broker: {safe_url(settings.celery_broker_url)}")
    typer.echo(f"Open this URL to sign in as the administrator (it works once, within {minutes} minutes):")
    typer.echo(f"    {login_link(base, code)}")
    typer.echo("API tokens: sepguard token create --name NAME; a sign-in link: sepguard token login-link --name NAME")
    typer.echo(f"API docs: {base}/docs")

    supervisor = None if no_worker else WorkerSupervisor()
    if supervisor is not None:
        supervisor.start()
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, restores these handlers and raises the
    # signal again: record it here so the worker is still stopped and the exit is clean.
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: received.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.run("app.main:app", host=host, port=port, workers=workers, log_level="info")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if supervisor is not None:
            typer.echo("stopping the worker...")
            supervisor.stop()


def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks run at the same time (processes).")] = 1,
    queues: Annotated[str | None, typer.Option(help="Comma-separated queues to consume (default: sepguard).")] = None,
    pool: Annotated[str | None, typer.Option(help="Celery pool: solo (default for 1) or prefork.")] = None,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run a job worker (Celery) in this process."""
    from app.jobs.task_queue import QUEUE, celery_app  # the task queue loads for this command only

    argv = [
        # Celery loads the worker's entry point by name: the service never imports the worker.
        f"--app={WORKER_APP}",
        "worker",
        f"--loglevel={loglevel}",
        f"--concurrency={concurrency}",
        f"--pool={pool or ('solo' if concurrency == 1 else 'prefork')}",
        f"--queues={queues or QUEUE}",
        "--without-gossip",
        "--without-mingle",
    ]
    celery_app.worker_main(argv)


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database to the latest schema."""
    from app.core.config import get_settings

    prepare_database()
    typer.echo(f"database {safe_url(get_settings().sqlalchemy_url)} is up to date")


@token_cli.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who the token is for (the owner of the jobs it creates).")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the owner an administrator.")] = False,
    label: Annotated[str | None, typer.Option(help="A label for this token (default: the owner's name).")] = None,
) -> None:
    """Create a token; it is printed alone on the last line (only its hash is stored)."""
    from app.core.db import session_scope
    from app.core.security import create_token

    prepare_database()
    try:
        with session_scope() as session:
            token = create_token(session, name, label or name, is_admin=admin)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"Created a token for {name.strip()}{' (admin)' if admin else ''}; it is shown only once:", err=True)
    typer.echo(token)


@token_cli.command("login-link")
def token_login_link(
    name: Annotated[str, typer.Option(help="Whose sign-in link (an owner with a token).")],
    url: Annotated[str, typer.Option(help="The service's address as the browser sees it.")] = "http://127.0.0.1:8000",
) -> None:
    """Print a one-time browser sign-in link for an owner (valid SEPGUARD_LOGIN_CODE_SECONDS)."""
    prepare_database()
    typer.echo(login_link(url.rstrip("/"), login_code(name)))


@token_cli.command("list")
def token_list() -> None:
    """List tokens (prefixes only; tokens themselves are never stored)."""
    from app.core.db import session_scope
    from app.core.security import list_tokens

    prepare_database()
    table = Table("id", "prefix", "owner", "label", "admin", "created", "last used", "revoked")
    with session_scope() as session:
        for t in list_tokens(session):
            stamp = lambda d: d.strftime("%Y-%m-%d %H:%M") if d else "-"
            table.add_row(
                str(t.id),
                t.prefix,
                t.owner.name,
                t.name,
                "yes" if t.owner.is_admin else "",
                stamp(t.created_at),
                stamp(t.last_used_at),
                stamp(t.revoked_at),
            )
    Console().print(table)


@token_cli.command("revoke")
def token_revoke(key: Annotated[str, typer.Argument(help="The token's id or prefix (see `token list`).")]) -> None:
    """Revoke a token: requests using it get 401 from now on."""
    from app.core.db import session_scope
    from app.core.security import revoke_token

    prepare_database()
    try:
        with session_scope() as session:
            token = revoke_token(session, key)
            typer.echo(f"revoked token {token.id} ({token.prefix}...) of {token.owner.name}")
    except LookupError as exc:
        fail(str(exc))


def register(cli: typer.Typer) -> None:
    """Add the service commands to the root CLI."""
    cli.command()(serve)
    cli.command()(worker)
    cli.add_typer(db_cli, name="db")
    cli.add_typer(token_cli, name="token")

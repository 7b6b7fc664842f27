"""The Celery application is configuration only: importing it creates nothing and wires nothing."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Imports the Celery application, then the module named on the command line, and prints what
# each import left behind: signal handlers, the broker's polling interval, registered tasks.
SCRIPT = """
import json, sys
from celery import signals
from kombu.transport.sqlalchemy import Transport

from app.jobs.task_queue import celery_app

SIGNALS = ("worker_init", "worker_process_init", "worker_ready", "worker_shutdown")


def seen():
    return {
        "receivers": sum(len(getattr(signals, name).receivers) for name in SIGNALS),
        "polling": Transport.polling_interval,
        "tasks": sorted(name for name in celery_app.tasks if name.startswith("sepguard.")),
    }


leaf = seen()
broker = celery_app.conf.broker_url  # the settings are read when the configuration is first needed
imported_worker = "worker.main" in sys.modules
__import__(sys.argv[1])
print(json.dumps({"leaf": leaf, "imported_worker": imported_worker, "broker": broker, "after": seen()}))
"""


def run(module: str, data_dir: Path) -> dict:
    """Import ``module`` after the Celery application in a fresh interpreter; what each left behind."""
    env = {"SEPGUARD_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, module], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_celery_app_has_no_side_effect(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    seen = run("app.jobs.task_queue", data_dir)
    assert seen["leaf"] == seen["after"]
    assert seen["leaf"]["receivers"] == 0 and seen["leaf"]["tasks"] == [] and seen["leaf"]["polling"] == 1
    assert not seen["imported_worker"]
    assert seen["broker"] == f"sqla+sqlite:///{data_dir.resolve() / 'broker.sqlite'}"
    assert not data_dir.exists()  # the embedded broker's folder is made by whoever connects first

"""The API process stays light: serving requests, job submission included, never imports torch."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from fastapi.testclient import TestClient
from app.core.db import session_scope, upgrade_database
from app.core.security import create_token
from app.main import create_app
from tests.app.helpers import bearer, dataset_zip

upgrade_database()
with session_scope() as session:
    token = create_token(session, "alice", "t")
client = TestClient(create_app())
r = client.post("/api/v1/jobs", headers=bearer(token), files={"dataset": ("d.zip", dataset_zip())}, data={"preset": "fast"})
assert r.status_code == 202, r.text
job = r.json()["id"]
for path in ("", "/previews", "/cancel"):
    method = "POST" if path == "/cancel" else "GET"
    assert client.request(method, f"/api/v1/jobs/{job}{path}", headers=bearer(token)).status_code == 200
assert client.get("/healthz").status_code in (200, 503)  # 503: no worker runs here
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchvision")))
print("TORCH:", loaded)
"""


def test_api_never_imports_torch(tmp_path: Path) -> None:
    env = {"SEPGUARD_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "TORCH: []" in result.stdout, result.stdout

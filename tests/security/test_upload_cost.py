"""Uploads cost the API little: image headers only (6), and checks that keep other requests
answering while a hostile upload is being extracted and validated (7)."""

import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from engine.dataset import load_working_set, open_dataset
from engine.errors import DatasetError
from tests.app.helpers import bearer, png_bytes

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20

# Uploads the zip named on its command line through the API in a fresh process and prints
# how much the process's peak resident memory grew.
PEAK_SCRIPT = r"""
import io, json, sys, zipfile
from fastapi.testclient import TestClient
from PIL import Image
from app.core.db import session_scope, upgrade_database
from app.core.security import create_token
from app.main import create_app

def small_png():
    buf = io.BytesIO(); Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PNG"); return buf.getvalue()

def zipped(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()

def peak_kib():  # the high-water mark of this process's resident memory (fresh at exec, unlike ru_maxrss)
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1])

upgrade_database()
with session_scope() as s:
    token = create_token(s, "alice", "t")
huge = open(sys.argv[1], "rb").read()
small = zipped({"cat/0.png": small_png(), "dog/0.png": small_png()})
with TestClient(create_app()) as client:
    headers = {"Authorization": f"Bearer {token}"}
    warm = client.post("/api/v1/jobs", headers=headers, files={"dataset": ("a.zip", small)})
    before = peak_kib()
    r = client.post("/api/v1/jobs", headers=headers, files={"dataset": ("b.zip", huge)})
    after = peak_kib()
print(json.dumps({"warm": warm.status_code, "status": r.status_code, "size": len(huge), "grew_kib": after - before, "peak_kib": after}))
"""


def test_a_small_image_that_decodes_huge_costs_the_api_no_decode(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPGUARD_")}
    env |= {"SEPGUARD_DATA_DIR": str(tmp_path / "data"), "SEPGUARD_BROKER_URL": "redis://127.0.0.1:6379/14"}
    big = io.BytesIO()
    Image.new("RGBA", (7000, 7000)).save(big, "PNG")
    upload = tmp_path / "huge.zip"
    with zipfile.ZipFile(upload, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cat/0.png", png_bytes())
        zf.writestr("dog/0.png", png_bytes())
        zf.writestr("dog/huge.png", big.getvalue())
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(upload)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["warm"] == 202 and result["status"] == 202, result
    assert result["size"] < 400_000
    # decoding it would take 7000 * 7000 * 4 bytes = 187 MiB
    assert result["grew_kib"] < 40 * 1024, result


def test_damage_past_the_header_is_found_by_the_worker_decode(tmp_path: Path) -> None:
    good = png_bytes((64, 64))
    im = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(im, "JPEG")
    truncated = im.getvalue()[: len(im.getvalue()) // 2]  # header fine, image data cut short
    source = tmp_path / "d.zip"
    with zipfile.ZipFile(source, "w") as zf:
        zf.writestr("cat/0.png", good)
        zf.writestr("dog/0.png", good)
        zf.writestr("dog/cut.jpg", truncated)
    index = open_dataset(source, tmp_path / "job", decode=False)
    assert len(index) == 3
    with pytest.raises(DatasetError, match="dog/cut.jpg"):
        load_working_set(index, 32)


def one_byte_files_zip(count: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(count):
            zf.writestr(f"c{i % 2}/{i}.png", b"x")
    return buf.getvalue()


def test_health_and_job_list_answer_while_hostile_uploads_are_checked(
    client: TestClient, tokens: dict[str, str], data_dir: Path
) -> None:
    """As many slow hostile uploads as the shared thread pool has threads: the checks queue in their
    own pool, so /healthz and the job list answer while every upload is still being checked (were
    the checks in the shared pool, the job list would wait for the first upload to be refused)."""
    import anyio.to_thread

    pool_threads = 4
    client.portal.call(lambda: setattr(anyio.to_thread.current_default_thread_limiter(), "total_tokens", pool_threads))
    hostile = one_byte_files_zip(15_000)
    results: list[int] = []

    def upload() -> None:
        files = {"dataset": ("many.zip", hostile, "application/zip")}
        results.append(client.post("/api/v1/jobs", headers=bearer(tokens["alice"]), files=files).status_code)

    uploads = [threading.Thread(target=upload) for _ in range(pool_threads)]
    for t in uploads:
        t.start()
    time.sleep(1.0)  # the uploads are being extracted and checked
    answered_while_all_checked = 0
    while any(t.is_alive() for t in uploads):
        for path, headers in (("/healthz", {}), ("/api/v1/jobs", bearer(tokens["bob"]))):
            assert client.get(path, headers=headers).status_code in (200, 503)
            answered_while_all_checked += not results  # no upload has been answered yet
        time.sleep(0.05)
    for t in uploads:
        t.join()
    assert results == [400] * pool_threads
    assert answered_while_all_checked >= 2, "the job list waited for the upload checks"


# Protects one 3000x3000 photo-like PNG with the packaging stage in a fresh process and prints
# how many bytes per pixel its peak resident memory grew.
PACKAGE_SCRIPT = r"""
import sys, tempfile
from pathlib import Path
import numpy as np
from PIL import Image
from engine.dataset import open_dataset
from engine.package import write_protected_zip

side = 3000
root = Path(sys.argv[1])
for name in ("a", "b"):
    (root / "src" / name).mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "src" / name / "0.png", compress_level=1)
    del pixels
index = open_dataset(root / "src", root / "work")
delta = (np.random.default_rng(1).random((2, 3, 32, 32), dtype=np.float32) - 0.5) * (16 / 255)

def peak_kib():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1])

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # start the high-water mark from here
before = peak_kib()
write_protected_zip(index, delta, root / "out.zip", eps=8)
print((peak_kib() - before) * 1024 / (side * side))
"""


def test_packaging_holds_few_full_size_buffers_per_image(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PACKAGE_SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    per_pixel = float(out.stdout.strip().splitlines()[-1])
    # 3 bytes of pixels, 3 of the protected copy, 4 in Pillow to encode it, plus strips and the PNG
    # (it was 48 when the perturbation, its rounding and the 16-bit sums were each full-size)
    assert per_pixel < 24, f"{per_pixel:.1f} bytes per pixel"

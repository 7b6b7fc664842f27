"""Scaling of crafting over workers through the real service: 1 worker against 2.

For each worker count: a fresh data folder, `sepguard serve --no-worker` (embedded SQLite
database; SQLite broker by default, or --broker redis://...), a token from
`sepguard token create`, N `sepguard worker --concurrency 1` processes each limited to one torch
thread (SEPGUARD_TORCH_THREADS=1), the dataset POSTed to /api/v1/jobs, polled to success and the
protected zip downloaded. Reports the wall time of the crafting stage (from the job's stages),
the speed-up of 2 workers over 1 (target >= 1.7x), and whether the two protected zips hold
byte-identical images.

    python -m bench.scale                        # cifar10-mini train.zip, fast preset, 256-image shards
    python -m bench.scale --broker redis://127.0.0.1:6379/9
"""

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common import SHARED_DATA, recorded_args, write_result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sepguard(*args: str) -> list[str]:
    return [sys.executable, "-m", "app", *args]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def seconds_between(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def cpu_seconds(procs: list[subprocess.Popen]) -> float:
    """User + system CPU seconds of the processes and their children so far."""
    total = 0.0
    for p in procs:
        try:
            proc = psutil.Process(p.pid)
            for q in [proc, *proc.children(recursive=True)]:
                t = q.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run_service(dataset: Path, workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    data_dir = tmp / f"data-{workers}"
    data_dir.mkdir()
    env = {
        **os.environ,
        "SEPGUARD_DATA_DIR": str(data_dir),
        "SEPGUARD_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "SEPGUARD_SHARD_SIZE": str(args.shard_size),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("SEPGUARD_DATABASE_URL", None)
    if args.broker:
        env["SEPGUARD_BROKER_URL"] = args.broker
    else:
        env.pop("SEPGUARD_BROKER_URL", None)
    port = free_port()
    logs = [open(data_dir / "serve.log", "w")]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            subprocess.Popen(sepguard("serve", "--no-worker", "--port", str(port)), env=env, stdout=logs[0], stderr=subprocess.STDOUT)
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=5).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or procs[0].poll() is not None:
                raise RuntimeError(f"the service did not start; see {data_dir / 'serve.log'}")
            time.sleep(0.5)
        out = subprocess.run(sepguard("token", "create", "--name", "bench"), env=env, capture_output=True, text=True, check=True)
        token = out.stdout.strip().splitlines()[-1].strip()
        for i in range(workers):
            log = open(data_dir / f"worker-{i}.log", "w")
            logs.append(log)
            procs.append(
                subprocess.Popen(sepguard("worker", "--concurrency", "1"), env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        worker_procs = procs[1:]
        headers = {"Authorization": f"Bearer {token}"}
        load_start = os.getloadavg()[0]
        cpu_start = cpu_seconds(worker_procs)
        form = {"preset": args.preset, **dict(s.split("=", 1) for s in args.set)}
        t0 = time.time()
        with open(dataset, "rb") as f:
            r = httpx.post(f"{base}/api/v1/jobs", headers=headers, data=form, files={"dataset": (dataset.name, f, "application/zip")}, timeout=600)
        if r.status_code >= 300:
            raise RuntimeError(f"POST /api/v1/jobs answered {r.status_code}: {r.text}")
        job_id = r.json()["id"]
        while True:
            job = httpx.get(f"{base}/api/v1/jobs/{job_id}", headers=headers, timeout=30).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            if time.time() - t0 > args.timeout:
                raise RuntimeError(f"job {job_id} did not finish in {args.timeout} s (stage {job.get('stage')})")
            time.sleep(2)
        total = time.time() - t0
        worker_cpu = cpu_seconds(worker_procs) - cpu_start
        load_end = os.getloadavg()[0]
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
        out_zip = tmp / f"protected-{workers}.zip"
        with httpx.stream("GET", f"{base}{job['download_url']}" if job["download_url"].startswith("/") else job["download_url"],
                          headers=headers, timeout=600) as resp:
            resp.raise_for_status()
            with open(out_zip, "wb") as f:
                for chunk in resp.iter_bytes():
                    f.write(chunk)
        stages = {s["name"]: seconds_between(s.get("started_at"), s.get("finished_at")) for s in job["stages"]}
        with zipfile.ZipFile(out_zip) as zf:
            report = json.loads(zf.read("report.json"))
            digests = {n: hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist() if not n.endswith(".json")}
            manifest = json.loads(zf.read("manifest.json"))
        return {
            "workers": workers,
            "job_seconds": round(total, 1),
            "worker_cpu_seconds": round(worker_cpu, 1),
            "load_1min": [round(load_start, 2), round(load_end, 2)],
            "stage_seconds": {k: (round(v, 1) if v is not None else None) for k, v in stages.items()},
            "craft_seconds": stages.get("craft"),
            "report_timings_seconds": report.get("timings_seconds"),
            "shards": len(list((data_dir / "jobs" / job_id / "shards").glob("*.npy"))) if (data_dir / "jobs" / job_id).exists() else None,
            "images": len(digests),
            "max_linf": max(m["linf"] for m in manifest),
            "eps": report["parameters"]["eps"],
            "digests": digests,
        }
    finally:
        for p in reversed(procs):
            stop(p)
        for log in logs:
            log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=SHARED_DATA / "cifar10-mini" / "train.zip")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--set", action="append", default=[], help="an extra form field, e.g. --set steps=5")
    ap.add_argument("--shard-size", type=int, default=256, help="SEPGUARD_SHARD_SIZE (>= 8 shards for 3,051 images)")
    ap.add_argument("--broker", default="", help="broker URL (default: the SQLite broker in the data folder)")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--name", default="scale")
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="sepguard-scale-") as tmp:
        for n in counts:
            print(f"running with {n} worker(s), load {os.getloadavg()}", flush=True)
            runs.append(run_service(args.dataset, n, args, Path(tmp)))
            print({k: v for k, v in runs[-1].items() if k != "digests"}, flush=True)
    base = runs[0]
    identical = all(r["digests"] == base["digests"] for r in runs[1:])
    differing = sorted({n for r in runs[1:] for n in base["digests"] if r["digests"].get(n) != base["digests"][n]})
    speedups = {r["workers"]: base["craft_seconds"] / r["craft_seconds"] for r in runs[1:] if r["craft_seconds"]}
    bound_ok = all(r["max_linf"] <= int(r["eps"]) for r in runs)
    lines = [
        f"Dataset `{args.dataset.name}` ({base['images']} images), preset `{args.preset}` {args.set or ''}, shard size "
        f"{args.shard_size} ({base['shards']} shards), broker {args.broker or 'SQLite (data folder)'}, embedded SQLite database; "
        f"`sepguard serve --no-worker` + N x `sepguard worker --concurrency 1`, SEPGUARD_TORCH_THREADS=1.",
        "",
        "| workers | crafting stage wall (s) | sum of shard times (s) | job wall (s) | workers' CPU (s) | load 1 min (start/end) | stages (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        st = ", ".join(f"{k} {v}" for k, v in r["stage_seconds"].items())
        shard_sum = (r["report_timings_seconds"] or {}).get("craft")
        lines.append(
            f"| {r['workers']} | {r['craft_seconds']:.1f} | {shard_sum} | {r['job_seconds']} | {r['worker_cpu_seconds']} | "
            f"{r['load_1min'][0]} / {r['load_1min'][1]} | {st} |"
        )
    lines += [
        "",
        "Crafting speed-up: " + ", ".join(f"{w} workers {s:.2f}x" for w, s in speedups.items()) + " (target >= 1.7x). "
        f"The machine has {os.cpu_count()} cores; when other work holds one of them, two one-thread workers share the "
        "other and each shard takes about twice as long (compare the sum of shard times).",
        f"Protected images identical across runs (sha256 of every file): {'yes' if identical else 'NO'}"
        + (f" ({len(differing)} differ, e.g. {differing[:3]})" if differing else "")
        + f"; l-inf bound kept: {'yes' if bound_ok else 'NO'} (max {max(r['max_linf'] for r in runs)} <= eps {base['eps']:g}).",
    ]
    write_result(
        args.name,
        {
            "args": recorded_args(args),
            "runs": [{k: v for k, v in r.items() if k != "digests"} for r in runs],
            "speedups": speedups,
            "identical": identical,
            "differing": differing[:50],
            "bound_ok": bound_ok,
        },
        "\n".join(lines),
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()

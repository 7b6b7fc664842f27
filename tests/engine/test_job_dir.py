"""The job folder: its layout, the atomic writer, the saved index, and a folder mounted at another path."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engine import stages
from engine.config import preset
from engine.dataset import open_dataset
from engine.errors import DatasetError
from engine.job_dir import JobDir, atomic_path, upload_name
from tests.engine.helpers import TINY, write_small_zip

ROOT = Path(__file__).resolve().parents[2]


def test_paths_follow_the_layout(tmp_path: Path) -> None:
    job = JobDir(tmp_path)
    assert job.index == tmp_path / "index.json" and job.working == tmp_path / "working.npz"
    assert job.checkpoints == tmp_path / "checkpoints.pt" and job.means == tmp_path / "means.pt"
    assert job.shard(0, 512) == tmp_path / "shards" / "00000000-00000512.npy"
    assert job.timing("craft-00000512") == tmp_path / "timings" / "craft-00000512.json"
    assert job.result == tmp_path / "protected.zip"
    assert job.previews_index == tmp_path / "previews" / "previews.json"


@pytest.mark.parametrize(
    ("filename", "stored"),
    [("Cats.ZIP", "upload.zip"), ("x.tgz", "upload.tar.gz"), ("x.tar.gz", "upload.tar.gz"), ("x.tar", "upload.tar")]
    + [("x.rar", "upload.zip"), (None, "upload.zip")],
)
def test_upload_names_keep_the_archive_type(filename: str | None, stored: str) -> None:
    assert upload_name(filename) == stored


def test_find_upload(tmp_path: Path) -> None:
    job = JobDir(tmp_path)
    with pytest.raises(DatasetError, match="no uploaded dataset"):
        job.find_upload()
    job.upload("data.tar.gz").write_bytes(b"x")
    assert job.find_upload() == tmp_path / "upload.tar.gz"


@pytest.mark.parametrize("name", ["../x.png", "a/b.png", ".hidden.png", "x.jpg", "a..png", ""])
def test_preview_names_cannot_leave_the_previews_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        JobDir(tmp_path).preview(name)


def test_preview_name(tmp_path: Path) -> None:
    assert JobDir(tmp_path).preview("3_delta.png") == tmp_path / "previews" / "3_delta.png"


def test_atomic_path_replaces_only_when_the_block_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("first")
        assert not target.exists()  # nobody sees the file before it is complete
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]  # no temporary file left


def test_index_root_is_stored_relative_inside_the_folder_and_absolute_outside(tmp_path: Path) -> None:
    archive = write_small_zip(tmp_path / "small.zip", per_class=2)
    job = JobDir(tmp_path / "job")
    index = open_dataset(archive, job.root, decode=False)
    assert index.root.is_absolute()
    job.save_index(index)
    assert json.loads(job.index.read_text())["root"] == "dataset"
    assert index.root.is_absolute()  # saving leaves the caller's index alone
    assert job.load_index() == index

    folder = tmp_path / "folder"  # a dataset given as a folder stays where it is
    shutil.copytree(index.root, folder)
    outside = open_dataset(folder, tmp_path / "other", decode=False)
    job.save_index(outside)
    assert json.loads(job.index.read_text())["root"] == str(folder)
    assert job.load_index().root == folder


def test_remove_partial_keeps_the_upload_and_its_index(tmp_path: Path) -> None:
    job = JobDir(tmp_path / "job")
    job.root.mkdir()
    job.upload().write_bytes(b"zip")
    job.index.write_text("{}")
    job.working.write_bytes(b"npz")
    job.shard(0, 8).parent.mkdir()
    job.shard(0, 8).write_bytes(b"npy")
    job.remove_partial()
    assert sorted(p.name for p in job.root.iterdir()) == ["index.json", "upload.zip"]
    job.remove()
    assert not job.root.exists()
    job.remove()  # nothing left: nothing happens
    job.remove_partial()


def test_no_torch_import() -> None:
    """The web API and the worker's task plumbing import the job folder without loading torch."""
    code = "import sys, engine.job_dir; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def api_creates_job(data_dir: Path, archive: Path) -> JobDir:
    """A job folder as the upload endpoint leaves it: the upload, its extraction and the index."""
    job = JobDir(data_dir / "jobs" / ("a" * 32))
    job.root.mkdir(parents=True)
    shutil.copyfile(archive, job.upload("my-data.zip"))
    index = open_dataset(job.upload("my-data.zip"), job.root, decode=False)  # headers only, as the API
    job.save_index(index)
    return job


def test_a_job_folder_runs_wherever_the_data_folder_is_mounted(tmp_path: Path) -> None:
    """The API host and a worker mount the shared data folder at different paths: the worker
    runs every stage in the folder as it sees it, and nothing reads the API host's path."""
    archive = write_small_zip(tmp_path / "small.zip", per_class=8)
    api_job = api_creates_job(tmp_path / "api-host" / "data", archive)
    worker_data = tmp_path / "worker-mount" / "data"
    shutil.copytree(tmp_path / "api-host" / "data", worker_data)
    shutil.rmtree(tmp_path / "api-host")  # the API host's path does not exist on the worker
    job = JobDir(worker_data / "jobs" / api_job.root.name)

    cfg = preset("fast", **TINY)
    index = stages.ingest(job, cfg)
    assert index.root == job.dataset and len(index.entries) == 24
    stages.train(job, cfg)
    stages.means(job, cfg)
    for start, stop in stages.plan_shards(job, cfg):
        stages.craft_shard(job, cfg, start, stop)
    with zipfile.ZipFile(stages.package(job, cfg)) as z:
        assert len([n for n in z.namelist() if n.endswith(".png")]) == 24
    assert not (tmp_path / "api-host").exists()


def test_an_absolute_index_root_would_break_on_another_mount(tmp_path: Path) -> None:
    """What the API used to save (the host's absolute path) fails as soon as the folder is elsewhere."""
    archive = write_small_zip(tmp_path / "small.zip", per_class=2)
    api_job = api_creates_job(tmp_path / "api-host" / "data", archive)
    api_job.index.write_text(api_job.load_index().to_json())  # the root as an absolute path
    shutil.move(tmp_path / "api-host", tmp_path / "worker-mount")
    job = JobDir(tmp_path / "worker-mount" / "data" / "jobs" / api_job.root.name)
    with pytest.raises(DatasetError, match="cannot be read") as failed:
        stages.ingest(job, preset("fast", **TINY))
    assert str(tmp_path / "api-host") in str(failed.value)  # it looked on the API host's path

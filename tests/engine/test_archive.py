"""Safe extraction: every hostile archive is refused by name and leaves nothing behind."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from engine.archive import Limits, extract_archive, safe_relpath
from engine.errors import DatasetError, LimitExceeded

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def make_zip(path: Path, files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def tar_file(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def refuse(source: Path, dest: Path, names: str, limits: Limits = Limits(), error: type = DatasetError) -> None:
    """Extraction fails with ``error`` mentioning ``names`` and leaves ``dest`` absent."""
    with pytest.raises(error) as info:
        extract_archive(source, dest, limits)
    assert names in str(info.value)
    assert not dest.exists()


def test_zip_extracts_and_unwraps_single_wrapper_folder(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "a.zip", {"data/cat/1.png": b"x", "data/dog/2.png": b"yy", "__MACOSX/data/._1.png": b"j"})
    root = extract_archive(src, tmp_path / "out")
    assert root == tmp_path / "out" / "data"
    assert (root / "cat" / "1.png").read_bytes() == b"x"
    assert (root / "dog" / "2.png").read_bytes() == b"yy"
    assert not (tmp_path / "out" / "__MACOSX").exists()


def test_junk_and_hidden_files_are_not_extracted(tmp_path: Path) -> None:
    files = {"cat/1.png": b"x", "cat/.DS_Store": b"j", "dog/Thumbs.db": b"j", ".hidden/x.png": b"j", "dog/2.png": b"y"}
    root = extract_archive(make_zip(tmp_path / "a.zip", files), tmp_path / "out")
    extracted = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert extracted == ["cat/1.png", "dog/2.png"]


def test_folder_holding_only_files_is_not_unwrapped(tmp_path: Path) -> None:
    root = extract_archive(make_zip(tmp_path / "a.zip", {"cat/1.png": b"x"}), tmp_path / "out")
    assert root == tmp_path / "out"


def test_tar_gz_extracts(tmp_path: Path) -> None:
    src = make_tar(tmp_path / "a.tar.gz", [(tar_file("cat/1.png"), b"abc"), (tar_file("dog/2.png"), b"de")])
    root = extract_archive(src, tmp_path / "out")
    assert (root / "cat" / "1.png").read_bytes() == b"abc"
    assert (root / "dog" / "2.png").read_bytes() == b"de"


def test_tar_of_current_folder_extracts(tmp_path: Path) -> None:
    """``tar czf data.tgz .`` starts with a "./" folder entry, which is harmless."""
    src = make_tar(tmp_path / "a.tgz", [(tar_file("./", tarfile.DIRTYPE), None), (tar_file("./cat/1.png"), b"a")])
    root = extract_archive(src, tmp_path / "out")
    assert (root / "cat" / "1.png").read_bytes() == b"a"


def test_duplicate_entry_refused(tmp_path: Path) -> None:
    src = tmp_path / "a.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("cat/1.png", b"a")
        with pytest.warns(UserWarning):
            zf.writestr("cat/1.png", b"b")
    refuse(src, tmp_path / "out", "cat/1.png")


def test_folder_source_is_used_in_place(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "1.png").write_bytes(b"x")
    assert extract_archive(tmp_path, tmp_path / "unused") == tmp_path
    assert not (tmp_path / "unused").exists()


def test_folder_source_with_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "link.png").symlink_to("/etc/passwd")
    with pytest.raises(DatasetError, match="link.png"):
        extract_archive(tmp_path, tmp_path / "unused")


@pytest.mark.parametrize("name", ["../evil.png", "cat/../../evil.png", "..\\evil.png"])
def test_zip_path_traversal_refused(tmp_path: Path, name: str) -> None:
    src = make_zip(tmp_path / "a.zip", {"cat/ok.png": b"x", name: b"evil"})
    refuse(src, tmp_path / "out", "evil.png")
    assert not (tmp_path / "evil.png").exists()


@pytest.mark.parametrize("name", ["/etc/evil.png", "C:/evil.png"])
def test_absolute_path_refused(tmp_path: Path, name: str) -> None:
    # zipfile strips a leading "/" when writing, so build the entry by hand.
    src = tmp_path / "a.zip"
    with zipfile.ZipFile(src, "w") as zf:
        info = zipfile.ZipInfo("placeholder")
        info.filename = name
        zf.writestr(info, b"evil")
    refuse(src, tmp_path / "out", "evil.png")


def test_zip_symlink_entry_refused(tmp_path: Path) -> None:
    src = tmp_path / "a.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("cat/ok.png", b"x")
        link = zipfile.ZipInfo("cat/link.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    refuse(src, tmp_path / "out", "link.png")


def test_zip_fifo_entry_refused(tmp_path: Path) -> None:
    src = tmp_path / "a.zip"
    with zipfile.ZipFile(src, "w") as zf:
        fifo = zipfile.ZipInfo("cat/pipe")
        fifo.create_system = 3
        fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
        zf.writestr(fifo, b"")
    refuse(src, tmp_path / "out", "cat/pipe")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_links_refused(tmp_path: Path, kind: bytes) -> None:
    src = make_tar(
        tmp_path / "a.tgz", [(tar_file("cat/1.png"), b"a"), (tar_file("cat/l.png", kind, "cat/1.png"), None)]
    )
    refuse(src, tmp_path / "out", "cat/l.png")


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_tar_device_and_fifo_refused(tmp_path: Path, kind: bytes) -> None:
    src = make_tar(tmp_path / "a.tgz", [(tar_file("cat/1.png"), b"a"), (tar_file("cat/dev", kind), None)])
    refuse(src, tmp_path / "out", "cat/dev")


def test_tar_traversal_refused(tmp_path: Path) -> None:
    src = make_tar(tmp_path / "a.tgz", [(tar_file("../evil.png"), b"evil")])
    refuse(src, tmp_path / "out", "evil.png")


def test_zip_bomb_ratio_refused(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "a.zip", {"cat/ok.png": b"x", "cat/bomb.bmp": bytes(4 << 20)})
    refuse(src, tmp_path / "out", "bomb.bmp", error=LimitExceeded)


def test_tar_gz_bomb_ratio_refused(tmp_path: Path) -> None:
    src = make_tar(tmp_path / "a.tgz", [(tar_file("cat/bomb.bmp"), bytes(4 << 20))])
    refuse(src, tmp_path / "out", "compression ratio", error=LimitExceeded)


def test_too_many_files_refused(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "a.zip", {f"cat/{i}.png": b"x" for i in range(6)})
    refuse(src, tmp_path / "out", "cat/5.png", Limits(max_files=5), LimitExceeded)


def test_uncompressed_total_over_limit_refused(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "a.zip", {"cat/a.png": bytes(600), "cat/b.png": bytes(600)}, zipfile.ZIP_STORED)
    refuse(src, tmp_path / "out", "cat/b.png", Limits(max_uncompressed_bytes=1000), LimitExceeded)


def test_upload_over_limit_refused(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "a.zip", {"cat/a.png": bytes(600)}, zipfile.ZIP_STORED)
    refuse(src, tmp_path / "out", "a.zip", Limits(max_upload_bytes=100), LimitExceeded)


def test_lying_declared_size_is_caught(tmp_path: Path) -> None:
    """An entry whose header understates its size fails, and earlier entries are removed."""
    data = bytes(range(256)) * 64
    src = make_zip(tmp_path / "a.zip", {"cat/first.png": b"ok", "cat/liar.png": data}, zipfile.ZIP_STORED)
    raw = bytearray(src.read_bytes())
    true_size = len(data).to_bytes(4, "little")
    fake_size = (100).to_bytes(4, "little")
    local = raw.index(b"PK\x03\x04", raw.index(b"cat/liar.png") - 30)
    raw[local + 22 : local + 26] = fake_size  # local header uncompressed size
    central = raw.rindex(b"PK\x01\x02")
    assert raw[central + 24 : central + 28] == true_size
    raw[central + 24 : central + 28] = fake_size  # central directory uncompressed size
    src.write_bytes(bytes(raw))
    refuse(src, tmp_path / "out", "cat/liar.png")


def test_not_an_archive_refused(tmp_path: Path) -> None:
    src = tmp_path / "photo.png"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    refuse(src, tmp_path / "out", "photo.png is not a zip or tar.gz archive")


def test_existing_empty_dest_is_emptied_not_removed_on_error(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "a.zip", {"cat/ok.png": b"x", "../evil.png": b"evil"})
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DatasetError):
        extract_archive(src, dest)
    assert dest.is_dir() and not any(dest.iterdir())


def test_sample_dataset_extracts(tmp_path: Path) -> None:
    root = extract_archive(SAMPLES / "cifar10-train.zip", tmp_path / "out")
    assert len(list(root.rglob("*.png"))) == 400


def test_safe_relpath_normalises() -> None:
    assert str(safe_relpath("./cat//a.png")) == "cat/a.png"

"""Safe extraction of an uploaded dataset archive (zip or tar) into a work folder.

Uploads come from strangers, so every entry is checked before a byte is written:
no path traversal, no absolute paths, no links, no device files, and limits on the
file count, the uncompressed size and the compression ratio (zip bombs). Declared
sizes are checked up front and real bytes are counted while copying, because an
archive's headers can lie. On any error the partial extraction is removed, so a
failed upload leaves nothing behind.

This module is deliberately torch-free: the web API validates uploads with it.
"""

from __future__ import annotations

import errno
import gzip
import lzma
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, cast

from engine.errors import DatasetError, LimitExceeded, OutOfDiskSpace

GiB = 1 << 30
_CHUNK = 1 << 20
# Tiny files compress extremely well (a blank 1 MB bitmap deflates ~1000x), so the
# ratio limit only applies once an entry (or the whole archive) is bigger than this.
RATIO_MIN_BYTES = 1 << 20
JUNK_NAMES = frozenset({"__MACOSX", "Thumbs.db", "thumbs.db", "desktop.ini", "Desktop.ini"})
MAX_DEPTH = 32  # folders in an entry's path
MAX_NAME_BYTES = 255  # one file or folder name (the usual file-system limit)
MAX_PATH_BYTES = 1024  # a whole entry path
# A tar long-name or pax header is read whole by tarfile before anything else can look at it.
MAX_TAR_HEADER_BYTES = 64 * 1024
_TAR_META_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class Limits:
    """Upload limits; every one is configurable by the service settings."""

    max_upload_bytes: int = 2 * GiB  # size of the uploaded archive itself
    max_uncompressed_bytes: int = 8 * GiB  # sum of all extracted files
    max_files: int = 200_000  # entries in the archive: files, folders and ignored files alike
    max_pixels: int = 50_000_000  # width * height of any one image
    max_ratio: float = 200.0  # uncompressed / compressed, per entry and overall
    min_free_bytes: int = 0  # free disk space that extraction must leave


def is_junk(rel: str | PurePosixPath) -> bool:
    """OS clutter and hidden files (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``, ``.*``)."""
    parts = PurePosixPath(rel).parts
    return any(p in JUNK_NAMES or p.startswith(".") for p in parts)


def extract_archive(source: Path, dest: Path, limits: Limits = Limits()) -> Path:
    """Extract ``source`` (zip, tar, tar.gz or a plain folder) and return the dataset root.

    A folder source is validated in place (nothing copied) and returned. An archive is
    extracted into ``dest``, which must not exist or be empty. A single top-level wrapper
    folder (``mydata/cat/...``, ``mydata/dog/...``) is unwrapped: the returned root is
    ``dest/mydata``. Raises DatasetError / LimitExceeded naming the offending entry.
    """
    source = Path(source)
    if source.is_dir():
        _check_folder(source, limits)
        return _unwrap(source)
    if not source.is_file():
        raise DatasetError(f"{source.name} does not exist or is not a regular file", [source.name])
    size = source.stat().st_size
    if size > limits.max_upload_bytes:
        raise LimitExceeded(
            f"{source.name} is {_human(size)}, over the upload limit of {_human(limits.max_upload_bytes)}",
            [source.name],
        )
    dest = Path(dest)
    created = not dest.exists()
    if not created and any(dest.iterdir()):
        raise ValueError(f"extraction folder {dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with disk_full_as_error():
            if zipfile.is_zipfile(source):
                _extract_zip(source, dest, limits, size)
            else:
                _extract_tar(source, dest, limits, size)
        return _unwrap(dest)
    except (Exception, KeyboardInterrupt):
        _remove(dest, keep_dir=not created)
        raise


def safe_relpath(name: str) -> PurePosixPath:
    """The entry's relative path, or DatasetError for absolute paths and ``..`` parts."""
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise DatasetError(f"archive entry {name!r} has an absolute path", [name])
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise DatasetError(f"archive entry {name!r} points outside the archive (path traversal)", [name])
    if not parts:
        raise DatasetError(f"archive entry {name!r} has an empty name", [name])
    if any("\x00" in p for p in parts):
        raise DatasetError(f"archive entry {name!r} has a NUL byte in its name", [name])
    if len(parts) > MAX_DEPTH:
        raise DatasetError(
            f"archive entry {_short(name)!r} is nested {len(parts)} levels deep, over the limit of {MAX_DEPTH}", [name]
        )
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for p in parts) or (
        len(name.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES
    ):
        raise DatasetError(
            f"archive entry {_short(name)!r} has a name longer than {MAX_NAME_BYTES} bytes "
            f"(or a path longer than {MAX_PATH_BYTES})",
            [name],
        )
    return PurePosixPath(*parts)


def _short(name: str, keep: int = 120) -> str:
    """A name cut to a readable length for a message."""
    return name if len(name) <= keep else f"{name[:keep]}..."


class _Budget:
    """Counts files and bytes against the limits; shared by the declared and real checks."""

    def __init__(self, limits: Limits, archive_size: int | None = None) -> None:
        self.limits = limits
        self.archive_size = archive_size  # when given, real bytes are held to the whole-archive ratio
        self.files = 0
        self.bytes = 0

    def add_file(self, name: str) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise LimitExceeded(
                f"the archive has more than {self.limits.max_files} files (limit reached at {name!r})", [name]
            )

    def add_bytes(self, name: str, n: int) -> None:
        self.bytes += n
        if self.bytes > self.limits.max_uncompressed_bytes:
            raise LimitExceeded(
                f"the archive unpacks to more than {_human(self.limits.max_uncompressed_bytes)} "
                f"(limit reached at {name!r})",
                [name],
            )
        if self.archive_size is not None:
            self.check_ratio("(whole archive)", self.bytes, self.archive_size, "archive")

    def check_ratio(self, name: str, uncompressed: int, compressed: int, what: str) -> None:
        if uncompressed > RATIO_MIN_BYTES and uncompressed > self.limits.max_ratio * max(compressed, 1):
            ratio = uncompressed / max(compressed, 1)
            raise LimitExceeded(
                f"{what} {name!r} has a compression ratio of {ratio:.0f}:1, over the limit of "
                f"{self.limits.max_ratio:.0f}:1 (possible zip bomb)",
                [name],
            )


def _zip_entries(zf: zipfile.ZipFile, limits: Limits, archive_size: int) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Check every entry's name, type and declared sizes before anything is written.

    Every entry counts against the entry limit, folders and ignored files included. The
    whole-archive ratio is taken against the archive's real size, never the sum of the
    compressed sizes its headers declare (overlapping or inflated headers can lie).
    """
    declared = _Budget(limits)
    out: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    seen: set[str] = set()
    for info in zf.infolist():
        name = info.filename
        declared.add_file(name)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise DatasetError(f"archive entry {name!r} is a symbolic link; links are not allowed", [name])
        if info.is_dir() or kind == stat.S_IFDIR:
            continue  # folders are created from the file paths, never from entries
        rel = safe_relpath(name)
        if kind not in (0, stat.S_IFREG):
            raise DatasetError(f"archive entry {name!r} is not a regular file (device, fifo or socket)", [name])
        if is_junk(rel):
            continue
        if info.flag_bits & 0x1:
            raise DatasetError(f"archive entry {name!r} is encrypted; upload an unencrypted archive", [name])
        key = str(rel)
        if key in seen:
            raise DatasetError(f"archive entry {name!r} appears more than once", [name])
        seen.add(key)
        declared.add_bytes(name, info.file_size)
        declared.check_ratio(name, info.file_size, info.compress_size, "archive entry")
        declared.check_ratio("(whole archive)", declared.bytes, archive_size, "archive")
        out.append((info, rel))
    return out


def _extract_zip(source: Path, dest: Path, limits: Limits, archive_size: int) -> None:
    try:
        with zipfile.ZipFile(source) as zf:
            entries = _zip_entries(zf, limits, archive_size)
            real = _Budget(limits, archive_size)
            for info, rel in entries:
                try:
                    with zf.open(info) as stream:
                        _copy_entry(stream, dest, rel, info.filename, real, info.file_size)
                except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                    name = info.filename
                    raise DatasetError(f"archive entry {name!r} is damaged: {exc}", [name]) from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise DatasetError(f"{source.name} is a damaged or unsupported zip archive: {exc}", [source.name]) from exc


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar header whose long name or pax record is refused before tarfile reads it whole."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _TAR_META_TYPES and self.size > MAX_TAR_HEADER_BYTES:
            raise LimitExceeded(
                f"the archive has a tar header of {_human(self.size)} (a long name or pax record), over the "
                f"limit of {_human(MAX_TAR_HEADER_BYTES)}"
            )
        if self.type == tarfile.GNUTYPE_SPARSE:
            name = self.name
            raise DatasetError(f"archive entry {name!r} is a sparse file; sparse files are not allowed", [name])
        return cast(tarfile.TarInfo, super()._proc_member(archive))  # type: ignore[misc]


def _extract_tar(source: Path, dest: Path, limits: Limits, archive_size: int) -> None:
    """Two passes: headers first (stops at the first bad header), then the copy.

    Every entry counts against the entry limit, and the data of every entry, ignored ones
    included, against the byte and ratio limits: the first pass stops before tarfile reads
    past a limit, so a gzip bomb is refused after decompressing at most the limit.
    """
    try:
        opened = tarfile.open(source, "r:*", tarinfo=_BoundedTarInfo)
    except (tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise DatasetError(f"{source.name} is not a zip or tar.gz archive", [source.name]) from exc
    except RecursionError as exc:
        raise DatasetError(f"{source.name} has too many chained tar headers", [source.name]) from exc
    try:
        with opened as tf:
            declared = _Budget(limits)
            entries: list[tuple[tarfile.TarInfo, PurePosixPath]] = []
            seen: set[str] = set()
            for member in _tar_members(tf):
                name = member.name
                declared.add_file(name)
                if not member.isdir():
                    declared.add_bytes(name, member.size)  # skipping over ignored data decompresses it too
                declared.check_ratio("(whole archive)", max(declared.bytes, tf.offset), archive_size, "archive")
                if member.issym() or member.islnk():
                    raise DatasetError(f"archive entry {name!r} is a link; links are not allowed", [name])
                if member.isdir():
                    continue  # folders (including "./") are created from the file paths
                rel = safe_relpath(name)
                if not member.isreg() or member.issparse():
                    raise DatasetError(
                        f"archive entry {name!r} is not a regular file (device, fifo or other special type)", [name]
                    )
                if is_junk(rel):
                    continue
                key = str(rel)
                if key in seen:
                    raise DatasetError(f"archive entry {name!r} appears more than once", [name])
                seen.add(key)
                entries.append((member, rel))
            real = _Budget(limits, archive_size)
            for member, rel in entries:
                stream = tf.extractfile(member)
                if stream is None:  # pragma: no cover - isreg() members always have data
                    raise DatasetError(f"archive entry {member.name!r} has no data", [member.name])
                with stream:
                    _copy_entry(stream, dest, rel, member.name, real, member.size)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as exc:
        raise DatasetError(f"{source.name} is a damaged or unsupported tar archive: {exc}", [source.name]) from exc
    except RecursionError as exc:
        raise DatasetError(f"{source.name} has too many chained tar headers", [source.name]) from exc


def _tar_members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := tf.next()) is not None:
        yield member


def _copy_entry(stream: IO[bytes], dest: Path, rel: PurePosixPath, name: str, budget: _Budget, declared: int) -> None:
    """Copy one entry, counting real bytes; never writes outside ``dest``."""
    target = dest.joinpath(*rel.parts)
    root = dest.resolve()
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise DatasetError(f"archive entry {name!r} clashes with another entry of the same name", [name]) from exc
    resolved = parent.resolve() / target.name
    if not resolved.is_relative_to(root):
        raise DatasetError(f"archive entry {name!r} points outside the archive", [name])
    budget.add_file(name)
    written = 0
    try:
        out = open(resolved, "xb")
    except (FileExistsError, IsADirectoryError, NotADirectoryError) as exc:
        raise DatasetError(f"archive entry {name!r} clashes with another entry of the same name", [name]) from exc
    with out:
        while chunk := stream.read(_CHUNK):
            written += len(chunk)
            if written > declared:
                raise LimitExceeded(f"archive entry {name!r} is larger than its header declares", [name])
            budget.add_bytes(name, len(chunk))
            check_free_space(dest, budget.limits.min_free_bytes)
            out.write(chunk)


def check_free_space(folder: Path, min_free_bytes: int) -> None:
    """Raise OutOfDiskSpace when ``folder``'s file system has less than ``min_free_bytes`` free."""
    if min_free_bytes > 0 and shutil.disk_usage(folder).free < min_free_bytes:
        raise OutOfDiskSpace()


@contextmanager
def disk_full_as_error() -> Iterator[None]:
    """Turn a write that failed for want of space (ENOSPC, EDQUOT) into OutOfDiskSpace."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise OutOfDiskSpace() from exc
        raise


def _check_folder(root: Path, limits: Limits) -> None:
    """A folder source is used in place; refuse links and special files, apply the limits."""
    budget = _Budget(limits)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = base / name
            rel = path.relative_to(root).as_posix()
            if is_junk(rel):
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                raise DatasetError(f"{rel!r} is a symbolic link; links are not allowed", [rel])
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise DatasetError(f"{rel!r} is not a regular file (device, fifo or socket)", [rel])
            budget.add_file(rel)
            budget.add_bytes(rel, st.st_size)
        dirnames[:] = [d for d in dirnames if not is_junk(d)]


def _unwrap(root: Path) -> Path:
    """Return the single wrapper folder if that is all there is and it holds folders."""
    children = [c for c in root.iterdir() if not is_junk(c.name)]
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        inner = children[0]
        if any(c.is_dir() and not is_junk(c.name) for c in inner.iterdir()):
            return inner
    return root


def _remove(dest: Path, keep_dir: bool) -> None:
    if not keep_dir:
        remove_tree(dest)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            remove_tree(child)
        else:
            child.unlink(missing_ok=True)


def remove_tree(root: Path) -> None:
    """Delete a folder and everything in it, however deep (``shutil.rmtree`` recurses and fails
    past ~1,000 levels before Python 3.12); links are removed, never followed. Best effort."""
    if not os.path.lexists(root):
        return
    if not Path(root).is_dir() or Path(root).is_symlink():
        with suppress(OSError):
            os.unlink(root)
        return
    stack: list[tuple[str, bool]] = [(str(root), False)]
    while stack:
        folder, emptied = stack.pop()
        if emptied:
            with suppress(OSError):
                os.rmdir(folder)
            continue
        stack.append((folder, True))
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, False))
            else:
                with suppress(OSError):
                    os.unlink(entry.path)


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover

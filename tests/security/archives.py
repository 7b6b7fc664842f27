"""Hostile archives built on the fly, without holding their decompressed bytes in memory."""

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

from PIL import Image

BLOCK = 512


def png_bytes(size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    return info.tobuf(format=tarfile.GNU_FORMAT)


def _write_data(out: gzip.GzipFile, size: int, byte: bytes = b"a", pad: bool = True) -> None:
    left = size
    while left > 0:
        n = min(1 << 20, left)
        out.write(byte * n)
        left -= n
    if pad:
        out.write(b"\0" * (-size % BLOCK))


def _valid_members(out: gzip.GzipFile) -> None:
    for name in ("cat/0.png", "dog/0.png"):
        data = png_bytes()
        out.write(_header(name, len(data)))
        out.write(data + b"\0" * (-len(data) % BLOCK))


def tar_with_big_header(path: Path, kind: bytes, size: int) -> Path:
    """A tar.gz whose first header is a GNU long name (``L``) or pax record (``x``) of ``size`` bytes."""
    with gzip.open(path, "wb", compresslevel=6) as out:
        if kind == tarfile.XHDTYPE:
            prefix = f"{size} path=".encode()  # one record: "<length> path=<value>\n"
            out.write(_header("././@PaxHeader", size, kind))
            out.write(prefix)
            _write_data(out, size - len(prefix) - 1, pad=False)
            out.write(b"\n" + b"\0" * (-size % BLOCK))
        else:
            out.write(_header("././@LongLink", size, kind))
            _write_data(out, size)
        _valid_members(out)
        out.write(b"\0" * (2 * BLOCK))
    return path


def tar_with_entries(path: Path, dirs: int = 0, hidden_bytes: int = 0) -> Path:
    """A valid two-class tar.gz plus ``dirs`` folder entries and a hidden member of ``hidden_bytes`` zeros."""
    with gzip.open(path, "wb", compresslevel=9) as out:
        _valid_members(out)
        for i in range(dirs):
            out.write(_header(f"cat/d{i}/", 0, tarfile.DIRTYPE))
        if hidden_bytes:
            out.write(_header("cat/.hidden", hidden_bytes))
            _write_data(out, hidden_bytes, b"\0")
        out.write(b"\0" * (2 * BLOCK))
    return path


def zip_with_forged_sizes(entries: dict[str, bytes], forged: str, compress_size: int) -> bytes:
    """A zip whose central directory claims ``compress_size`` compressed bytes for ``forged``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    raw = bytearray(buf.getvalue())
    central = 0
    encoded = forged.encode()
    while True:
        central = raw.index(b"PK\x01\x02", central)
        name_len = int.from_bytes(raw[central + 28 : central + 30], "little")
        if raw[central + 46 : central + 46 + name_len] == encoded:
            raw[central + 20 : central + 24] = compress_size.to_bytes(4, "little")
            return bytes(raw)
        central += 4


def blank_bmp(side: int) -> bytes:
    """An all-black BMP image: ``side`` x ``side`` x 3 bytes that deflate about 1000:1."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side)).save(buf, "BMP")
    return buf.getvalue()


def nested_zip(depth: int) -> bytes:
    """A valid two-class zip plus one image ``depth`` folders deep."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cat/0.png", png_bytes())
        zf.writestr("dog/0.png", png_bytes())
        zf.writestr("cat/" + "a/" * depth + "deep.png", png_bytes())
    return buf.getvalue()

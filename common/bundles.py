"""Code bundles (the zip files of `py_modules`): the caps that keep a small upload
from unpacking into gigabytes (a zip bomb), and the one place they are unpacked.

The gateway refuses a bundle whose declared sizes break a cap (`check_declared`);
declared sizes are the sender's word, so the worker counts the bytes it actually
writes while unpacking (`unpack`) and stops at the same caps.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_RATIO_FLOOR_BYTES = 2**20
"""The compression ratio is judged only above this many unpacked bytes: a few
files of repetitive text compress well and harm no one."""
_CHUNK = 2**16


@dataclass(frozen=True, slots=True)
class BundleLimits:
    max_bytes: int = 256 * 2**20  # unpacked, per bundle
    max_files: int = 20_000
    max_ratio: float = 100.0  # unpacked bytes per byte of zip file


class BundleRefused(ValueError):
    """A bundle that is not a zip, breaks a cap, or would write outside its directory."""


def check_declared(data: bytes, name: str, limits: BundleLimits = BundleLimits()) -> None:
    """Refuse `data` unless it is a zip whose entries, by their declared sizes,
    stay within `limits`."""
    with _open(data, name) as archive:
        infos = archive.infolist()
        _check_count(len(infos), name, limits)
        for info in infos:
            _check_name(info.filename, name)
        _check_size(sum(i.file_size for i in infos), len(data), name, limits)


def unpack(data: bytes, target: Path, name: str, limits: BundleLimits = BundleLimits()) -> None:
    """Unpack `data` into `target`, counting the bytes written (never trusting the
    declared sizes); BundleRefused as soon as a cap is passed (the caller discards
    `target`)."""
    with _open(data, name) as archive:
        infos = archive.infolist()
        _check_count(len(infos), name, limits)
        for info in infos:
            _check_name(info.filename, name)
        written = 0
        try:
            for info in infos:
                path = target.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(path, "wb") as sink:
                    while chunk := source.read(_CHUNK):
                        written += len(chunk)
                        _check_size(written, len(data), name, limits)
                        sink.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError) as e:  # CRC errors, truncation
            raise BundleRefused(f"{name} could not be unpacked: {e}") from None


def _open(data: bytes, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise BundleRefused(f"{name} is not a zip file: {e}") from None


def _check_count(count: int, name: str, limits: BundleLimits) -> None:
    if count > limits.max_files:
        raise BundleRefused(f"{name} holds {count} entries, over the limit of {limits.max_files}")


def _check_size(unpacked: int, packed: int, name: str, limits: BundleLimits) -> None:
    if unpacked > limits.max_bytes:
        raise BundleRefused(f"{name} unpacks to more than {limits.max_bytes:,} bytes, the limit")
    if unpacked > _RATIO_FLOOR_BYTES and unpacked > limits.max_ratio * max(packed, 1):
        raise BundleRefused(
            f"{name} unpacks to more than {limits.max_ratio:g} times its size "
            f"({packed:,} bytes): refused as a likely zip bomb"
        )


def _check_name(filename: str, name: str) -> None:
    # zipfile.extractall would quietly rewrite such names; refuse the whole bundle.
    parts = PurePosixPath(filename.replace("\\", "/")).parts
    if (
        filename.startswith(("/", "\\"))
        or (len(filename) > 1 and filename[1] == ":")
        or ".." in parts
        or "\0" in filename
    ):
        raise BundleRefused(
            f"{name} was refused: entry {filename!r} would land outside its directory "
            f"(absolute path or '..')"
        )

"""The zip-bomb caps on code bundles: declared sizes at the gateway, bytes
actually written at the worker."""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path

import pytest

from common.bundles import BundleLimits, BundleRefused, check_declared, unpack

SMALL = BundleLimits(max_bytes=4 * 2**20, max_files=50, max_ratio=100)


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_an_ordinary_bundle_passes_and_unpacks(tmp_path: Path) -> None:
    data = zipped({"pkg/__init__.py": b"X = 1\n", "pkg/sub/m.py": b"Y = 2\n" * 1000})
    check_declared(data, "b", SMALL)
    unpack(data, tmp_path, "b", SMALL)
    assert (tmp_path / "pkg" / "sub" / "m.py").read_bytes() == b"Y = 2\n" * 1000


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({f"m{i}.py": b"" for i in range(51)}, "51 entries, over the limit of 50"),
        ({"big.bin": os.urandom(5 * 2**20)}, "unpacks to more than 4,194,304 bytes"),
        ({"zeros.bin": bytes(3 * 2**20)}, "likely zip bomb"),  # ~1000:1
    ],
)
def test_caps_refuse_at_registration_and_at_unpacking(
    tmp_path: Path, files: dict[str, bytes], message: str
) -> None:
    data = zipped(files)
    with pytest.raises(BundleRefused, match=message):
        check_declared(data, "b", SMALL)
    with pytest.raises(BundleRefused, match=message):
        unpack(data, tmp_path, "b", SMALL)


def _understate_sizes(data: bytes, declared: int) -> bytes:
    """`data` (one entry) with its uncompressed size rewritten to `declared` in both
    the local header and the central directory, as a bomb that lies would do."""
    out = bytearray(data)
    local = out.index(b"PK\x03\x04")
    out[local + 22 : local + 26] = struct.pack("<I", declared)
    central = out.index(b"PK\x01\x02")
    out[central + 24 : central + 28] = struct.pack("<I", declared)
    return bytes(out)


def test_lying_declared_sizes_pass_the_gateway_but_not_the_worker(tmp_path: Path) -> None:
    lying = _understate_sizes(zipped({"zeros.bin": bytes(3 * 2**20)}), 100)
    check_declared(lying, "b", SMALL)  # the sender's word: 100 bytes
    with pytest.raises(BundleRefused, match="could not be unpacked"):
        unpack(lying, tmp_path, "b", SMALL)
    assert (tmp_path / "zeros.bin").stat().st_size <= 100  # never more than declared


def test_the_worker_counts_written_bytes_against_its_own_caps(tmp_path: Path) -> None:
    data = zipped({"a.bin": bytes(2 * 2**20), "b.bin": bytes(2 * 2**20)})
    tight = BundleLimits(max_bytes=3 * 2**20, max_files=50, max_ratio=10**6)
    with pytest.raises(BundleRefused, match="more than 3,145,728 bytes"):
        unpack(data, tmp_path, "b", tight)
    written = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert written <= 3 * 2**20  # stopped mid-file, at the cap


def test_names_that_escape_the_directory_are_refused(tmp_path: Path) -> None:
    for name in ("../evil.py", "a/../../evil.py", "/abs.py"):
        with pytest.raises(BundleRefused, match="outside its directory"):
            check_declared(zipped({name: b"x"}), "b")

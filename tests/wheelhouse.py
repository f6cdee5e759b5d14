"""Tiny pure-Python wheels and code bundles made on the spot, so tests install
real packages with pip without any network."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(directory: Path, package: str, version: str, source: str | None = None) -> Path:
    """A wheel of `package` whose module says VERSION = version (or holds `source`)."""
    directory.mkdir(parents=True, exist_ok=True)
    info = f"{package}-{version}.dist-info"
    files = {
        f"{package}/__init__.py": (source or f"VERSION = {version!r}\n").encode(),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
        ).encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [_record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = directory / f"{package}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return path


def make_bundle(files: dict[str, str]) -> bytes:
    """A zip of modules and packages, as `py_modules` ships them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, text in files.items():
            bundle.writestr(name, text)
    return buffer.getvalue()

"""A function's environment as the gateway receives it: code bundles to check and
store, and warnings for modules the function refers to by reference that no worker
may be able to import (the gateway never unpickles: the names come from the
pickle's opcodes, see `common.payloads.referenced_modules`)."""

from __future__ import annotations

import binascii
import hashlib
import importlib.util
import io
import re
import sys
import zipfile
from collections.abc import Iterable, Sequence

from common.bundles import BundleRefused, check_declared
from common.errors import InvalidPayload

# Names dill and pickle write that are not real imports on the worker.
_ALWAYS_THERE = {"__builtin__", "__main__", "builtins", "copy_reg"}


def bundles_from(texts: Sequence[str], *, max_bytes: int) -> dict[str, bytes]:
    """Base64 zip files by SHA-256; InvalidPayload if one is not a zip or they are
    larger than `max_bytes` together."""
    bundles: dict[str, bytes] = {}
    total = 0
    for index, text in enumerate(texts):
        try:
            data = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidPayload(f"py_modules[{index}] is not valid base64: {exc}") from None
        total += len(data)
        if total > max_bytes:
            raise InvalidPayload(f"py_modules are larger than {max_bytes} bytes together")
        try:
            check_declared(data, f"py_modules[{index}]")
        except BundleRefused as exc:
            raise InvalidPayload(str(exc)) from None
        bundles[hashlib.sha256(data).hexdigest()] = data
    return bundles


def zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        return bundle.namelist()


def top_level(path: str) -> str:
    """'pkg/sub/mod.py' -> 'pkg'; 'mod.py' -> 'mod'."""
    return path.split("/", 1)[0].removesuffix(".py")


def requirement_name(requirement: str) -> str:
    """The importable name a requirement most likely provides ('scikit-learn>=1' ->
    'scikit_learn'); a heuristic, used only to silence a warning."""
    name = re.split(r"[\s\[<>=!~;@(]", requirement, maxsplit=1)[0]
    return name.replace("-", "_").lower()


def unavailable_warnings(modules: Iterable[str], shipped: set[str]) -> list[str]:
    """A warning per top-level module that is neither in the standard library, nor
    installed here (the gateway runs the workers' image), nor shipped with the
    function."""
    warnings = []
    for top in sorted({m.split(".", 1)[0] for m in modules}):
        if top in _ALWAYS_THERE or top in sys.stdlib_module_names or top.lower() in shipped:
            continue
        if importlib.util.find_spec(top) is None:
            warnings.append(
                f"the function refers to module {top!r} by reference and the worker image "
                f"does not have it: register with the SDK (your own modules travel by value), "
                f"add it to requirements or py_modules, or use a worker image that has it"
            )
    return warnings

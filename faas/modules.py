"""Which of the caller's own modules a function needs, so the SDK can ship them by
value: workers have the platform's image, not the caller's code.

A module is the user's own when its file lies outside the standard library and
outside every site-packages (or dist-packages) directory: code in a project or a
script's folder. Installed packages stay by reference (the worker image, or the
function's `requirements`, provides them); so do built-in and extension modules.
The walk follows the function's globals and closure, the functions and classes
they name, and the modules those live in, to a bounded depth.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_MAX_OBJECTS = 10_000


def _library_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= {p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))}
    return tuple(Path(r).resolve() for r in roots if r)


_LIBRARY_ROOTS = _library_roots()
_PLATFORM_PACKAGES = ("faas", "common", "gateway", "dispatcher", "worker", "controller")


def is_user_module(module: types.ModuleType) -> bool:
    name = module.__name__
    if name == "__main__" or name.split(".")[0] in _PLATFORM_PACKAGES:
        return False  # __main__ is pickled by value anyway; ours is on every worker
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        return False  # built-in, frozen or compiled: cannot travel as source
    path = Path(file).resolve()
    return not any(path.is_relative_to(root) for root in _LIBRARY_ROOTS)


def user_modules(
    fn: Callable[..., Any], *, extra: tuple[types.ModuleType, ...] = ()
) -> list[types.ModuleType]:
    """The user's modules `fn` needs, in the order found (its own module first)."""
    found: dict[str, types.ModuleType] = {}
    seen: set[int] = set()
    pending: list[Any] = [fn, *extra]
    while pending and len(seen) < _MAX_OBJECTS:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        module = obj if isinstance(obj, types.ModuleType) else inspect.getmodule(obj)
        if module is None:
            continue
        # A script's own functions travel by value anyway, but what they use must
        # be found too (its helper modules); the script itself is not shipped.
        in_script = module.__name__ == "__main__" and module is not obj
        if not in_script:
            if not is_user_module(module):
                continue
            found.setdefault(module.__name__, module)
        pending.extend(_referenced(obj))
    return list(found.values())


def _referenced(obj: Any) -> Iterator[Any]:
    """What a function, class or module refers to by name."""
    if isinstance(obj, types.ModuleType):
        return  # a module is shipped whole; its own imports are found when it is loaded
    function = getattr(obj, "__func__", obj)  # bound methods
    if isinstance(function, types.FunctionType):
        names = _code_names(function.__code__)
        globals_ = function.__globals__
        yield from (globals_[n] for n in names if n in globals_)
        for cell in function.__closure__ or ():
            try:
                yield cell.cell_contents
            except ValueError:  # an empty cell
                continue
        yield from (function.__defaults__ or ())
    elif isinstance(obj, type):
        for value in vars(obj).values():
            yield getattr(value, "__func__", value)
        yield from obj.__bases__


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


SOURCES_BUDGET_CHARS = 256 * 1024
"""Source text sent with a registration, at most (the gateway's cap)."""


def source_texts(
    fn: Callable[..., Any], modules: list[types.ModuleType], *, budget: int = SOURCES_BUDGET_CHARS
) -> list[dict[str, Any]]:
    """What the workers show as source lines in the tracebacks of `fn`'s tasks: its
    own lines, then the whole file of each module shipped by value, each under the
    file name its code objects carry. Code without source (a REPL, a built-in) sends
    nothing; what does not fit `budget` is left out (its frames show no line)."""
    texts: list[dict[str, Any]] = []
    files = {getattr(m, "__file__", None) for m in modules}
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is not None and code.co_filename not in files:
        with contextlib.suppress(OSError, TypeError):
            lines, first = inspect.getsourcelines(fn)
            texts.append({"file": code.co_filename, "line": max(first, 1), "text": "".join(lines)})
    for module in modules:
        with contextlib.suppress(OSError, TypeError):
            texts.append({"file": module.__file__, "line": 1, "text": inspect.getsource(module)})
    kept, used = [], 0
    for text in texts:
        if used + len(text["text"]) <= budget:
            kept.append(text)
            used += len(text["text"])
    return kept

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
        if module is None or not is_user_module(module):
            continue
        if module.__name__ not in found:
            found[module.__name__] = module
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

"""The code inside a slot process, called directly."""

from __future__ import annotations

import pickle
import threading
from collections import OrderedDict

import cloudpickle
import msgpack
import pytest

from faas.client import pickle_function
from worker.slot import dump_exception, run_call, split_call


def call(fn, args=(), kwargs=None):  # type: ignore[no-untyped-def]
    return run_call(OrderedDict(), "f", cloudpickle.dumps(fn), pickle.dumps((args, kwargs or {})))


def test_a_value_comes_back_pickled() -> None:
    outcome, blob, error = call(lambda a, b=0: a + b, (1,), {"b": 2})
    assert (outcome, pickle.loads(blob), error) == ("ok", 3, "")


def test_an_exception_comes_back_as_itself_with_its_traceback() -> None:
    outcome, blob, error = call(lambda: {}["missing"])
    assert outcome == "error"
    assert isinstance(pickle.loads(blob), KeyError)
    assert "KeyError" in error and "Traceback" in error


def test_an_unpicklable_result_is_a_clear_error() -> None:
    outcome, blob, _ = call(lambda: threading.Lock())
    assert outcome == "error"
    assert "cannot be pickled" in str(pickle.loads(blob))


def test_an_exception_that_cannot_round_trip_becomes_a_runtime_error() -> None:
    class Odd(Exception):
        def __init__(self, a, b):  # type: ignore[no-untyped-def]
            super().__init__(a)
            self.lock = threading.Lock()

    restored = pickle.loads(dump_exception(Odd(1, 2)))
    assert isinstance(restored, RuntimeError)
    assert "Odd" in str(restored)


def test_functions_are_unpickled_once_per_slot() -> None:
    cache: OrderedDict = OrderedDict()
    fn = cloudpickle.dumps(lambda: 1)
    run_call(cache, "f", fn, pickle.dumps(((), {})))
    assert run_call(cache, "f", b"not used", pickle.dumps(((), {})))[0] == "ok"


@pytest.mark.parametrize("call_payload", [[1, 2], ((1,),), ({}, ()), "x"])
def test_the_arguments_must_be_args_and_kwargs(call_payload) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match=r"\(\(args\.\.\.\), \{kwargs\}\)"):
        split_call(call_payload)


def test_a_module_the_worker_lacks_is_a_dependency_failure_with_a_hint() -> None:
    # A pickle that refers to a module nobody has installed
    missing = b"\x80\x04\x8c\x0enosuch_module_\x94\x8c\x01f\x94\x93\x94."
    outcome, blob, error = run_call(OrderedDict(), "f", missing, pickle.dumps(((), {})))
    assert outcome == "dependency"
    exc = pickle.loads(blob)
    assert isinstance(exc, ModuleNotFoundError) and exc.name == "nosuch_module_"
    assert "'nosuch_module_'" in error and "SDK" in error and "PYTHONPATH" in error


def test_tracebacks_show_registered_sources_and_no_platform_frames() -> None:
    namespace: dict = {}
    file = "/nowhere/user_code.py"  # not on this machine: the lines come from `sources`
    exec(compile("\n\ndef f(x):\n    return helper(x)\n\ndef helper(x):\n    raise KeyError(x)\n",
                 file, "exec"), namespace)  # fmt: skip
    sources = msgpack.packb([[file, 3, "def f(x):\n    return helper(x)\n"],
                             [file, 6, "def helper(x):\n    raise KeyError(x)\n"]])  # fmt: skip
    function = pickle_function(namespace["f"])
    outcome, _, error = run_call(OrderedDict(), "src", function, pickle.dumps(((1,), {})), sources)
    assert outcome == "error"
    assert f'File "{file}", line 4, in f\n    return helper(x)' in error, error
    assert f'File "{file}", line 7, in helper\n    raise KeyError(x)' in error, error
    assert "slot.py" not in error and "dill" not in error and "worker" not in error


def test_an_unpickling_failure_shows_no_platform_frames() -> None:
    outcome, _, error = run_call(OrderedDict(), "bad", b"\x80\x04K\x01.", b"junk")
    assert outcome == "error" and "UnpicklingError" in error
    assert "File " not in error  # every frame was the unpickler's or the slot's


def test_junk_sources_are_ignored() -> None:
    fn = cloudpickle.dumps(lambda: 1 / 0)
    outcome, _, error = run_call(OrderedDict(), "j", fn, pickle.dumps(((), {})), b"\xc1junk")
    assert outcome == "error" and "ZeroDivisionError" in error


def test_futures_in_the_arguments_become_their_results() -> None:
    from faas import futures
    from faas.client import Task

    first, second = Task(None, "id-1"), Task(None, "id-2")  # type: ignore[arg-type]
    with futures.collecting() as depends_on:
        args = cloudpickle.dumps(((first, [second, {"k": first}]), {"x": second}))
    assert depends_on == ["id-1", "id-2"]
    results = {"id-1": pickle.dumps(10), "id-2": pickle.dumps("two")}
    fn = cloudpickle.dumps(lambda a, b, x: (a, b, x))
    outcome, blob, _ = run_call(OrderedDict(), "f", fn, args, b"", results)
    assert (outcome, pickle.loads(blob)) == ("ok", (10, ["two", {"k": 10}], "two"))
    # without its result (pickled outside a submit), a reference fails clearly
    outcome, blob, error = run_call(OrderedDict(), "f", fn, args)
    assert outcome == "error" and "outside a submit's arguments" in error

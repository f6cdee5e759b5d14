"""Functions and classes typed in a client's `__main__` (a script or a REPL), pickled
with the course's dill helper: dill writes references to `__builtin__.__main__`
that only its own unpickler resolves, so slots must load with dill."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from faas.platform import LocalPlatform

CLIENT = textwrap.dedent(
    """
    import codecs, json, sys, time
    import dill, httpx

    serialize = lambda obj: codecs.encode(dill.dumps(obj), "base64").decode()
    deserialize = lambda text: dill.loads(codecs.decode(text.encode(), "base64"))

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    def norm1(p):
        return abs(p.x) + abs(p.y)

    def run(fn, *args):
        http = httpx.Client(base_url=sys.argv[1], timeout=30)
        fid = http.post("/register_function",
                        json={"name": "f", "payload": serialize(fn)}).json()["function_id"]
        tid = http.post("/execute_function",
                        json={"function_id": fid, "payload": serialize((args, {}))}).json()["task_id"]
        body = http.get(f"/result/{tid}", params={"wait": 20}).json()
        return body["status"], repr(deserialize(body["result"]))

    print(json.dumps({
        "lambda": run(lambda x: x * 2, 21),
        "def": run(norm1, Point(3, -4)),
        "instance": run(lambda p: type(p).__name__ + str(p.x), Point(5, 6)),
        "echo_instance": run(lambda p: p, Point(1, 2))[0],
    }))
    """
)


def test_a_dill_client_registers_main_module_code(platform: LocalPlatform) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, platform.url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert answers["lambda"] == ["COMPLETED", "42"]
    assert answers["def"] == ["COMPLETED", "7"]
    assert answers["instance"] == ["COMPLETED", "'Point5'"]
    assert answers["echo_instance"] == "COMPLETED"

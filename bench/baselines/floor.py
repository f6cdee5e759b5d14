"""The design's floor: `python -m bench --baselines floor`.

The thinnest service with this platform's durable path and nothing else, to tell what the
design costs (its hops) from what the implementation adds. A call crosses the same
process wake-ups as one in the platform's local mode, and ZeroMQ's I/O threads as one in
pull mode (whose worker process between dispatcher and slot it does not have):

    client -> gateway -> Redis -> dispatcher -> slot -> dispatcher -> Redis -> gateway -> client

with the same parts: FastAPI on uvicorn (uvloop, httptools) for HTTP, the platform's own
Redis (`faas up`'s: append-only, fsync always) with hiredis, ZeroMQ between dispatcher
and slots (over ipc://, no CURVE). The gateway adds the task to a stream and waits for its
result in one pipeline (XADD, BLPOP); the dispatcher reads the stream in a consumer group,
hands each entry to a free slot, and pushes the result and acknowledges the entry in one
pipeline. Nothing else: no validation, tenants, fencing, deadlines, retries, re-queueing of
a lost slot, status or metrics. So ours / floor is what all of that costs per call.

Run as `python -m bench.baselines.floor --slots N --port P` (bench/side.py's protocol: it
answers "ready" with the gateway's port and holds the floor until stdin closes; the parent
drives it over HTTP with the client it drives the platform with). Each of its processes
is this module with a `--role`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cloudpickle
from fastapi import FastAPI, Request
from fastapi.responses import Response

STREAM, GROUP = "floor:tasks", "floor"


def _redis(url: str):  # type: ignore[no-untyped-def]
    import redis.asyncio as redis

    from common.redis_connection import HiredisConnection

    pool = redis.ConnectionPool.from_url(url, connection_class=HiredisConnection)
    return redis.Redis(connection_pool=pool)


def function_key(function_id: str) -> str:
    return f"floor:f:{function_id}"


def result_key(task_id: str) -> str:
    return f"floor:r:{task_id}"


# -- the roles -------------------------------------------------------------------------------


def gateway(redis_url: str, port: int) -> None:
    import uvicorn

    app = FastAPI()
    store = _redis(redis_url)

    @app.post("/call/{function_id}")
    async def call(function_id: str, request: Request) -> Response:
        """Body and answer: pickles of (args, kwargs) and of the result."""
        task_id = uuid.uuid4().hex
        async with store.pipeline(transaction=False) as pipe:
            pipe.xadd(STREAM, {"t": task_id, "f": function_id, "a": await request.body()})
            pipe.blpop([result_key(task_id)], timeout=60)
            _, popped = await pipe.execute()
        return Response(popped[1], media_type="application/octet-stream")

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")  # fmt: skip


async def dispatcher(redis_url: str, endpoint: str) -> None:
    import zmq
    import zmq.asyncio

    reader, writer = _redis(redis_url), _redis(redis_url)  # XREADGROUP blocks its connection
    with contextlib.suppress(Exception):  # BUSYGROUP: there already
        await writer.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    router = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
    router.bind(endpoint)
    free: list[bytes] = []  # slots waiting for a task (each says so when it starts)
    has_free = asyncio.Event()
    functions: dict[bytes, bytes] = {}
    entries: dict[bytes, bytes] = {}  # task id -> stream entry id

    async def collect() -> None:
        while True:
            slot, task_id, *result = await router.recv_multipart()
            free.append(slot)
            has_free.set()
            if result:  # else the slot's first word: it is ready
                async with writer.pipeline(transaction=False) as pipe:
                    pipe.lpush(result_key(task_id.decode()), result[0])
                    pipe.expire(result_key(task_id.decode()), 600)
                    pipe.xack(STREAM, GROUP, entries.pop(task_id))
                    await pipe.execute()

    collecting = asyncio.create_task(collect())
    while True:
        await has_free.wait()
        read = await reader.xreadgroup(GROUP, "d", {STREAM: ">"}, count=len(free), block=0)
        for entry_id, fields in read[0][1]:
            function_id = fields[b"f"]
            if function_id not in functions:
                functions[function_id] = await writer.get(function_key(function_id.decode()))
            entries[fields[b"t"]] = entry_id
            await router.send_multipart(
                [free.pop(), fields[b"t"], function_id, functions[function_id], fields[b"a"]]
            )
        if not free:
            has_free.clear()
        if collecting.done():
            collecting.result()  # raises what ended it


def slot(endpoint: str) -> None:
    import zmq

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(endpoint)
    sock.send(b"")
    functions = {}
    while True:
        task_id, function_id, function, payload = sock.recv_multipart()
        if function_id not in functions:
            functions[function_id] = cloudpickle.loads(function)
        args, kwargs = cloudpickle.loads(payload)
        sock.send_multipart([task_id, cloudpickle.dumps(functions[function_id](*args, **kwargs))])


# -- the side: starts and holds the roles ----------------------------------------------------


def register(redis_url: str, functions: dict[str, object]) -> None:
    async def put() -> None:
        store = _redis(redis_url)
        for function_id, fn in functions.items():
            await store.set(function_key(function_id), cloudpickle.dumps(fn))
        await store.aclose()

    asyncio.run(put())


def _wait_listening(port: int, procs: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise RuntimeError("the floor did not start (its processes' output is above)")
        time.sleep(0.1)


def side(slots: int, port: int) -> None:
    from bench import workloads
    from bench.side import serve
    from faas.platform import LocalPlatform, PlatformConfig

    cloudpickle.register_pickle_by_value(workloads)  # as the SDK ships a user's functions
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        config = PlatformConfig(data_dir=Path(tmp, "data"), log_dir=Path(tmp, "logs"),
                                secure=False)  # fmt: skip
        platform = LocalPlatform(config)
        platform.start_redis()  # the platform's own Redis, as `faas up` runs it
        url, endpoint = platform.redis_url, f"ipc://{tmp}/floor.sock"
        register(url, {f.__name__: f for f in (workloads.noop, workloads.echo)})
        me = [sys.executable, "-m", "bench.baselines.floor", "--redis", url]
        roles = [["--role", "dispatcher", "--endpoint", endpoint],
                 *[["--role", "slot", "--endpoint", endpoint]] * slots,
                 ["--role", "gateway", "--port", str(port)]]  # fmt: skip
        procs = [subprocess.Popen(me + role, stdout=sys.stderr) for role in roles]
        try:
            _wait_listening(port, procs, timeout_s=60)
            serve({}, ready={"port": port, "slots": slots})
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)
            platform.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines.floor")
    parser.add_argument("--role", choices=("side", "gateway", "dispatcher", "slot"),
                        default="side")  # fmt: skip
    parser.add_argument("--redis")
    parser.add_argument("--endpoint")
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.role == "side":
        side(args.slots, args.port)
    elif args.role == "gateway":
        gateway(args.redis, args.port)
    elif args.role == "dispatcher":
        asyncio.run(dispatcher(args.redis, args.endpoint))
    else:
        slot(args.endpoint)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()

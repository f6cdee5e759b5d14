"""The dispatcher <-> worker link with CurveZMQ: real workers authenticate and
their traffic is encrypted; peers without an allowed key get nothing and change
nothing, whatever identity they claim."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import userfuncs
import zmq

from common import wire
from common.curve import KeyPair
from common.models import DispatchMode
from tests.conftest import deserialize, execute, make_platform, register, running_on, wait_result


def secure_env(server: KeyPair, worker: KeyPair) -> dict[str, str]:
    return {
        "FAAS_DISPATCHER_SECRET_KEY": server.secret,
        "FAAS_WORKER_PUBLIC_KEYS": worker.public,
        "FAAS_WORKER_SECRET_KEY": worker.secret,
        "FAAS_DISPATCHER_PUBLIC_KEY": server.public,
    }


def probe(port: int, identity: bytes, keys: KeyPair | None, server_public: str) -> list:
    """A peer that says HELLO and forges a result; returns whatever it received."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, identity)
    if keys is not None:
        sock.curve_secretkey = keys.secret.encode()
        sock.curve_publickey = keys.public.encode()
        sock.curve_serverkey = server_public.encode()
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        hello = {"worker_id": identity.decode(), "slots": 4, "seq": 1}
        try:  # never waiting: a peer refused at the handshake may have no pipe left to queue on
            sock.send_multipart(wire.pack(wire.Command.HELLO, hello), zmq.NOBLOCK)
            sock.send_multipart(wire.pack(wire.Command.READY, {"credits": 4}), zmq.NOBLOCK)
        except zmq.Again:
            return []
        received = []
        while sock.poll(1500):
            received.append(sock.recv_multipart())
        return received
    finally:
        sock.close(0)
        context.term()


@pytest.mark.parametrize("mode", [DispatchMode.PULL, DispatchMode.PUSH], ids=lambda m: m.value)
def test_only_workers_with_an_allowed_key_get_work(tmp_path: Path, mode: DispatchMode) -> None:
    server, worker = KeyPair.generate(), KeyPair.generate()
    env = secure_env(server, worker)
    with (
        make_platform(tmp_path, mode, workers=1, slots=1, env=env) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        # Given a real, authenticated worker running a task, and more work queued
        nap = register(http, userfuncs.nap)
        running = execute(http, nap, 2)
        victim_id = running_on(http, running)["worker_id"]
        queued = [execute(http, nap, 0.01) for _ in range(3)]
        # When peers without a key, with an unknown key, and with a stolen worker id connect
        port = platform.dispatcher_port
        assert probe(port, b"rogue", None, server.public) == []
        assert probe(port, b"rogue", KeyPair.generate(), server.public) == []
        assert probe(port, victim_id.encode(), None, server.public) == []
        # Then they received nothing, and every task ran on the real worker
        for task_id in [running, *queued]:
            assert wait_result(http, task_id)["status"] == "COMPLETED"
            assert http.get(f"/v1/tasks/{task_id}").json()["worker_id"] == victim_id
        fresh = wait_result(http, execute(http, register(http, userfuncs.double), 21))
        assert deserialize(fresh["result"]) == 42


def test_a_worker_with_the_key_is_served(tmp_path: Path) -> None:
    # The same probe with the pool's key is welcomed: the refusals above are the key's doing.
    server, worker = KeyPair.generate(), KeyPair.generate()
    with make_platform(tmp_path, DispatchMode.PULL, workers=0, env=secure_env(server, worker)) as p:
        received = probe(p.dispatcher_port, b"probe", worker, server.public)
    commands = [wire.unpack(frames).command for frames in received]
    assert wire.Command.WELCOME in commands

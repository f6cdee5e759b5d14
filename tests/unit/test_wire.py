from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import wire
from common.errors import ProtocolError

TASK = {"task_id": "t", "attempt": 2, "function_id": "f", "deadline_s": 30}
HELLO = {"worker_id": "w", "slots": 4, "running": [["t", 1]], "seq": 1}
RESULT = {"task_id": "t", "attempt": 1, "outcome": "ok", "error": "", "seq": 7}


def test_pack_and_unpack_round_trip_with_opaque_blobs() -> None:
    frames = wire.pack(wire.Command.TASK, TASK, b"\x80fn", b"args")
    msg = wire.unpack(frames)
    assert msg.command is wire.Command.TASK
    assert msg.header == TASK
    assert msg.blobs == [b"\x80fn", b"args"]


def test_every_command_has_a_byte_of_its_own_and_a_schema() -> None:
    # Two members with one value would make the second an alias of the first.
    assert len(wire.Command.__members__) == len(wire.Command) == len(wire.SCHEMAS)


def test_prefetch_fields_travel() -> None:
    started = {**RESULT, "started": [["u", 1]]}
    assert wire.unpack(wire.pack(wire.Command.RESULT, started, b"r")).header == started
    hello = {**HELLO, "prefetch": 4, "queued": [["u", 1]]}
    assert wire.unpack(wire.pack(wire.Command.HELLO, hello)).header == hello


def test_cancel_names_an_attempt() -> None:
    msg = wire.unpack(wire.pack(wire.Command.CANCEL, {"task_id": "t", "attempt": 2}))
    assert msg.command is wire.Command.CANCEL and msg.header == {"task_id": "t", "attempt": 2}


def test_unknown_header_fields_are_ignored_for_forward_compatibility() -> None:
    msg = wire.unpack(wire.pack(wire.Command.HELLO, {**HELLO, "labels": {"zone": "a"}}))
    assert msg.header["slots"] == 4


def test_a_batch_carries_several_messages_each_with_its_own_blobs() -> None:
    other = {**TASK, "task_id": "u", "futures": ["f1"]}
    frames = wire.pack_batch(
        wire.Command.TASK,
        [(TASK, [b"fn", b"args"]), (other, [b"fn", b"args2", b"", b"r1"])],
    )
    msg = wire.unpack(frames)
    assert msg.command is wire.Command.BATCH
    assert [(m.command, m.header, m.blobs) for m in msg.messages()] == [
        (wire.Command.TASK, TASK, [b"fn", b"args"]),
        (wire.Command.TASK, other, [b"fn", b"args2", b"", b"r1"]),
    ]


def test_a_batch_of_one_is_the_message_alone() -> None:
    msg = wire.unpack(wire.pack_batch(wire.Command.RESULT, [(RESULT, [b"r"])]))
    assert msg.command is wire.Command.RESULT
    assert msg.messages() == (msg,)


def _batch(parts: list, *blobs: bytes) -> list[bytes]:
    return wire.pack(wire.Command.BATCH, {"parts": parts}, *blobs)


@pytest.mark.parametrize(
    "frames",
    [
        _batch([]),
        _batch([[wire.Command.TASK.value[0], TASK, 2]], b"fn"),  # fewer blobs than parts say
        _batch([[wire.Command.RESULT.value[0], RESULT, 0]], b"r"),  # more
        _batch([[wire.Command.RESULT.value[0], {"task_id": "t"}, 1]], b"r"),  # a bad part
        _batch([[wire.Command.HELLO.value[0], HELLO, 0]]),  # not one a batch may carry
        _batch([[wire.Command.BATCH.value[0], {"parts": []}, 0]]),
        _batch([[float(wire.Command.TASK.value[0]), TASK, 2]], b"fn", b"args"),
        _batch([[wire.Command.TASK.value[0], TASK]], b"fn", b"args"),
    ],
)
def test_a_malformed_batch_raises_protocol_error(frames: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        wire.unpack(frames)


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [b"FAAS1", b"\x05"],
        [b"FAAS0", b"\x05", b"\x80"],
        [b"FAAS1", b"\x7f", b"\x80"],
        [b"FAAS1", b"\x05", b"\xc1"],
        [b"FAAS1", b"\x05", b"\x93\x01\x02\x03"],
        [b"GET / HTTP/1.1", b"", b""],
    ],
    ids=["empty", "short", "version", "command", "junk-header", "list-header", "http"],
)
def test_malformed_frames_raise_protocol_error(frames: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        wire.unpack(frames)


def test_a_task_with_futures_carries_one_result_frame_each() -> None:
    header = {**TASK, "futures": ["a", "b"]}
    msg = wire.unpack(wire.pack(wire.Command.TASK, header, b"f", b"args", b"", b"ra", b"rb"))
    assert msg.header["futures"] == ["a", "b"] and msg.blobs[3:] == [b"ra", b"rb"]


@pytest.mark.parametrize(
    ("command", "header", "blobs"),
    [
        (wire.Command.HELLO, {**HELLO, "slots": float("inf")}, ()),
        (wire.Command.HELLO, {**HELLO, "slots": True}, ()),
        (wire.Command.HELLO, {**HELLO, "slots": 0}, ()),
        (wire.Command.HELLO, {**HELLO, "slots": 10**6}, ()),
        (wire.Command.HELLO, {**HELLO, "slots": "4"}, ()),
        (wire.Command.HELLO, {"slots": 4}, ()),
        (wire.Command.HELLO, {**HELLO, "worker_id": "w" * 1000}, ()),
        (wire.Command.HELLO, {**HELLO, "running": [["t"]]}, ()),
        (wire.Command.HELLO, {**HELLO, "running": [[1, 1]]}, ()),
        (wire.Command.HELLO, {**HELLO, "running": "all"}, ()),
        (wire.Command.HELLO, {**HELLO, "seq": -1}, ()),
        (wire.Command.READY, {"credits": -5}, ()),
        (wire.Command.READY, {"credits": 2.5}, ()),
        (wire.Command.RESULT, {**RESULT, "attempt": 0}, (b"",)),
        (wire.Command.RESULT, {**RESULT, "outcome": "great"}, (b"",)),
        (wire.Command.RESULT, {**RESULT, "error": 3}, (b"",)),
        (wire.Command.RESULT, {k: v for k, v in RESULT.items() if k != "seq"}, (b"",)),
        (wire.Command.RESULT, RESULT, (b"", b"")),
        (wire.Command.RESULT, {**RESULT, "started": [["t", 0]]}, (b"",)),
        (wire.Command.STARTED, {"tasks": "t"}, ()),
        (wire.Command.RECALL, {"tasks": [["t", 1, 2]]}, ()),
        (wire.Command.TASK, {**TASK, "prefetched": 1}, (b"", b"")),
        (wire.Command.HELLO, {**HELLO, "prefetch": -1}, ()),
        (wire.Command.TASK, {**TASK, "deadline_s": float("nan")}, (b"f", b"a")),
        (wire.Command.TASK, {**TASK, "deadline_s": 0}, (b"f", b"a")),
        (wire.Command.TASK, TASK, (b"f",)),
        (wire.Command.TASK, TASK, (b"f", b"a", b"src", b"a result without futures")),
        (wire.Command.TASK, {**TASK, "futures": ["a", "b"]}, (b"f", b"a", b"", b"ra")),
        (wire.Command.TASK, {**TASK, "futures": []}, (b"f", b"a", b"")),
        (wire.Command.TASK, {**TASK, "futures": ["a"] * 1001}, (b"f", b"a", b"", *[b"r"] * 1001)),
        (wire.Command.WELCOME, {"heartbeat_interval_s": -1}, ()),
        (wire.Command.HEARTBEAT, {"acked": "all"}, ()),
        (wire.Command.CANCEL, {"task_id": "t"}, ()),
        (wire.Command.CANCEL, {"task_id": "t", "attempt": True}, ()),
        (wire.Command.CANCEL, {"task_id": "t" * 1000, "attempt": 1}, ()),
        (wire.Command.CANCEL, {"task_id": "t", "attempt": 1}, (b"",)),
    ],
)
def test_header_fields_of_the_wrong_type_or_range_raise_protocol_error(
    command: wire.Command, header: dict, blobs: tuple[bytes, ...]
) -> None:
    with pytest.raises(ProtocolError):
        wire.unpack(wire.pack(command, header, *blobs))


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_fields = st.sampled_from(
    ["worker_id", "slots", "running", "seq", "credits", "task_id", "attempt", "outcome",
     "error", "function_id", "deadline_s", "heartbeat_interval_s", "acked"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    command=st.sampled_from(list(wire.Command)),
    header=st.dictionaries(_fields, _values, max_size=8),
    blobs=st.lists(st.binary(max_size=8), max_size=3),
)
def test_any_header_either_parses_into_checked_fields_or_raises_protocol_error(
    command: wire.Command, header: dict, blobs: list[bytes]
) -> None:
    try:
        msg = wire.unpack([wire.PROTOCOL, command.value, msgpack.packb(header), *blobs])
    except ProtocolError:
        return
    required, optional, _ = wire.SCHEMAS[command]
    for name, check in {**required, **optional}.items():
        assert name in required or name not in msg.header or check(msg.header[name])
    assert all(name in msg.header for name in required)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_random_frames_never_raise_anything_but_protocol_error(frames: list[bytes]) -> None:
    try:
        wire.unpack(frames)
    except ProtocolError:
        pass


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.sampled_from([*wire.Command]).map(lambda c: c.value[0]) | _values,
            st.dictionaries(_fields, _values, max_size=6) | _values,
            st.integers(min_value=-2, max_value=4) | _values,
        ).map(list),
        max_size=4,
    ),
    blobs=st.lists(st.binary(max_size=8), max_size=6),
)
def test_any_batch_either_parses_into_checked_parts_or_raises_protocol_error(
    parts: list, blobs: list[bytes]
) -> None:
    try:
        msg = wire.unpack(wire.pack(wire.Command.BATCH, {"parts": parts}, *blobs))
    except ProtocolError:
        return
    assert msg.parts and all(part.command in wire.BATCHED for part in msg.parts)
    assert [b for part in msg.parts for b in part.blobs] == blobs
    for part in msg.parts:  # each as checked as if it came alone
        assert wire.unpack(wire.pack(part.command, part.header, *part.blobs)) == part

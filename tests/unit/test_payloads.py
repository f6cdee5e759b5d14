from __future__ import annotations

import base64
import codecs
import pickle
import struct

import cloudpickle
import dill
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import payloads
from common.errors import InvalidPayload

LIMIT = 2**20


def test_course_helper_payloads_with_line_breaks_decode_to_the_pickle() -> None:
    data = dill.dumps(list(range(100)))
    text = codecs.encode(data, "base64").decode()
    assert "\n" in text
    assert payloads.decode(text, max_bytes=LIMIT) == data


def test_cloudpickle_and_every_protocol_are_accepted() -> None:
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps({"a": (1, 2.0, "x")}, protocol=proto)
        assert payloads.decode(base64.b64encode(data).decode(), max_bytes=LIMIT) == data
    data = cloudpickle.dumps(lambda x: x + 1)
    assert payloads.decode(base64.b64encode(data).decode(), max_bytes=LIMIT) == data


def test_checking_a_payload_never_runs_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (open, (str(marker), "w"))

    payloads.decode(base64.b64encode(pickle.dumps(Evil())).decode(), max_bytes=LIMIT)
    assert not marker.exists()


@pytest.mark.parametrize(
    "text",
    ["payload", "", "\n", "abc", "aGVsbG8=", base64.b64encode(pickle.dumps(1)[:-1]).decode(),
     base64.b64encode(pickle.dumps(1) + b".").decode()],
)  # fmt: skip
def test_anything_else_is_invalid(text: str) -> None:
    with pytest.raises(InvalidPayload):
        payloads.decode(text, max_bytes=LIMIT)


def test_size_is_limited_before_decoding() -> None:
    with pytest.raises(InvalidPayload, match="larger than"):
        payloads.decode(base64.b64encode(pickle.dumps(b"x" * 2000)).decode(), max_bytes=1000)


def test_encode_is_readable_by_the_course_helper() -> None:
    data = pickle.dumps([1, 2])
    assert codecs.decode(payloads.encode(data).encode(), "base64") == data


def test_the_opcode_count_is_capped_with_a_message_naming_the_limit() -> None:
    nones = base64.b64encode(b"\x80\x04" + b"N" * 1001 + b".").decode()
    with pytest.raises(InvalidPayload, match="more than 1000 opcodes"):
        payloads.decode(nones, max_bytes=LIMIT, max_opcodes=1000)
    at_limit = base64.b64encode(b"\x80\x04" + b"N" * 997 + b".").decode()  # PROTO + 997 + STOP
    assert payloads.decode(at_limit, max_bytes=LIMIT, max_opcodes=999)


def test_the_default_cap_admits_a_million_ints() -> None:
    data = pickle.dumps(list(range(1_000_000)))
    assert payloads.decode(base64.b64encode(data).decode(), max_bytes=16 * 2**20) == data


def _with_frame_length(data: bytes, length: int) -> bytes:
    """`data` (protocol 4+, framed: PROTO then FRAME at byte 2) with its first
    FRAME declaring `length` bytes."""
    assert data[2:3] == pickle.FRAME
    return data[:3] + struct.pack("<Q", length) + data[11:]


def test_a_frame_longer_than_the_payload_is_refused_with_a_message() -> None:
    data = pickle.dumps(list(range(50)), protocol=5)
    bad = _with_frame_length(data, len(data))  # more than what follows
    with pytest.raises(InvalidPayload, match=r"FRAME at byte 2 declaring \d+ bytes, but only"):
        payloads.decode(base64.b64encode(bad).decode(), max_bytes=LIMIT)
    huge = _with_frame_length(data, 2**63)
    with pytest.raises(InvalidPayload, match="FRAME"):
        payloads.check_pickle(huge)


def test_a_frame_ending_inside_an_opcode_is_refused() -> None:
    data = pickle.dumps(["x" * 40, "y" * 40], protocol=4)
    declared = struct.unpack("<Q", data[3:11])[0]
    for wrong in (declared - 10, 10):  # both end inside a 40-character string
        with pytest.raises(InvalidPayload, match="inside an opcode"):
            payloads.check_pickle(_with_frame_length(data, wrong))
    payloads.check_pickle(data)  # the untouched pickle passes


def test_a_frame_inside_a_frame_is_refused() -> None:
    inner = pickle.dumps(1, protocol=4)  # PROTO FRAME(n) ... STOP
    body = inner[11:]
    nested = inner[:2] + pickle.FRAME + struct.pack("<Q", 9 + len(body))
    nested += pickle.FRAME + struct.pack("<Q", len(body)) + body
    with pytest.raises(InvalidPayload, match="inside another frame"):
        payloads.check_pickle(nested)


@given(
    value=st.recursive(
        st.none() | st.integers() | st.text(max_size=20) | st.binary(max_size=20),
        lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner),
        max_leaves=20,
    ),
    protocol=st.sampled_from([4, 5]),
    length=st.integers(0, 300) | st.integers(0, 2**64 - 1),
)
@settings(max_examples=300, deadline=None)
def test_the_checker_accepts_a_frame_length_exactly_when_the_unpickler_can_read_it(
    value: object, protocol: int, length: int
) -> None:
    data = pickle.dumps(value, protocol=protocol)
    if data[2:3] != pickle.FRAME:  # too small to be framed
        return
    mutated = _with_frame_length(data, length)
    if length == struct.unpack("<Q", data[3:11])[0]:
        payloads.check_pickle(mutated)  # the true length passes
    if length > len(data) - 11:
        with pytest.raises(InvalidPayload, match="but only"):
            payloads.check_pickle(mutated)
    try:
        payloads.check_pickle(mutated)
    except InvalidPayload:
        return
    # What the checker accepts, both unpicklers read (the pure-Python one checks frames).
    assert pickle.loads(mutated) == value
    assert pickle._loads(mutated) == value  # type: ignore[attr-defined]

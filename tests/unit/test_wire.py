from __future__ import annotations

import pytest

from common import wire
from common.errors import ProtocolError


def test_pack_and_unpack_round_trip_with_opaque_blobs() -> None:
    frames = wire.pack(wire.Command.TASK, {"task_id": "t", "attempt": 2}, b"\x80fn", b"args")
    msg = wire.unpack(frames)
    assert msg.command is wire.Command.TASK
    assert msg.header == {"task_id": "t", "attempt": 2}
    assert msg.blobs == [b"\x80fn", b"args"]


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

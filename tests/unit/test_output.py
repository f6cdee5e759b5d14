"""Task output on its way out of a worker (`worker.output`), its wire message and the
metrics label cap."""

from __future__ import annotations

import msgpack
import pytest

from common import metrics, wire
from common.errors import ProtocolError
from common.output import is_truncated
from worker.output import OutputBuffers


def buffers(**kwargs: float) -> tuple[OutputBuffers, list[tuple[str, int, bytes]]]:
    sent: list[tuple[str, int, bytes]] = []
    return OutputBuffers(lambda *chunk: sent.append(chunk), **kwargs), sent  # type: ignore[arg-type]


def test_output_waits_for_the_interval_then_goes_labelled_once() -> None:
    out, sent = buffers(flush_interval_s=10)
    out.add("t", 1, b"a\n")
    out.add("t", 1, b"b\n")
    out.flush_due(now=0)  # not yet due (since is "now" on the monotonic clock)
    assert sent == []
    out.flush_due(now=float("inf"))
    out.add("t", 1, b"c\n")
    out.finish("t", 1)
    assert sent == [("t", 1, b"--- attempt 1 ---\na\nb\n"), ("t", 1, b"c\n")]


def test_a_large_write_goes_at_once_and_an_attempt_that_printed_nothing_sends_nothing() -> None:
    out, sent = buffers(chunk_bytes=4)
    out.add("t", 2, b"12345")
    assert sent == [("t", 2, b"--- attempt 2 ---\n12345")]
    out.finish("t", 2)
    out.add("quiet", 1, b"")
    out.finish("quiet", 1)
    assert len(sent) == 1


def test_output_past_the_cap_is_dropped_and_marked_once() -> None:
    out, sent = buffers(max_bytes=10)
    out.add("t", 1, b"0123456")
    out.add("t", 1, b"789abcdef")
    out.add("t", 1, b"more")
    out.finish("t", 1)
    text = b"".join(chunk for _, _, chunk in sent).decode()
    assert text.startswith("--- attempt 1 ---\n0123456789\n--- output truncated: over 10 bytes")
    assert text.count("truncated") == 1 and "more" not in text and is_truncated(text)
    assert not is_truncated("--- attempt 1 ---\nfine\n")


def test_log_messages_are_checked() -> None:
    good = wire.pack(wire.Command.LOG, {"task_id": "t", "attempt": 1}, b"out")
    assert wire.unpack(good).blobs == [b"out"]
    for header, blobs in (
        ({"task_id": "t", "attempt": 0}, [b"x"]),
        ({"task_id": "t", "attempt": True}, [b"x"]),
        ({"attempt": 1}, [b"x"]),
        ({"task_id": "t", "attempt": 1}, []),
        ({"task_id": "t", "attempt": 1}, [b"x" * (wire.MAX_LOG_CHUNK + 1)]),
    ):
        frames = [wire.PROTOCOL, wire.Command.LOG.value, msgpack.packb(header), *blobs]
        with pytest.raises(ProtocolError):
            wire.unpack(frames)


def test_function_labels_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_seen", set())
    labels = [metrics.function_label(f"f{i}") for i in range(metrics.MAX_FUNCTION_LABELS + 5)]
    assert labels[: metrics.MAX_FUNCTION_LABELS] == [
        f"f{i}" for i in range(metrics.MAX_FUNCTION_LABELS)
    ]
    assert set(labels[metrics.MAX_FUNCTION_LABELS :]) == {"other"}
    assert metrics.function_label("f0") == "f0"

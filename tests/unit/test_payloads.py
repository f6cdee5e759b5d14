from __future__ import annotations

import base64
import codecs
import pickle

import cloudpickle
import dill
import pytest

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

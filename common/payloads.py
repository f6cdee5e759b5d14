"""Payload text <-> bytes, and the structural check the gateway applies.

Payloads are base64 text of a pickle (the course helper makes them with
`codecs.encode(dill.dumps(obj), "base64").decode()`, which wraps lines every 76
characters). The gateway must never unpickle user data, so it only checks that
the text is strict base64 and that the bytes are one well-formed pickle stream:
every opcode known and complete, ending in STOP with nothing after it.
`pickletools.genops` walks the opcodes without executing any of them.

That walk is pure Python (about 0.2 us per opcode), so it is capped at `max_opcodes`:
a 16 MiB pickle of one-byte opcodes would otherwise cost seconds of CPU. Callers on
an event loop run large payloads in a thread (see gateway/service.py).
"""

from __future__ import annotations

import base64
import binascii
import pickle
import pickletools

from common.errors import InvalidPayload

DEFAULT_MAX_OPCODES = 2_000_000
"""About half a second of checking; a list of a million small ints is ~1M opcodes."""


def decode(text: str, *, max_bytes: int, max_opcodes: int = DEFAULT_MAX_OPCODES) -> bytes:
    """Strict base64 (line breaks allowed) of a well-formed pickle, else InvalidPayload."""
    compact = text.replace("\n", "").replace("\r", "") if "\n" in text else text
    if not compact:
        raise InvalidPayload("payload is empty")
    if len(compact) // 4 * 3 > max_bytes + 3:
        raise InvalidPayload(f"payload is larger than {max_bytes} bytes")
    try:
        # strict_mode is the C equivalent of b64decode(validate=True), ~10x faster.
        data = binascii.a2b_base64(compact, strict_mode=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
        raise InvalidPayload(f"payload is not valid base64: {exc}") from None
    check_pickle(data, max_opcodes=max_opcodes)
    return data


class TooManyOpcodes(InvalidPayload):
    """The pickle has more opcodes than the cap it was checked with."""


def check_pickle(data: bytes, *, max_opcodes: int = DEFAULT_MAX_OPCODES) -> None:
    """Raise InvalidPayload unless `data` is exactly one complete pickle stream of at
    most `max_opcodes` opcodes."""
    end = -1
    frame_end: int | None = None  # where the current FRAME's declared bytes end
    try:
        for count, (opcode, _arg, pos) in enumerate(pickletools.genops(data), 1):
            if count > max_opcodes:
                raise TooManyOpcodes(
                    f"payload pickle has more than {max_opcodes} opcodes, the limit"
                    " (FAAS_MAX_PICKLE_OPCODES); send large data as bytes or arrays"
                )
            if opcode.name == "PROTO" and not 0 <= _arg <= pickle.HIGHEST_PROTOCOL:
                raise InvalidPayload(f"unsupported pickle protocol {_arg}")
            if frame_end is not None and pos >= frame_end:
                _check_frame_end(frame_end, pos)
                frame_end = None
            if opcode.name == "FRAME":
                frame_end = _frame_end(data, pos, _arg, frame_end)
            end = pos
    except InvalidPayload:
        raise
    except Exception as exc:  # genops raises ValueError and others on junk
        raise InvalidPayload(f"payload is not a well-formed pickle: {exc}") from None
    # genops stops at STOP (1 byte); anything after it was not part of the pickle.
    if end < 0 or end + 1 != len(data):
        raise InvalidPayload("payload has trailing bytes after the pickle")
    if frame_end is not None:
        _check_frame_end(frame_end, len(data))


_FRAME_HEADER = 9  # the FRAME opcode and its 8-byte length


def _frame_end(data: bytes, pos: int, length: int, open_frame_end: int | None) -> int:
    """Where a FRAME at `pos` declaring `length` bytes ends; InvalidPayload if those
    bytes are not all there or another frame is still open (an unpickler would fail
    on it later, as if the user's code were at fault)."""
    if open_frame_end is not None:
        raise InvalidPayload(f"payload pickle starts a FRAME at byte {pos} inside another frame")
    available = len(data) - pos - _FRAME_HEADER
    if length > available:
        raise InvalidPayload(
            f"payload pickle has a FRAME at byte {pos} declaring {length} bytes, "
            f"but only {available} follow"
        )
    return pos + _FRAME_HEADER + length


def _check_frame_end(frame_end: int, next_pos: int) -> None:
    """A frame must end exactly where an opcode starts (or at the end of the pickle)."""
    if next_pos != frame_end:
        raise InvalidPayload(
            f"payload pickle has a FRAME whose declared length ends at byte {frame_end}, "
            f"inside an opcode (the next one starts at byte {next_pos})"
        )


def encode(data: bytes) -> str:
    """Bytes to base64 text; decodable with `codecs.decode(text.encode(), "base64")`."""
    return base64.b64encode(data).decode("ascii")


_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                         "SHORT_BINSTRING", "BINSTRING", "STRING"})  # fmt: skip
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})


def referenced_modules(data: bytes) -> set[str]:
    """Modules a (well-formed) pickle refers to by name: what loading it imports.
    Read from its GLOBAL and STACK_GLOBAL opcodes without executing anything; the
    operands of STACK_GLOBAL are followed through the memo."""
    modules: set[str] = set()
    recent: list[str | None] = []  # what the last opcodes pushed, when it was a string
    memo: dict[int, str | None] = {}
    for opcode, arg, _pos in pickletools.genops(data):
        name = opcode.name
        if name == "GLOBAL":  # protocols 0-3: "module name" in the argument
            modules.add(str(arg).split(" ", 1)[0])
        elif name == "STACK_GLOBAL" and len(recent) >= 2 and recent[-2]:
            modules.add(recent[-2])  # type: ignore[arg-type]
        if name in _STRING_OPS:
            recent.append(str(arg))
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in _PUT_OPS:
            memo[int(arg)] = recent[-1] if recent else None
        elif name in _GET_OPS:
            recent.append(memo.get(int(arg)))
        elif name not in ("FRAME", "PROTO"):
            recent.append(None)
        del recent[:-2]
    return {m for m in modules if m}

"""How a task's stored output is laid out, for the worker that writes it and the
gateway that reads it: each attempt's output follows an `attempt_header` line, and
an attempt that printed more than the cap ends with a `TRUNCATED_MARK` line."""

from __future__ import annotations

TRUNCATED_MARK = "--- output truncated:"


def attempt_header(attempt: int) -> bytes:
    return f"--- attempt {attempt} ---\n".encode()


def truncated_line(max_bytes: int) -> bytes:
    return f"{TRUNCATED_MARK} over {max_bytes:,} bytes in this attempt ---\n".encode()


def is_truncated(text: str) -> bool:
    return text.startswith(TRUNCATED_MARK) or f"\n{TRUNCATED_MARK}" in text

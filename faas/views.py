"""How the CLI shows what the gateway returns: decoded results, readable times."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from faas.client import loads


class Undecodable(Exception):
    """A result this machine cannot unpickle (e.g. its class is not importable here)."""


def decoded(view: dict[str, Any], *, raw: bool = False) -> str | None:
    """A task view's result as the repr of its value, or as the base64 text if raw."""
    text = view.get("result")
    if text is None or raw:
        return text
    try:
        return repr(loads(text))
    except Exception as exc:
        raise Undecodable(
            f"cannot unpickle the result here ({type(exc).__name__}: {exc}); --raw shows it"
        ) from None


def with_decoded_result(view: dict[str, Any], *, raw: bool = False) -> dict[str, Any]:
    return {**view, "result": decoded(view, raw=raw)}


def moment(ms: int | None, now_s: float | None = None) -> str:
    """`2026-12-01 08:30:01.250 UTC (12 s ago)`, in the local time zone."""
    if ms is None:
        return "-"
    at = datetime.fromtimestamp(ms / 1000).astimezone()
    ago = (time.time() if now_s is None else now_s) - ms / 1000
    return f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d} {at:%Z} ({duration(ago)} ago)"


def duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def task_lines(view: dict[str, Any], *, raw: bool = False) -> list[str]:
    queued, started, ended = view.get("queued_at_ms"), view["started_at_ms"], view["finished_at_ms"]
    rows = [
        ("task", view["task_id"]),
        ("status", f"{view['status']} (attempt {view['attempt']} of {view['max_attempts']})"),
        ("function", view["function_id"]),
        ("worker", view.get("worker_id") or "-"),
        ("queued", moment(queued)),
        ("started", moment(started)),
        ("finished", moment(ended)),
    ]
    if queued and started:
        rows.append(("waited", duration((started - queued) / 1000)))
    if started and ended:
        rows.append(("ran", duration((ended - started) / 1000)))
    rows.append(("deadline", duration(view["deadline_s"])))
    if view.get("error_kind"):
        rows.append(("failure", view["error_kind"]))
    if view.get("result") is not None:
        try:
            rows.append(("result", decoded(view, raw=raw) or ""))
        except Undecodable as exc:
            rows.append(("result", f"({exc})"))
    lines = [f"{name:<9} {value}" for name, value in rows]
    if view.get("error"):
        lines += ["error:", *("  " + line for line in view["error"].rstrip().splitlines())]
    return lines


def function_line(f: dict[str, Any]) -> str:
    size = f"{f['size_bytes']} bytes"
    return f"{f['function_id']}  {f['name']:<20}  {size:>14}  {moment(f.get('created_at_ms'))}"


def task_line(view: dict[str, Any]) -> str:
    """One row of `faas ps`: id, status, attempt, how long it ran or has waited."""
    queued, started, ended = view["queued_at_ms"], view["started_at_ms"], view["finished_at_ms"]
    if started and ended:
        took = f"ran {duration((ended - started) / 1000)}"
    elif started:
        took = f"running {duration(time.time() - started / 1000)}"
    else:
        took = f"queued {duration(time.time() - queued / 1000)}"
    kind = f" ({view['error_kind']})" if view.get("error_kind") else ""
    attempt = f"{view['attempt']}/{view['max_attempts']}"
    return f"{view['task_id']}  {view['status'] + kind:<22} {attempt:>5}  {took}"


def worker_line(w: dict[str, Any]) -> str:
    seen = duration(time.time() - w["last_heartbeat_ms"] / 1000)
    state = "  draining" if w["draining"] else ""
    held = f", {w['prefetched']} held" if w.get("prefetched") else ""
    return f"{w['worker_id']:<40} {w['busy']}/{w['slots']} busy{held}  seen {seen} ago{state}"

from __future__ import annotations

from common.store import QueueEntry
from dispatcher.registry import InFlight, Registry


def entry(task_id: str) -> QueueEntry:
    return QueueEntry("1-0", task_id, 1, "f", 1.0, b"")


def test_tasks_go_to_the_worker_with_the_most_credits() -> None:
    registry = Registry()
    a = registry.add(b"a", slots=4, now=0)
    b = registry.add(b"b", slots=4, now=0)
    registry.grant(a, 1)
    registry.grant(b, 3)
    assert registry.choose() is b
    for task_id in ("t1", "t2", "t3"):
        registry.assign(b, InFlight(entry(task_id), "b", 10))
    assert registry.choose() is a
    assert registry.credits() == 1


def test_credits_never_exceed_free_slots() -> None:
    registry = Registry()
    w = registry.add(b"w", slots=2, now=0)
    registry.assign(w, InFlight(entry("t"), "w", 10))
    registry.grant(w, 5)
    assert w.credits == 1


def test_no_worker_with_credits_means_no_choice() -> None:
    registry = Registry()
    registry.add(b"w", slots=2, now=0)
    assert registry.choose() is None


def test_silent_and_overdue_are_found() -> None:
    registry = Registry()
    w = registry.add(b"w", slots=2, now=5)
    registry.add(b"v", slots=2, now=9)
    registry.grant(w, 2)
    registry.assign(w, InFlight(entry("t"), "w", deadline_at=7))
    assert [x.identity for x in registry.silent_since(8)] == [b"w"]
    assert [f.entry.task_id for _, f in registry.overdue(7.5)] == ["t"]
    assert [f.entry.task_id for f in registry.remove(b"w")] == ["t"]


def test_a_draining_worker_gets_no_more_credits() -> None:
    registry = Registry()
    w = registry.add(b"w", slots=4, now=0)
    registry.grant(w, 4)
    w.draining = True
    registry.grant(w, 1)
    assert w.credits == 0 and registry.choose() is None

from __future__ import annotations

import sys

from hypothesis import example, given, settings
from hypothesis import strategies as st

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


def test_top_level_tasks_go_only_where_they_fit_in_the_base_slots() -> None:
    """Spare slots (forked while parents wait on nested calls) take children only."""
    registry = Registry()
    a = registry.add(b"a", slots=4, now=0, base_slots=2)  # two spare slots
    b = registry.add(b"b", slots=2, now=0)
    registry.grant(a, 4)
    for task_id in ("p1", "p2"):  # two waiting parents fill a's base slots
        registry.assign(a, InFlight(entry(task_id), "a", 10))
    registry.grant(b, 1)
    assert registry.choose() is a  # a child may take a spare slot
    assert registry.choose(top_level=True) is b
    registry.assign(b, InFlight(entry("p3"), "b", 10))
    registry.grant(b, 1)
    registry.assign(b, InFlight(entry("p4"), "b", 10))
    assert registry.choose(top_level=True) is None  # a new parent waits
    registry.release(a, "p1")
    assert registry.choose(top_level=True) is a


def test_an_ended_attempt_leaves_nothing_behind_that_holds_its_payload() -> None:
    """The deadline heap deletes lazily: its stale items must not keep the arguments
    alive (a dispatcher once grew by a 1 MB payload per ended task)."""
    registry = Registry()
    w = registry.add(b"w", slots=2, now=0)
    payload = bytes(2**20)
    registry.assign(w, InFlight(QueueEntry("1-0", "t", 1, "f", 1.0, payload), "w", 10))
    assert sys.getrefcount(payload) == 3  # this name, the call's argument, the entry
    registry.release(w, "t")
    assert sys.getrefcount(payload) == 2
    assert registry.overdue(now=11) == []


def test_credits_never_exceed_free_slots() -> None:
    registry = Registry()
    w = registry.add(b"w", slots=2, now=0)
    registry.assign(w, InFlight(entry("t"), "w", 10))
    registry.grant(w, 5)
    assert w.credits == 1


def test_prefetch_adds_credits_and_a_prefetched_attempt_has_no_deadline_until_it_starts() -> None:
    registry = Registry()
    w = registry.add(b"w", slots=1, now=0)
    w.prefetch = 1
    registry.grant(w, 5)
    assert w.credits == 2  # one slot, one held beyond it
    registry.assign(w, InFlight(entry("run"), "w", 10))
    waiting = InFlight(entry("next"), "w", float("inf"), prefetched=True)
    registry.assign(w, waiting)
    assert w.credits == 0 and w.prefetched == 1
    assert [f.entry.task_id for _, f in registry.overdue(1e9)] == ["run"]
    registry.release(w, "run")
    registry.started(w, waiting, deadline_at=20)
    assert w.prefetched == 0 and not w.tasks["next"].prefetched
    assert [f.entry.task_id for _, f in registry.overdue(21)] == ["next"]


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


# -- the indexed structures against the plain scans they replace ---------------------


class NaiveRegistry:
    """The scans the indexes replace: most credits first, ties to the worker whose
    credits changed longest ago; silent and overdue by looking at everything."""

    def __init__(self) -> None:
        self.workers: dict[bytes, dict] = {}
        self.stamp = 0

    def _credit(self, w: dict, credits: int) -> None:
        if credits != w["credits"]:
            self.stamp += 1
            w["credits"], w["stamp"] = credits, self.stamp

    def add(self, identity: bytes, slots: int, now: float) -> None:
        self.workers.pop(identity, None)
        self.stamp += 1
        self.workers[identity] = {"slots": slots, "credits": 0, "stamp": self.stamp,
                                  "seen": now, "tasks": {}, "draining": False}  # fmt: skip

    def grant(self, identity: bytes, credits: int) -> None:
        w = self.workers[identity]
        free = w["slots"] - len(w["tasks"])
        self._credit(w, 0 if w["draining"] else max(0, min(w["credits"] + credits, free)))

    def choose(self) -> bytes | None:
        ready = [(-w["credits"], w["stamp"], i) for i, w in self.workers.items() if w["credits"]]
        return min(ready)[2] if ready else None

    def assign(self, identity: bytes, task_id: str, deadline: float) -> None:
        w = self.workers[identity]
        w["tasks"][task_id] = deadline
        self._credit(w, w["credits"] - 1)

    def silent(self, cutoff: float) -> set[bytes]:
        return {i for i, w in self.workers.items() if w["seen"] < cutoff}

    def overdue(self, now: float) -> set[str]:
        return {t for w in self.workers.values() for t, d in w["tasks"].items() if now >= d}


actions = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "grant", "assign", "complete", "seen", "tick", "drain"]),
        st.integers(0, 3),  # which worker
        st.integers(0, 6),  # credits, slots or time step
    ),
    max_size=120,
)


@settings(max_examples=500, deadline=None)
@given(actions)
@example([("add", 0, 3), ("add", 1, 3), ("grant", 0, 2), ("grant", 1, 2), ("assign", 0, 0)])
def test_the_indexes_agree_with_plain_scans(steps: list[tuple[str, int, int]]) -> None:
    registry, model = Registry(), NaiveRegistry()
    now, serial = 0.0, 0
    for action, which, n in steps:
        identity = b"w%d" % which
        worker = registry.workers.get(identity)
        if action == "add":
            registry.remove(identity)
            registry.add(identity, slots=n + 1, now=now)
            model.add(identity, n + 1, now)
        elif action == "remove" and worker:
            gone = {f.entry.task_id for f in registry.remove(identity)}
            assert gone == set(model.workers.pop(identity)["tasks"])
        elif action == "grant" and worker:
            registry.grant(worker, n)
            model.grant(identity, n)
        elif action == "drain" and worker:
            worker.draining = model.workers[identity]["draining"] = True
            registry.grant(worker, 0)
            model.grant(identity, 0)
        elif action == "assign":
            chosen = registry.choose()
            assert (chosen.identity if chosen else None) == model.choose()
            if chosen is not None:
                serial += 1
                task_id = f"t{serial}"
                registry.assign(chosen, InFlight(entry(task_id), "", now + n))
                model.assign(chosen.identity, task_id, now + n)
                assert registry.holder(task_id) is chosen
        elif action == "complete" and worker and worker.tasks:
            task_id = sorted(worker.tasks)[n % len(worker.tasks)]
            registry.release(worker, task_id)
            del model.workers[identity]["tasks"][task_id]
            registry.grant(worker, 1)
            model.grant(identity, 1)
            assert registry.holder(task_id) is None
        elif action == "seen" and worker:
            registry.seen(worker, now)
            model.workers[identity]["seen"] = now
        elif action == "tick":
            now += n
            due = registry.overdue(now)
            assert {f.entry.task_id for _, f in due} == model.overdue(now)
            for w, f in due:  # as the dispatcher does: an overdue attempt ends
                registry.release(w, f.entry.task_id)
                del model.workers[w.identity]["tasks"][f.entry.task_id]
            cutoff = now - 3
            assert {w.identity for w in registry.silent_since(cutoff)} == model.silent(cutoff)
        assert registry.credits() == sum(w["credits"] for w in model.workers.values())
        chosen = registry.choose()
        assert (chosen.identity if chosen else None) == model.choose()


def test_deadline_heap_stays_proportional_to_what_is_in_flight() -> None:
    registry = Registry()
    w = registry.add(b"w", slots=1, now=0)
    for i in range(10_000):
        registry.grant(w, 1)
        registry.assign(w, InFlight(entry(f"t{i}"), "w", deadline_at=1e9))
        registry.release(w, f"t{i}")
    assert len(registry._deadlines) <= 1024 + 2
    assert registry.overdue(2e9) == []


def test_choose_does_not_scan_idle_workers() -> None:
    """10,000 workers without credits and one with: choosing is still immediate."""
    registry = Registry()
    for i in range(10_000):
        registry.add(b"idle%d" % i, slots=4, now=0)
    busy = registry.add(b"busy", slots=4, now=0)
    registry.grant(busy, 1)
    assert registry.choose() is busy
    assert registry._top == 1

"""The WorkerPool's desired replicas, with a fake clock."""

from __future__ import annotations

import pytest

from controller.scaling import PoolSpec, Stabilizer, desired_replicas

SPEC = PoolSpec(
    min_replicas=1, max_replicas=10, target_tasks_per_worker=8, scale_down_stabilization_s=60
)


@pytest.mark.parametrize(
    ("queued", "running", "expected"),
    [(0, 0, 1), (1, 0, 1), (8, 0, 1), (9, 0, 2), (8, 8, 2), (40, 39, 10), (500, 0, 10), (0, 17, 3)],
)
def test_desired_is_load_over_target_clamped(queued: int, running: int, expected: int) -> None:
    assert desired_replicas(queued=queued, running=running, spec=SPEC) == expected


# (time s, queued, running) -> replicas; each table is one pool's history.
SCENARIOS = {
    "scale up at once": [(0, 0, 0, 1), (1, 80, 0, 10), (2, 80, 0, 10)],
    "hold for the window, then come down": [
        (0, 80, 0, 10),
        (30, 0, 0, 10),  # burst over, but 10 was recommended 30 s ago
        (59, 0, 0, 10),
        (61, 0, 0, 1),  # the window no longer holds the 10
    ],
    "come down to the highest recent recommendation": [
        (0, 80, 0, 10),
        (20, 30, 0, 10),
        (61, 30, 0, 4),  # 10 aged out; 4 (30 tasks) is the highest left
        (81, 0, 0, 4),
        (122, 0, 0, 1),
    ],
    "a pause inside a burst does not flap": [(0, 40, 0, 5), (5, 0, 0, 5), (10, 40, 0, 5)],
}


@pytest.mark.parametrize("steps", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_scale_down_waits_for_the_stabilization_window(
    steps: list[tuple[float, int, int, int]],
) -> None:
    stabilizer = Stabilizer()
    for now, queued, running, expected in steps:
        assert (
            stabilizer.recommend(now=now, queued=queued, running=running, spec=SPEC) == expected
        ), now


def test_scale_to_zero_only_after_the_idle_period() -> None:
    spec = PoolSpec(
        min_replicas=0, max_replicas=4, scale_down_stabilization_s=0, scale_to_zero_after_s=30
    )
    stabilizer = Stabilizer()
    assert stabilizer.recommend(now=0, queued=8, running=0, spec=spec) == 1
    assert stabilizer.recommend(now=1, queued=0, running=0, spec=spec) == 1  # idle since 1 s
    assert stabilizer.recommend(now=30, queued=0, running=0, spec=spec) == 1
    assert stabilizer.recommend(now=31.5, queued=0, running=0, spec=spec) == 0
    assert stabilizer.recommend(now=40, queued=3, running=0, spec=spec) == 1  # work: back at once


def test_without_scale_to_zero_min_zero_goes_to_zero_after_the_window() -> None:
    spec = PoolSpec(min_replicas=0, max_replicas=4, scale_down_stabilization_s=10)
    stabilizer = Stabilizer()
    assert stabilizer.recommend(now=0, queued=1, running=0, spec=spec) == 1
    assert stabilizer.recommend(now=11, queued=0, running=0, spec=spec) == 0


def test_pool_spec_reads_the_crd_fields_with_defaults() -> None:
    spec = PoolSpec.from_spec({"deployment": "w", "minReplicas": 2, "maxReplicas": 5})
    assert (
        spec.target_tasks_per_worker,
        spec.scale_down_stabilization_s,
        spec.scale_to_zero_after_s,
    ) == (8, 60, None)


@pytest.mark.parametrize(("replicas", "expected"), [(0, 1), (1, 1), (7, 7), (10, 10), (15, 10)])
def test_within_bounds_only_clamps(replicas: int, expected: int) -> None:
    from controller.scaling import within_bounds

    assert within_bounds(replicas, SPEC) == expected

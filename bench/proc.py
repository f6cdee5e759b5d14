"""CPU time of process trees, from /proc: steadier than wall-clock time on a shared
machine, and the way to see what an idle system costs the others beside it."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_by_tree(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named root process and its living
    descendants (a descendant whose own root is listed counts for that one only)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    owner = {pid: name for name, pid in roots.items()}
    totals = dict.fromkeys(roots, 0.0)
    for pid, used in cpu.items():
        ancestor = pid
        while ancestor > 1 and ancestor not in owner:
            ancestor = parents.get(ancestor, 0)
        if ancestor in owner:
            totals[owner[ancestor]] += used
    return totals

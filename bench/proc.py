"""CPU time of process trees, from /proc: steadier than wall-clock time on a shared
machine, and the way to see what an idle system costs the others beside it."""

from __future__ import annotations

import os
from pathlib import Path


def _processes() -> tuple[dict[int, int], dict[int, float]]:
    """Every process's parent and CPU seconds (user + system) so far."""
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
    return parents, cpu


def _owners(roots: dict[str, int], parents: dict[int, int]) -> dict[int, str]:
    """The root each living process descends from (its nearest listed ancestor)."""
    owner = {pid: name for name, pid in roots.items()}
    found = {}
    for pid in parents:
        ancestor = pid
        while ancestor > 1 and ancestor not in owner:
            ancestor = parents.get(ancestor, 0)
        if ancestor in owner:
            found[pid] = owner[ancestor]
    return found


def cpu_by_tree(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named root process and its living
    descendants (a descendant whose own root is listed counts for that one only)."""
    parents, cpu = _processes()
    totals = dict.fromkeys(roots, 0.0)
    for pid, name in _owners(roots, parents).items():
        totals[name] += cpu[pid]
    return totals


def cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds used so far by the living processes of `root`'s tree, summed by role:
    what `role` makes of each one's command line (`root` itself is the "side")."""
    parents, cpu = _processes()
    totals: dict[str, float] = {}
    for pid in _owners({"": root}, parents):
        name = "side" if pid == root else role(pid)
        totals[name] = totals.get(name, 0.0) + cpu[pid]
    return totals


def role(pid: int) -> str:
    """A process's part, from its command line: a Python module's name (and its `--role`),
    `python -c` for code given inline (a fork server), else the program's name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "gone"
    program = os.path.basename(argv[0]).split(" ")[0]  # redis-server puts its address there
    if not program.startswith("python"):
        return program or "?"
    for flag, label in (("-m", None), ("-c", "python -c")):
        if flag in argv:
            name = label or argv[argv.index(flag) + 1]
            if "--role" in argv:
                name += " " + argv[argv.index("--role") + 1]
            return name
    return program

"""A git ref's checkout of this repository, for benchmarks that run it beside this tree.

`git worktree add` in a temporary directory, removed afterwards. A process started
with the checkout as its current directory (`python -c ...` or `python -m ...`) imports
the checkout's packages, not this tree's editable install: checked on the way in.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def checkout(ref: str, tmp: Path) -> Iterator[Path]:
    path = tmp / f"ref-{ref.replace('/', '_')}"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    try:
        # The editable install must not shadow the checkout: its own code is what runs.
        probe = [sys.executable, "-c", "import dispatcher.core as c; print(c.__file__)"]
        found = subprocess.run(probe, cwd=path, capture_output=True, text=True, check=True)
        if not Path(found.stdout.strip()).is_relative_to(path):
            raise RuntimeError(f"{ref}: imports resolve outside the checkout: {found.stdout}")
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT,
                       capture_output=True)  # fmt: skip

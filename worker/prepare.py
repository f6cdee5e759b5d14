"""What a job needs before a slot may run it: the code bundles its function's
environment names (fetched from the dispatcher once, checked against their
digest) and that environment materialized on disk (`worker.environments`),
pinned against eviction from `prepare` until the job's end (`finished`).
Never blocks: the worker loop asks again on its next turn."""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from worker.environments import Environments, EnvSpec, Failed, Pending, Ready
from worker.pool import Job

logger = logging.getLogger(__name__)

_BUNDLE_CACHE_BYTES = 256 * 2**20


@dataclass(frozen=True, slots=True)
class Prepared:
    env_path: str  # "" when the function needs nothing beyond the worker image
    env_key: str


class Preparer:
    def __init__(self, environments: Environments, fetch: Callable[[str], None]) -> None:
        self._environments = environments
        self._fetch = fetch  # asks the dispatcher for a bundle
        self._bundles: OrderedDict[str, bytes] = OrderedDict()
        self._asked: set[str] = set()
        self._missing: dict[str, str] = {}  # digest -> why it cannot be had
        self._pinned: dict[tuple[str, int], str] = {}  # (task_id, attempt) -> env key

    def prepare(self, job: Job) -> Prepared | Pending | Failed:
        """Prepared means: start `job` now, and call `finished(job)` at its end."""
        env = job.env
        if not env:
            return Prepared("", "")
        for digest in env.bundles:
            if digest in self._missing:
                return Failed(self._missing[digest])
        absent = [d for d in env.bundles if d not in self._bundles]
        for digest in absent:
            if digest not in self._asked:
                self._asked.add(digest)
                self._fetch(digest)
        if absent:
            return Pending()
        try:
            spec = EnvSpec(env.requirements, tuple(self._bundles[d] for d in env.bundles))
            state = self._environments.request(spec)
        except ValueError as exc:  # requirements that could inject pip options
            return Failed(str(exc))
        if not isinstance(state, Ready):
            return state
        if not self._environments.acquire(spec.key):  # being installed or evicted, or gone
            state = self._environments.request(spec)  # gone: this installs it again
            return state if isinstance(state, Failed) else Pending()
        self._pinned[(job.task_id, job.attempt)] = spec.key
        return Prepared(str(state.path), spec.key)

    def finished(self, job: Job) -> None:
        """`job` ended (or never started): its environment may be evicted again."""
        key = self._pinned.pop((job.task_id, job.attempt), None)
        if key is not None:
            self._environments.release(key)

    def bundle_arrived(self, digest: str, found: bool, data: bytes) -> None:
        self._asked.discard(digest)
        if not found:
            self._missing[digest] = f"code bundle {digest} is not in the store"
        elif hashlib.sha256(data).hexdigest() != digest:
            logger.warning("bundle %s arrived with another digest; asking again", digest)
        else:
            self._bundles[digest] = data
            while sum(map(len, self._bundles.values())) > _BUNDLE_CACHE_BYTES:
                self._bundles.popitem(last=False)

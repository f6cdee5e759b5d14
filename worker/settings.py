from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, model_validator

from common.models import DispatchMode
from common.settings import BaseFaasSettings


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _default_env_dir() -> Path:
    # Root's home is usually closed to others, and slots of a root worker run as
    # another uid: environments must be readable (not writable) by them.
    base = Path("/var/cache") if os.geteuid() == 0 else Path.home() / ".cache"
    return base / "faas" / "envs"


class WorkerSettings(BaseFaasSettings):
    dispatcher_url: str = "tcp://127.0.0.1:5556"
    """ZeroMQ endpoint of the dispatcher's ROUTER socket."""
    mode: DispatchMode = DispatchMode.PULL
    """pull: announce free slots and wait for work; push: let the dispatcher assign."""
    slots: int = Field(default=4, ge=1, le=1024)
    """Slot processes, i.e. tasks this worker runs at once."""
    prefetch: int | None = Field(default=None, ge=0, le=1024)
    """Tasks held beyond the free slots, so a slot that frees starts the next task at
    once instead of after a round trip to the dispatcher (default: as many as slots;
    0: none). A prefetched task stays QUEUED until it starts; one never started goes
    back without spending an attempt if the worker drains or dies."""
    worker_id: str = Field(default_factory=_default_worker_id, min_length=1, max_length=200)
    """Unique name of this worker; on Kubernetes the pod name."""
    worker_secret_key: str = Field(default="", repr=False)
    """CURVE secret key (Z85) of this worker (or of its pool); needs dispatcher_public_key."""
    dispatcher_public_key: str = ""
    """CURVE public key (Z85) of the dispatcher."""
    heartbeat_interval_s: float = Field(default=1.0, gt=0)
    liveness_timeout_s: float = Field(default=3.0, gt=0)
    """Silence from the dispatcher after which the worker registers again (on a fresh
    socket; ZeroMQ retries the TCP connection every 0.1 s until it succeeds)."""
    max_tasks_per_slot: int = Field(default=0, ge=0)
    """Replace a slot process after it ran this many tasks (0: never)."""
    max_spare_slots: int | None = Field(default=None, ge=0)
    """Spare slot processes forked while functions wait on nested calls (default: 4 x
    slots); past it a wait that would leave no slot free fails at once."""
    slot_max_memory_bytes: int = Field(default=0, ge=0)
    """Address-space limit of each slot (RLIMIT_AS; 0: none)."""
    slot_max_open_files: int = Field(default=0, ge=0)
    """Open-file limit of each slot (RLIMIT_NOFILE; 0: inherited)."""
    slot_max_processes: int = Field(default=0, ge=0)
    """Process limit of each slot (RLIMIT_NPROC, counted per uid; 0: inherited)."""
    slot_uid: int = Field(default=65534, ge=0)
    """When the worker runs as root, slots run as this uid (nobody; 0: as root too).
    Not root (the chart's pods): slots keep the worker's uid."""
    slot_gid: int = Field(default=65534, ge=0)
    """Their gid then (nogroup), with no supplementary groups."""
    slot_uid_always: bool = False
    """Drop to slot_uid even where it cannot read Python (by default slots then stay
    root, with a warning, since only preloaded modules would import)."""
    env_dir: Path = Field(default_factory=_default_env_dir)
    """Where functions' environments (requirements, bundles) are installed, one
    directory per content hash; shared safely by workers on one host."""
    env_cache_max_bytes: int = Field(default=5 * 2**30, ge=0)
    """Disk the environments under env_dir may use (0: no cap); past it, after an
    install, the least recently used ones not in use by a task are deleted (and
    installed again when next needed). Workers sharing env_dir should agree on it."""
    pip_index_url: str = ""
    """Package index for requirements (default: pip's own configuration)."""
    pip_find_links: str = ""
    """Extra wheel locations (comma-separated), e.g. an offline wheelhouse directory."""
    pip_no_index: bool = False
    """Install only from pip_find_links."""
    pip_trusted_hosts: str = ""
    """Hosts pip may reach without valid HTTPS (comma-separated)."""
    max_result_bytes: int = Field(default=16 * 2**20, ge=1)
    """A larger pickled return value fails its task (error_kind result_too_large)."""
    unacked_results_max_bytes: int = Field(default=256 * 2**20, ge=1)
    """Results kept until the dispatcher confirms their commit, to re-send after a
    dispatcher restart; past this size the oldest are forgotten (they run again)."""
    task_log_max_bytes: int = Field(default=64 * 1024, ge=0)
    """Output (stdout and stderr) kept per task attempt; past it, a line says it was cut."""
    capture_output: bool = True
    """Send what tasks print to the store (`faas logs`); off: slots print to the
    worker's own stdout."""
    drain_timeout_s: float = Field(default=25.0, ge=0)
    """On SIGTERM: how long running tasks may finish before they are handed back."""

    @property
    def prefetch_count(self) -> int:
        return self.slots if self.prefetch is None else self.prefetch

    @model_validator(mode="after")
    def _keys_come_in_pairs(self) -> WorkerSettings:
        if bool(self.worker_secret_key) != bool(self.dispatcher_public_key):
            raise ValueError(
                "FAAS_WORKER_SECRET_KEY and FAAS_DISPATCHER_PUBLIC_KEY go together: "
                "set both for an authenticated link, or neither"
            )
        return self

from __future__ import annotations

from pydantic import Field

from common.models import DispatchMode
from common.settings import BaseFaasSettings


class DispatcherSettings(BaseFaasSettings):
    mode: DispatchMode = DispatchMode.LOCAL
    """local: run tasks in this process's own slots; pull/push: on ZeroMQ workers."""
    dispatcher_port: int = Field(default=5556, ge=1, le=65535)
    """TCP port of the ROUTER socket workers connect to (pull and push modes)."""
    bind_host: str = "127.0.0.1"
    """Interface of the ROUTER socket; 0.0.0.0 to accept workers from other machines."""
    dispatcher_secret_key: str = Field(default="", repr=False)
    """CURVE secret key (Z85) of the dispatcher; with it, workers must authenticate."""
    worker_public_keys: str = ""
    """CURVE public keys (Z85, comma-separated) of the workers to accept."""
    slots: int = Field(default=4, ge=1, le=1024)
    """Slot processes in local mode."""
    lease_ttl_s: float = Field(default=5.0, gt=0)
    """Only the holder of this Redis lease dispatches; a crashed holder's lease
    expires after this long and a waiting dispatcher takes over."""
    heartbeat_interval_s: float = Field(default=1.0, gt=0)
    liveness_timeout_s: float = Field(default=3.0, gt=0)
    """A worker silent this long is declared dead and its tasks are re-queued."""
    recovery_grace_s: float = Field(default=10.0, ge=0)
    """After a restart, how long attempts held by the previous dispatcher wait for a
    worker to claim them (in its HELLO) before they are re-queued. An attempt whose
    worker registers without claiming it is re-queued at once."""
    drain_timeout_s: float = Field(default=25.0, ge=0)
    """Local mode: on SIGTERM, how long running tasks may finish before they are
    handed back (the same variable sets a worker's)."""
    env_install_allowance_s: float = Field(default=600.0, ge=0)
    """Extra time before the dispatcher ends a task of a function with requirements
    itself: its worker may first have to install them."""
    deadline_grace_s: float = Field(default=2.0, ge=0)
    """After a task's deadline, how long the dispatcher waits for the worker's own
    deadline report before ending the task itself."""
    max_call_depth: int = Field(default=10, ge=1, le=1000)
    """How deep nested calls may go (a task calling a function is depth 1); deeper
    calls fail at once, so runaway recursion ends instead of filling the queue."""
    nested_max_attempts: int = Field(default=3, ge=1, le=100)
    """Attempts of a nested call that does not set its own."""
    batch_size: int = Field(default=256, ge=1)
    """Most queue entries read in one round trip."""

"""CPU threads of a run on a machine that others share.

Two defaults keep an epoch from collapsing when other processes compete for the cores:

- OpenMP's *passive* wait (``OMP_WAIT_POLICY=PASSIVE``, set when :mod:`kdiffe` is imported,
  before torch loads, unless the environment already chose): an idle worker thread sleeps instead
  of spinning, so threads that wait at a barrier do not steal the cores their peers need;
- :func:`default_threads`: the cores not already busy (the 1-minute load average), at least one.

``--threads N`` on every command overrides the second (``python -m kdiffe train --threads 1``);
a Ray trial uses the CPUs it was given unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import math
import os

from .errors import UserError


def passive_wait() -> None:
    """Ask OpenMP to sleep, not spin, while it waits (only where nothing chose a policy)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """Threads for a run started now: the cores minus the load already on them, at least 1."""
    cores = cores or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on this platform
            load = 0.0
    return max(1, min(cores, math.floor(cores - load + 0.5)))


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (``None`` or 0: :func:`default_threads`); returns the number."""
    import torch

    if threads is not None and threads < 0:
        raise UserError(f"--threads {threads}: must be >= 1 (0 or absent: the idle cores)")
    count = threads or default_threads()
    torch.set_num_threads(count)
    return count

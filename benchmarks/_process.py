"""Process measurement helpers shared by the whole-process benchmarks (bench_cli.py, bench_campaign.py)."""

from __future__ import annotations

import os
import signal


def busy_cpu() -> float:
    """CPU seconds used by every process on the machine so far."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def self_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def kill_group(pgid: int) -> bool:
    """SIGKILL process group ``pgid``; True when something was still there."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True

"""A cgroup with a CPU quota, as a Kubernetes CPU limit sets one (CFS bandwidth: so many CPU-seconds
per second however many cores its processes run on), for processes a bench or a test starts.
Needs root and a cgroup file system that lets us make one: the v1 `cpu` controller, or v2 with
`cpu` enabled for the cgroup we are in."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from service.cpus import CGROUP, cpu_cgroup_folders

PERIOD_US = 100_000  # Kubernetes' CFS period
_names = itertools.count()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _parent() -> Path | None:
    """The innermost cgroup of ours whose children can have a CPU quota."""
    for folder in cpu_cgroup_folders(CGROUP, Path("/proc/self")):
        if (folder / "cpu.cfs_quota_us").exists() or "cpu" in _read(folder / "cgroup.subtree_control").split():
            return folder
    return None


def unavailable() -> str | None:
    """Why no CPU quota can be made here, or None when one can."""
    parent = _parent()
    if parent is None:
        return "no cgroup here takes a CPU quota (v1 cpu controller, or v2 with cpu enabled)"
    if not os.access(parent, os.W_OK):
        return f"{parent} is not writable (needs root)"
    return None


class CpuQuota:
    """`with CpuQuota(1.0) as quota: subprocess.Popen(..., preexec_fn=quota.enter)`: the process
    and its threads share one CPU's worth of time. Stop the processes before leaving."""

    def __init__(self, cpus: float) -> None:
        parent = _parent()
        if parent is None:
            raise OSError(unavailable())
        self.cpus = cpus
        self.folder = parent / f"nmt-quota-{os.getpid()}-{next(_names)}"
        self.folder.mkdir()
        quota = round(cpus * PERIOD_US)
        if (self.folder / "cpu.max").exists():
            (self.folder / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            (self.folder / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.folder / "cpu.cfs_quota_us").write_text(str(quota))

    def enter(self) -> None:
        """Move the calling process in (a `preexec_fn`: the child is in before it runs anything)."""
        (self.folder / "cgroup.procs").write_text(str(os.getpid()))

    def periods(self) -> tuple[int, int]:
        """CFS periods so far in which its processes ran, and those in which the quota ran out and
        held them back (what Kubernetes reports as container_cpu_cfs_throttled_periods_total)."""
        stat = dict(line.split() for line in _read(self.folder / "cpu.stat").splitlines())
        return int(stat.get("nr_periods", 0)), int(stat.get("nr_throttled", 0))

    def close(self) -> None:
        for _ in range(50):  # a stopped process leaves its cgroup a moment after it is reaped
            try:
                self.folder.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)

    def __enter__(self) -> CpuQuota:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

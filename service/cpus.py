"""How many CPUs this process may really use: the container's CPU quota (cgroup v2 `cpu.max`,
or v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`) and its CPU affinity, not the host's core count.
A pod limited to 2 CPUs on a 64-core node that starts 64 ONNX Runtime threads is throttled."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_quota(root: Path = CGROUP) -> float | None:
    """CPUs allowed by the cgroup quota (fractional), or None when unlimited or unknown."""
    v2 = _read(root / "cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
        return None
    quota, period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def available_cpus(root: Path = CGROUP) -> int:
    """Whole CPUs to use: the quota rounded up, at most the CPUs this process may run on, at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_quota(root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


# Instruction sets with int8 dot products, which ONNX Runtime's int8 MatMulNBits kernels
# (accuracy level 4) are built on; without one they emulate them and lose to fp32 at batch >= 32.
INT8_DOT = (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"),
            ("asimddp", "Arm dot product"), ("i8mm", "Arm I8MM"))


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features`); empty when unknown."""
    text = _read(cpuinfo) or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def int8_dot_products(flags: set[str] | None = None) -> str | None:
    """The name of the best int8 dot-product instruction set this CPU has, or None."""
    flags = cpu_flags() if flags is None else flags
    return next((name for flag, name in INT8_DOT if flag in flags), None)

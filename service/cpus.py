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


def _quota_in(folder: Path) -> float | None:
    """CPUs allowed by one cgroup folder's quota: v2 `cpu.max`, or v1 `cpu.cfs_quota_us` over
    `cpu.cfs_period_us`; None when unlimited or not there."""
    v2 = _read(folder / "cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        return int(quota) / int(period) if quota != "max" and period else None
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def cpu_cgroup_folders(root: Path, proc: Path) -> list[Path]:
    """The folders of this process's own CPU cgroup and of every cgroup above it, as mounted under
    `root`: a process in a cgroup below the mount's top (a pod's container on a host without
    cgroup namespaces, a process the bench put in a cgroup) has its quota there, not at the top.
    Falls back to `root` itself (v2) and `root/cpu` (v1) when /proc does not say."""
    fallback = [root, root / "cpu"]
    cgroups, mounts = _read(proc / "cgroup"), _read(proc / "mountinfo")
    if not cgroups or not mounts:
        return fallback
    own: dict[str, str] = {}  # controller ("" for the v2 hierarchy) -> the process's cgroup path
    for line in cgroups.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    folders = []
    for line in mounts.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        after = fields[fields.index("-") + 1:]
        fstype, options = after[0], after[2].split(",") if len(after) > 2 else []
        path = own.get("") if fstype == "cgroup2" else own.get("cpu") if fstype == "cgroup" and "cpu" in options else None
        top = Path(fields[4])
        if path is None or not (top == root or root in top.parents):
            continue
        inside = os.path.relpath(path, fields[3])  # the mount shows the hierarchy from fields[3] down
        folder = top if inside.startswith("..") else top / inside
        while folder != top and top in folder.parents:
            folders.append(folder)
            folder = folder.parent
        folders.append(top)
    return folders or fallback


def cgroup_quota(root: Path = CGROUP, proc: Path = Path("/proc/self")) -> float | None:
    """CPUs allowed by the cgroup quota (fractional): the least of this process's cgroup's and its
    parents', or None when unlimited or unknown."""
    quotas = [q for q in map(_quota_in, cpu_cgroup_folders(root, proc)) if q is not None]
    return min(quotas) if quotas else None


def available_cpus(root: Path = CGROUP, proc: Path = Path("/proc/self")) -> int:
    """Whole CPUs to use: the quota rounded up, at most the CPUs this process may run on, at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_quota(root, proc)
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

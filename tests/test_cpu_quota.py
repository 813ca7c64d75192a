"""A server in a container with a CPU limit (a cgroup CPU quota below the top of the cgroup tree,
as on a node without cgroup namespaces) takes as many ONNX Runtime threads as the quota allows,
not the host's cores, and serves (service/cpus.py). Needs root and cgroups: it makes a real one."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.cpu_quota import CpuQuota, unavailable
from service.client import TranslatorClient
from service.cpus import available_cpus, cgroup_quota
from tests.servers import DEMO, free_port

ROOT = Path(__file__).resolve().parents[1]


def test_the_quota_of_the_process_own_cgroup_and_of_those_above_it_counts(tmp_path):
    root = tmp_path / "sys" / "fs" / "cgroup"
    pod = root / "cpu" / "kubepods" / "pod1"
    (pod / "container").mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # the top of the tree: no limit
    (pod / "cpu.cfs_quota_us").write_text("150000\n")  # the pod: 1.5 CPUs
    (pod / "container" / "cpu.cfs_quota_us").write_text("300000\n")  # its container: 3, under the pod's 1.5
    for folder in (root / "cpu", pod, pod / "container"):
        (folder / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text("5:cpuset:/\n4:cpu,cpuacct:/kubepods/pod1/container\n0::/\n")
    (proc / "mountinfo").write_text(
        f"30 25 0:26 / {root} rw - tmpfs tmpfs rw\n"
        f"33 30 0:29 / {root / 'cpu'} rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
        f"34 30 0:30 / {root / 'cpuset'} rw - cgroup cgroup rw,cpuset\n")
    assert cgroup_quota(root, proc) == 1.5
    assert available_cpus(root, proc) == min(2, len(os.sched_getaffinity(0)))
    # A container that sees its own cgroup as the mount's top (cgroup namespace, or v1 bind mount)
    (proc / "mountinfo").write_text(f"33 30 0:29 /kubepods/pod1/container {root / 'cpu'} rw - cgroup cgroup rw,cpu\n")
    (root / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    assert cgroup_quota(root, proc) == 0.5
    # cgroup v2: cpu.max of the process's cgroup
    (proc / "cgroup").write_text("0::/pod1\n")
    (proc / "mountinfo").write_text(f"33 30 0:29 / {root} rw - cgroup2 cgroup2 rw\n")
    (root / "pod1").mkdir()
    (root / "pod1" / "cpu.max").write_text("200000 100000\n")
    assert cgroup_quota(root, proc) == 2.0


def _serve_under_quota(cpus: float, *args: str) -> str:
    """Start a server in a cgroup with a CPU quota of `cpus`, translate once, stop it: its log."""
    port, log = free_port(), []
    with CpuQuota(cpus) as quota:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--bundle", str(DEMO), "--host", "127.0.0.1", "--port", str(port),
             "--metrics-port", "0", "--http-port", "0", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=quota.enter)
        threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True).start()
        try:
            deadline = time.monotonic() + 60
            while "serving" not in "".join(log):
                assert proc.poll() is None and time.monotonic() < deadline, "".join(log)
                time.sleep(0.1)
            with TranslatorClient(f"127.0.0.1:{port}") as client:
                assert client.translate(["Ein Hund läuft."])[0].text.startswith("A dog")
        finally:
            proc.terminate()
            proc.wait(30)
    return "".join(log)


def _needs_quota_and_two_cpus() -> None:
    if unavailable():
        pytest.skip(f"cannot make a cgroup with a CPU quota here: {unavailable()}")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU here: a one-CPU quota would not change the thread count")


def test_a_server_under_a_one_cpu_quota_takes_one_thread_and_serves():
    _needs_quota_and_two_cpus()
    log = _serve_under_quota(1.0, "--threads", "0")
    assert "ONNX Runtime threads: 1 of 1 CPUs (CPU quota 1)" in log


def test_workers_beyond_the_quota_are_warned_about_and_serve():
    _needs_quota_and_two_cpus()
    log = _serve_under_quota(1.0, "--threads", "0", "--workers", "2")
    assert "2 workers of 1 ONNX Runtime thread each and 1 CPU to run on" in log

"""Server configuration: flags over environment over defaults; bad values are refused."""

import pytest

from service.config import DEMO_BUNDLE, parse_args


def test_defaults_work():
    cfg = parse_args([], environ={})
    assert cfg.bundles == [DEMO_BUNDLE] and cfg.port == 50051 and cfg.scheduler.kind == "continuous"


def test_environment_then_flags():
    env = {"TRANSLATOR_PORT": "6000", "TRANSLATOR_MAX_BEAM": "4", "TRANSLATOR_BUNDLES": "a, b",
           "TRANSLATOR_SCHEDULER": "static", "TRANSLATOR_NO_REFLECTION": "1"}
    cfg = parse_args([], environ=env)
    assert (cfg.port, cfg.limits.max_beam, cfg.bundles, cfg.scheduler.kind, cfg.reflection) == (
        6000, 4, ["a", "b"], "static", False)
    cfg = parse_args(["--port", "7000", "--bundle", "c", "--max-beam", "2"], environ=env)
    assert (cfg.port, cfg.limits.max_beam, cfg.bundles) == (7000, 2, ["c"])


@pytest.mark.parametrize("argv,env", [
    (["--scheduler", "fancy"], {}),
    ([], {"TRANSLATOR_PORT": "http"}),
    (["--tls-cert", "c.pem"], {}),
    (["--tls-client-ca", "ca.pem"], {}),
])
def test_bad_configuration_is_refused(argv, env, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv, environ=env)
    assert "error:" in capsys.readouterr().err


def test_thread_count_follows_the_container_quota(tmp_path):
    import os

    from service.cpus import available_cpus, cgroup_quota

    cores = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path) is None and available_cpus(tmp_path) == cores
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: two threads, never more than cores
    assert cgroup_quota(tmp_path) == 1.5 and available_cpus(tmp_path) == min(2, cores)
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(tmp_path) == 1
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    assert available_cpus(v1) == 1


def test_encode_ahead_is_on_where_onnx_runtime_leaves_cpus_to_spare_unless_told():
    from service.models import encodes_ahead

    assert parse_args([]).encode_ahead == "auto"
    assert parse_args(["--encode-ahead", "1"]).encode_ahead == "on"
    assert parse_args([], {"TRANSLATOR_ENCODE_AHEAD": "off"}).encode_ahead == "off"
    with pytest.raises(SystemExit):
        parse_args(["--encode-ahead", "sometimes"])
    assert encodes_ahead("auto", "continuous", threads=2, cpus=16)
    assert not encodes_ahead("auto", "continuous", threads=16, cpus=16)  # the default --threads 0
    assert encodes_ahead("on", "continuous", threads=16, cpus=16)
    assert not encodes_ahead("off", "continuous", threads=2, cpus=16)
    assert not encodes_ahead("on", "static", threads=2, cpus=16)  # static batches encode together


def test_engine_processes_are_off_unless_asked_and_never_negative():
    assert parse_args([]).engine_processes == 0
    assert parse_args(["--engine-processes", "2"]).engine_processes == 2
    assert parse_args([], {"TRANSLATOR_ENGINE_PROCESSES": "3"}).engine_processes == 3
    with pytest.raises(SystemExit):
        parse_args(["--engine-processes", "-1"])


def test_workers_are_one_unless_asked_and_at_least_one():
    assert parse_args([]).workers == 1
    assert parse_args([], {"TRANSLATOR_WORKERS": "4"}).workers == 4
    for value in ("0", "-1"):
        with pytest.raises(SystemExit):
            parse_args(["--workers", value])

"""Joining a cluster: never a stale one nobody named, and an unreachable address fails fast."""
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator.ray_exec import ClusterUnreachableError, check_reachable, free_port, host_port

ROOT = Path(__file__).resolve().parents[1]


def test_host_port_of_the_address_forms():
    assert host_port("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert host_port("ray://head.example:10001") == ("head.example", 10001)
    assert host_port("[::1]:6379") == ("::1", 6379)
    assert host_port("auto") is None and host_port("local") is None and host_port(None) is None
    assert host_port("head-without-port") is None


def test_an_unreachable_address_fails_fast_naming_it():
    dead = f"127.0.0.1:{free_port()}"  # bound once and released: nothing listens there
    t0 = time.perf_counter()
    with pytest.raises(ClusterUnreachableError, match=f"cluster address {dead}: nothing answers at"):
        check_reachable(dead, "cluster address")
    assert time.perf_counter() - t0 < 5


def test_a_stale_ray_start_record_is_not_joined():
    """A `ray start --head` stopped by a signal leaves its address in Ray's temp folder; Ray's own
    default (ray.init() without an address) would retry that dead head for ever. A run without
    --address must start its own local Ray instead."""
    # a short folder: Ray's socket paths live under it and must stay < 108 characters
    tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    (tmp / "ray").mkdir()
    (tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env.update(RAY_TMPDIR=str(tmp), PYTHONPATH=str(ROOT))
    script = textwrap.dedent("""
        import ray
        from orchestrator.ray_exec import connect
        connect(None, 1)
        print("CPUS", ray.cluster_resources()["CPU"])
        ray.shutdown()
    """)
    try:
        res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    finally:
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "CPUS 1.0" in res.stdout
    # and `--address auto` with that record fails at once, naming the file and the dead address
    env.pop("RAY_TMPDIR")
    with tempfile.TemporaryDirectory(prefix="rs", dir="/tmp") as d:
        (Path(d) / "ray").mkdir()
        dead = f"127.0.0.1:{free_port()}"
        (Path(d) / "ray" / "ray_current_cluster").write_text(dead)
        env["RAY_TMPDIR"] = d
        probe = "from orchestrator.ray_exec import connect\nconnect('auto', 1)"
        res = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and f"ray_current_cluster, which names {dead}: nothing answers" in res.stderr

"""The local Ray that `runner tune` starts for itself: token authentication on, no dashboard
reachable from the network. Checked from outside, the way an attacker on the network would
try: a client without the token, or with a wrong one, is turned away; one with it gets in.
"""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

from tests.ray_processes import REPO, MarkedProcesses, Run, assert_one_error_line

# Starts Ray exactly as `runner tune` does, says where its GCS listens, and holds it until stdin closes.
START_AS_THE_RUNNER_DOES = """
import json, sys
from runner.search import tune
tune.start_ray(None)
import ray
node = ray._private.worker.global_worker.node
print(json.dumps({"gcs": ray.get_runtime_context().gcs_address, "webui": node.address_info.get("webui_url")}), flush=True)
sys.stdin.read()
"""
CONNECT = """
import sys, ray
try:
    ray.init(address=sys.argv[1], logging_level="ERROR")
except Exception as error:
    print(type(error).__name__, " ".join(str(error).split()))
    sys.exit(1)
print("connected")
"""
LOOPBACK = {"127.0.0.1", "::1"}


@pytest.fixture
def local_ray(tmp_path):
    processes = MarkedProcesses(tmp_path)
    driver = subprocess.Popen([sys.executable, "-c", START_AS_THE_RUNNER_DOES], env=processes.env, cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield processes, json.loads(driver.stdout.readline())
    finally:
        driver.stdin.close()
        driver.wait(timeout=60)
        processes.stop_all()


def connect(processes: MarkedProcesses, gcs: str, **env) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in processes.env.items() if not key.startswith("RAY_AUTH_TOKEN")}
    environment["RAY_gcs_server_port_wait_time_s"] = "3"  # a refused client stops retrying after 3 tries, not 20
    return subprocess.run([sys.executable, "-c", CONNECT, gcs], env={**environment, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(300)
def test_local_ray_turns_away_clients_without_the_token(local_ray, tmp_path):
    processes, started = local_ray
    wrong = tmp_path / "wrong-token"
    wrong.write_text("0" * 64)

    without_token = connect(processes, started["gcs"], RAY_AUTH_MODE="disabled", HOME=str(tmp_path))
    wrong_token = connect(processes, started["gcs"], RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(wrong))
    right_token = connect(processes, started["gcs"], RAY_AUTH_MODE="token",
                          RAY_AUTH_TOKEN_PATH=processes.env["RAY_AUTH_TOKEN_PATH"])

    for refused in (without_token, wrong_token):
        assert refused.returncode == 1 and "InvalidAuthToken" in refused.stdout + refused.stderr, refused.stderr
    assert right_token.stdout.strip().endswith("connected"), right_token.stdout + right_token.stderr


@pytest.mark.timeout(300)
def test_local_ray_has_no_dashboard_on_the_network(local_ray):
    processes, started = local_ray

    assert not started["webui"], f"a dashboard is served at {started['webui']}"
    # Ray keeps a minimal dashboard process for its own bookkeeping: bound to loopback, if it listens at all.
    dashboards = [p for p in processes.running() if any(arg.endswith("dashboard/dashboard.py") for arg in p.cmdline())]
    assert all("--host=127.0.0.1" in p.cmdline() for p in dashboards)
    exposed = [c.laddr for c in psutil.net_connections(kind="inet")
               if c.pid in {p.pid for p in dashboards} and c.status == psutil.CONN_LISTEN and c.laddr.ip not in LOOPBACK]
    assert not exposed, f"the dashboard listens beyond loopback: {exposed}"


@pytest.mark.timeout(300)
def test_runner_with_a_wrong_token_gets_one_line(local_ray, tmp_path, cifar_dir):
    from tests.conftest import TINY_SPACE

    processes, started = local_ray
    (tmp_path / "wrong-token").write_text("0" * 64)
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    env = {**processes.env, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "wrong-token"), "RAY_gcs_server_port_wait_time_s": "3"}

    run = subprocess.run([sys.executable, "-m", "runner.cli", "tune", "--space", str(tmp_path / "tiny.yaml"),
                          "--address", started["gcs"], "--data-dir", str(cifar_dir), "--results", str(tmp_path / "R")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=240)

    assert_one_error_line(Run(run.returncode, run.stdout, run.stderr),
                          f"cannot start or reach the Ray cluster at {started['gcs']}", "token")
    assert not (tmp_path / "R").exists()

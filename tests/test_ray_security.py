"""The Ray that `runner tune` starts for itself: token authentication on, and nothing of it
reachable from the network. While a private `runner tune` runs, every socket its Ray
processes listen on is on loopback; at the machine's network address nothing answers; on
this machine a client without the token, or with a wrong one, is turned away and one with
it gets in.

A cluster node started with `ray start` is the other case: it serves other machines, so it
listens on the network and the token is what keeps strangers out, `runner tune --address`
with a wrong token included.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import time

import psutil
import pytest

from runner.search import SINGLE_MACHINE_SWITCH
from tests.ray_processes import (
    REPO, MarkedProcesses, Run, assert_one_error_line, head_node, start_runner,
)

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


def on_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, or 127.x written as an IPv4-mapped IPv6 address (::ffff:127.0.0.1)."""
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def listening(processes: list[psutil.Process]) -> set[tuple[str, str, int]]:
    """(program, ip, port) of every TCP socket these processes listen on and every bound UDP one."""
    found = set()
    for process in processes:
        try:
            program = process.cmdline()[0].rsplit("/", 1)[-1] if process.cmdline() else process.name()
            for connection in process.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN or (connection.type == socket.SOCK_DGRAM and not connection.raddr):
                    found.add((program, connection.laddr.ip, connection.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def with_descendants(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def network_address() -> str | None:
    """One IPv4 address of this machine that is not loopback, if it has one."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not on_loopback(address.address):
                return address.address
    return None


# ---- the private Ray of `runner tune` ---------------------------------------------------


@pytest.fixture
def local_ray(tmp_path):
    processes = MarkedProcesses(tmp_path)
    driver = subprocess.Popen([sys.executable, "-c", START_AS_THE_RUNNER_DOES], env=processes.env, cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield processes, driver, json.loads(driver.stdout.readline())
    finally:
        driver.stdin.close()
        driver.wait(timeout=60)
        processes.stop_all()


def connect(processes: MarkedProcesses, gcs: str, **env) -> subprocess.CompletedProcess:
    """A Ray client on this machine. Ray's client swaps 127.0.0.1 in an address for the machine's
    network address, where a private Ray does not listen; in Ray's single-machine mode it keeps it."""
    environment = {key: value for key, value in processes.env.items() if not key.startswith("RAY_AUTH_TOKEN")}
    environment["RAY_gcs_server_port_wait_time_s"] = "3"  # a refused client stops retrying after 3 tries, not 20
    environment[SINGLE_MACHINE_SWITCH] = "0"
    return subprocess.run([sys.executable, "-c", CONNECT, gcs], env={**environment, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(300)
def test_local_ray_turns_away_clients_without_the_token(local_ray, tmp_path):
    processes, _, started = local_ray
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
def test_local_ray_answers_nothing_at_the_network_address(local_ray):
    processes, driver, started = local_ray
    address = network_address()
    if address is None:
        pytest.skip("this machine has no network address besides loopback")
    sockets = listening(with_descendants(driver.pid))
    ports = {port for _, _, port in sockets}

    answered = []
    for port in sorted(ports):
        try:
            socket.create_connection((address, port), timeout=5).close()
            answered.append(port)
        except OSError:
            pass

    assert started["gcs"].startswith("127.0.0.1:") and int(started["gcs"].rpartition(":")[2]) in ports
    assert not answered, f"{address} answers on ports {answered} of {sorted(sockets)}"
    assert not started["webui"], f"a dashboard is served at {started['webui']}"


@pytest.mark.timeout(600)
def test_a_private_runner_tune_listens_on_loopback_only(tmp_path, cifar_dir, processes):
    from tests.conftest import TINY_SPACE

    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    driver = start_runner(processes, tmp_path, "tune", "--space", tmp_path / "tiny.yaml", "--name", "private",
                          "--results", tmp_path / "R", "--data-dir", cifar_dir)
    sockets = set()
    while driver.poll() is None:  # the driver and every Ray process it started, trial workers included
        sockets |= listening(with_descendants(driver.pid))
        time.sleep(0.5)

    assert driver.returncode == 0, (tmp_path / "driver.err").read_text()
    programs = {program for program, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= programs, sockets  # the test saw Ray's servers, and a trial's
    assert any(program.startswith("ray::ImplicitFunc") for program in programs), sockets
    exposed = sorted(entry for entry in sockets if not on_loopback(entry[1]))
    assert not exposed, f"listening beyond loopback: {exposed}"


# ---- a cluster node, started with `ray start` ----------------------------------------------


@pytest.fixture(scope="module")
def cluster_node(tmp_path_factory):
    """(marked processes, head process, address) of a one-node cluster, token auth on."""
    with head_node(tmp_path_factory.mktemp("cluster-node"), "--num-cpus", 1, "--node-ip-address", "127.0.0.1") as node:
        yield node


@pytest.mark.timeout(300)
def test_a_cluster_node_listens_on_the_network(cluster_node):
    """Even when told 127.0.0.1: Ray swaps a loopback --node-ip-address for the network address."""
    _, head, _ = cluster_node

    sockets = listening(with_descendants(head.pid))

    exposed = {program for program, ip, _ in sockets if not on_loopback(ip)}
    assert {"gcs_server", "raylet"} <= exposed, sockets


@pytest.mark.timeout(300)
def test_runner_with_a_wrong_token_gets_one_line(cluster_node, tmp_path, cifar_dir):
    from tests.conftest import TINY_SPACE

    processes, _, address = cluster_node
    (tmp_path / "wrong-token").write_text("0" * 64)
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    env = {**processes.env, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "wrong-token"), "RAY_gcs_server_port_wait_time_s": "3"}

    run = subprocess.run([sys.executable, "-m", "runner.cli", "tune", "--space", str(tmp_path / "tiny.yaml"),
                          "--address", address, "--data-dir", str(cifar_dir), "--results", str(tmp_path / "R")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=240)

    assert_one_error_line(Run(run.returncode, run.stdout, run.stderr),
                          f"cannot start or reach the Ray cluster at {address}", "RAY_AUTH_TOKEN_PATH")
    assert not (tmp_path / "R").exists()

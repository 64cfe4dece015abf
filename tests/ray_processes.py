"""Helpers for tests that run `runner` and Ray as real processes and stop them on purpose.

Every process a test starts gets a marker in its environment, which Ray's own processes
(GCS, raylet, agents, trial workers) inherit. Cleanup stops the processes that carry the
test's marker and nothing else, so Ray instances of other users of the machine live on.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from runner.search import SINGLE_MACHINE_SWITCH

MARKER = "RUNNER_TEST_PROCESS_MARKER"
REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"


@dataclass
class Run:
    code: int
    out: str
    err: str


class MarkedProcesses:
    """An environment for subprocesses, and the means to find and stop what they started."""

    def __init__(self, directory: Path):
        self.marker = secrets.token_hex(8)
        token = directory / "ray-auth-token"
        token.write_text(secrets.token_hex(32))
        # The token file keeps Ray from writing one into the real ~/.ray of whoever runs the tests.
        self.env = {**os.environ, MARKER: self.marker, "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
        # An in-process `runner tune` of an earlier test sets the private-Ray switch in os.environ;
        # processes started here choose for themselves, as they would from a fresh shell.
        self.env.pop(SINGLE_MACHINE_SWITCH, None)

    def running(self) -> list[psutil.Process]:
        marked = []
        for process in psutil.process_iter():
            try:
                if process.environ().get(MARKER) == self.marker and process.status() != psutil.STATUS_ZOMBIE:
                    marked.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return marked

    def trial_workers(self) -> list[psutil.Process]:
        return [p for p in self.running() if _command(p).startswith("ray::ImplicitFunc")]

    def stop_all(self, grace_s: float = 10.0) -> list[str]:
        """Kill whatever the test started that is still running; returns their commands."""
        left = self.running()
        gone, alive = psutil.wait_procs(left, timeout=0)
        for process in alive:
            _quietly(process.terminate)
        gone, alive = psutil.wait_procs(alive, timeout=grace_s)
        for process in alive:
            _quietly(process.kill)
        psutil.wait_procs(alive, timeout=grace_s)
        return [_command(p) for p in left]


def runner_command(*args) -> list[str]:
    return [sys.executable, "-m", "runner.cli", *map(str, args)]


def run_runner(processes: MarkedProcesses, *args, timeout: float = 600) -> Run:
    done = subprocess.run(runner_command(*args), env=processes.env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr)


def runner_here(capsys, *args) -> Run:
    """`runner ARGS` through the command's own main() in this process: its code, exit code and
    output, without the second or more that a new interpreter spends importing torch. For
    what fails before Ray starts; what starts Ray runs as a process (`run_runner`)."""
    from runner.cli import main

    try:
        code = main([str(arg) for arg in args])
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    out, err = capsys.readouterr()
    return Run(code, out, err)


def start_runner(processes: MarkedProcesses, log_dir: Path, *args) -> subprocess.Popen:
    """`runner ARGS` in its own session (as a terminal would run it), output to files in log_dir."""
    return subprocess.Popen(
        runner_command(*args), env=processes.env, cwd=REPO, start_new_session=True,
        stdout=open(log_dir / "driver.out", "w"), stderr=open(log_dir / "driver.err", "w"),
    )


def start_ray_node(processes: MarkedProcesses, log: Path, temp_dir: Path, *args) -> subprocess.Popen:
    """`ray start ARGS --block` with token auth, no dashboard, Ray's files in `temp_dir`; returns once its raylet serves.

    `temp_dir` should be short (under /tmp): Ray's unix socket paths must stay under 108 bytes.
    """
    processes.env["RAY_AUTH_MODE"] = "token"
    node = subprocess.Popen([str(RAY), "start", "--disable-usage-stats", "--include-dashboard", "false",
                             "--temp-dir", str(temp_dir), "--block", *map(str, args)],
                            env=processes.env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    wait_for(lambda: raylet_of(node) is not None and _listens(raylet_of(node)), 120, f"the Ray node of {log.name}", node)
    return node


@contextmanager
def head_node(home: Path, *args):
    """A one-node Ray cluster started with `ray start --head ARGS`: yields (marked processes, head
    process, address) and stops every process it started, and only those, when done."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: see start_ray_node
    processes = MarkedProcesses(home)
    port = free_port()
    try:
        head = start_ray_node(processes, home / "head.log", temp_dir, "--head", "--port", port, *args)
        yield processes, head, f"127.0.0.1:{port}"
    finally:
        processes.stop_all()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _listens(process: psutil.Process) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN for c in process.net_connections(kind="inet"))
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def raylet_of(node: subprocess.Popen) -> psutil.Process | None:
    return next((p for p in psutil.Process(node.pid).children(recursive=True) if p.name() == "raylet"), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (code {process.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


def first_reported_checkpoint(experiment: Path) -> Path | None:
    """A trial directory whose first epoch the driver has recorded, checkpoint included."""
    for result in sorted(experiment.glob("*/result.json")):
        if result.stat().st_size and any(result.parent.glob("checkpoint_*/model.pt")):
            return result.parent
    return None


def assert_one_error_line(run: Run, *fragments: str, prefix: str = "runner: error: ") -> str:
    assert run.code != 0, run.out + run.err
    assert "Traceback" not in run.err + run.out, run.err
    lines = [line for line in run.err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(prefix)]
    assert len(errors) == 1, run.err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def _command(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline()) or process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "?"


def _quietly(action: Callable[[], None]) -> None:
    try:
        action()
    except psutil.NoSuchProcess:
        pass

"""Ctrl-C reaches what the tests start, even when the tests themselves run as a background job.

A shell starts a background job with SIGINT ignored, and the processes it starts inherit
that: a test's SIGINT to its child would then do nothing (the cause of two failures seen in
CI: a `runner train` that ran to its end, exit 0 instead of 130, and a search that did not
stop). tests/conftest.py gives the test process Python's own handler back, so children
start with SIGINT at its default.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.conftest import REPO

PROBE = '''
import signal, subprocess, sys

def test_a_child_starts_with_sigint_at_its_default():
    child = "import signal, sys; sys.exit(0 if signal.getsignal(signal.SIGINT) is signal.default_int_handler else 3)"
    assert subprocess.run([sys.executable, "-c", child]).returncode == 0, "the child has SIGINT ignored"
'''


def test_tests_started_with_sigint_ignored_still_give_their_children_ctrl_c(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)

    # pytest as a background job would run it: SIGINT ignored from the start; the project's conftest as a plugin.
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                           "--rootdir", str(tmp_path), str(probe)],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout

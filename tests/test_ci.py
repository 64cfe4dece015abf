"""`.ci/run` refuses to start without the shared CIFAR-10 subset beside the checkout: without
it the learning tests fall back to Fashion-MNIST or skip, and CI must never pass on skips."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ci_run(checkout: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(checkout / ".ci" / "run")], capture_output=True, text=True, timeout=60)


def test_ci_fails_loudly_without_the_shared_cifar_and_runs_the_suite_with_it(tmp_path):
    checkout = tmp_path / "clone"
    (checkout / ".ci").mkdir(parents=True)
    (checkout / "scripts").mkdir()
    shutil.copy(REPO / ".ci" / "run", checkout / ".ci" / "run")
    (checkout / "scripts" / "test.sh").write_text("touch suite-ran\n")    # stands in for the real suite

    missing = ci_run(checkout)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "the shared CIFAR-10 subset is missing" in missing.stderr
    assert not (checkout / "suite-ran").exists()

    shared = tmp_path / "shared" / "datasets" / "cifar-10-batches-py"
    shared.mkdir(parents=True)
    (shared / "data_batch_1").write_bytes(b"")
    assert ci_run(checkout).returncode == 0 and (checkout / "suite-ran").exists()

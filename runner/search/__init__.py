"""Search: every line of Ray code in the project. Ray Tune trials driven by Optuna
(tune), the data the driver loads once for every trial (shared_data), the live view
(live), the searcher that survives a killed driver (searcher), what became of each trial
(outcomes), and a study seeded with earlier searches' trials (warm).

Ray reads some settings from the environment when it is first imported, so importing this
package sets them before any module here imports Ray.
"""

import os
import sys
import warnings

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A trial's error shows as one line in the live view and the summary; the traceback
# stays in the trial's error.txt instead of filling the terminal.
os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Ray's own console reporter would print beside the rich live view; verbose=0 alone
# does not silence its newer output engine.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# A trial that diverges or errors by itself ends with a result that says so and has no
# metric (runner/search/outcomes.py: failure_result); Ray's check that every result holds
# the metric would fail the trial instead.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
# Trials read data and write checkpoints by absolute path; keep their working directory.
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")

# Ray's single-machine mode (its default on macOS and Windows, named for them) gives the
# node the address 127.0.0.1. Ray's gRPC servers (GCS, raylet, workers) listen on loopback
# when the node's address is a loopback one and on every interface otherwise; its
# runtime-env agent listens on the node's address. `ray.init(_node_ip_address="127.0.0.1")`
# cannot do it: Ray swaps a loopback address given there for the machine's network address.
SINGLE_MACHINE_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def private_ray_on_loopback() -> None:
    """Make the Ray this process starts a one-machine Ray whose every socket is on loopback.

    Only for a private Ray: a driver that joins a cluster must keep its network address.
    Ray reads the switch when it is first imported, so this must run before that.
    """
    if os.environ.get(SINGLE_MACHINE_SWITCH) == "0":
        return
    os.environ[SINGLE_MACHINE_SWITCH] = "0"  # Ray's own processes read it when they start
    if "ray" in sys.modules:  # only when the runner is called from Python that already imported Ray
        warnings.warn("Ray was imported before the runner could keep its private Ray on loopback; "
                      "this process's Ray may listen on every interface", stacklevel=2)

"""Stage 4, search: every line of Ray code in the project. Ray Tune trials driven by Optuna,
the live view, the searcher that survives a killed driver, and what became of each trial.

Ray reads some settings from the environment when it is first imported, so importing this
package sets them before any module here imports Ray.
"""

import os

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A trial's error shows as one line in the live view and the summary; the traceback
# stays in the trial's error.txt instead of filling the terminal.
os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Ray's own console reporter would print beside the rich live view; verbose=0 alone
# does not silence its newer output engine.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Trials read data and write checkpoints by absolute path; keep their working directory.
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")

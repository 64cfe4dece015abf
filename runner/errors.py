"""User-facing errors: one class the command lines turn into one clear line on stderr.

Anything raised as `RunnerError` is the user's to fix (a bad flag, a missing file, a
corrupt dataset); its message names the problem and the fix, and the command exits with
its `exit_code`: 2 for bad input, 1 for a run that failed on the way (`RunFailed`). Every
other exception is a bug and keeps its traceback.
"""


class RunnerError(Exception):
    """A problem the user can fix; the message says what it is and how."""

    exit_code = 2


class RunFailed(RunnerError):
    """A run that started and could not go on (its loss diverged); the message says what was kept."""

    exit_code = 1


class TrialDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial cannot continue from here."""

"""User-facing errors: one class the command lines turn into one clear line on stderr.

Anything raised as `RunnerError` is the user's to fix (a bad flag, a missing file, a
corrupt dataset); its message names the problem and the fix. Every other exception is
a bug and keeps its traceback.
"""


class RunnerError(Exception):
    """A problem the user can fix; the message says what it is and how."""


class TrialDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial cannot continue from here."""

"""The exception types commands turn into one line: UserError, for mistakes a user can fix (bad
files, flags, missing network), and Interrupted, for Ctrl-C and SIGTERM.

Commands print a UserError's message and exit with status 2 instead of a stack trace, and an
Interrupted one with 128 + the signal's number; anything else that escapes is a bug in kboolq
and keeps its traceback.
"""

import signal


class UserError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM, after the command cleaned up; the message says what was kept."""

    def __init__(self, message: str = "", signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum

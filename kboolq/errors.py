"""The one exception type for mistakes a user can fix (bad files, flags, missing network).

Commands print its message and exit with status 2 instead of a stack trace; anything else that
escapes is a bug in kboolq and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""

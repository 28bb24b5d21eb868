"""One error type for everything a user can get wrong.

The CLI prints ``str(err)`` as a single line and exits non-zero; no traceback.
Messages say what is wrong and what to do.
"""


class RnnskipError(Exception):
    """A user-facing error: one line, what is wrong and what to do."""

"""The one exception type for problems in what a user gave us (configs, strings, files)."""


class UserError(ValueError):
    """Bad user input. The CLI prints its message as one line and exits non-zero, no traceback."""

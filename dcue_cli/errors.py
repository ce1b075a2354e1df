"""The one exception type for a user's mistake: printed as `Error: ...`, exit 1, no traceback.

A plain Exception, so library modules raise it without depending on click; the root command
(`dcue_cli.cli`) turns it into the one-line error and exit status at the command line.
"""


class DcueError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def format_message(self) -> str:
        return self.message


class OptionError(DcueError):
    """A misuse of the command line found by a library check (a bad --columns, --split, ...):
    the same one line, exit 2 as for click's own usage errors."""

    exit_code = 2


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only (its type's name when it has none): for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

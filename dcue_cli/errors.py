"""The one exception type for a user's mistake: printed as `Error: ...`, exit 1, no traceback."""

import click


class DcueError(click.ClickException):
    """A problem with the user's input or environment, with a message that says how to fix it.

    Library code raises it too (it is a plain Exception subclass), so the same message
    reaches a user of the Python API and of the command line.
    """

    exit_code = 1

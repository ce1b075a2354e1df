"""Logging and progress bars: everything for people goes to stderr, never stdout.

`-q` silences info logs and bars, `-v` adds debug logs. The CLI root sets the level once.
"""

import logging
import sys

logger = logging.getLogger("dcue")
_quiet = False


def configure(verbosity: int = 0, quiet: bool = False) -> None:
    global _quiet
    _quiet = quiet
    level = logging.WARNING if quiet else (logging.DEBUG if verbosity > 0 else logging.INFO)
    logger.setLevel(level)
    logger.propagate = False
    # Replace rather than add, so repeated CliRunner invocations do not stack handlers; bind
    # the handler to the *current* sys.stderr (CliRunner swaps it per invocation).
    logger.handlers[:] = []
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)


def is_quiet() -> bool:
    return _quiet


def progress(iterable=None, **kwargs):
    """A tqdm bar on stderr, disabled by --quiet. One bar, in the parent process."""
    from tqdm.auto import tqdm

    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("delay", 0.5)  # no flicker for jobs that finish at once
    kwargs["disable"] = kwargs.get("disable", False) or _quiet
    if not getattr(sys.stderr, "isatty", lambda: False)():
        # Logs and CI: an occasional line, not a redraw per update.
        kwargs.setdefault("mininterval", 30)
    return tqdm(iterable, **kwargs)


def info(msg: str, *args) -> None:
    logger.info(msg, *args)


def warning(msg: str, *args) -> None:
    logger.warning("Warning: " + msg, *args)


def debug(msg: str, *args) -> None:
    logger.debug(msg, *args)

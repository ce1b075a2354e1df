"""Ctrl-C and SIGTERM as a request to stop at the next safe point, shared by the long commands.

A handler that raises KeyboardInterrupt where the signal lands can land inside a garbage-
collection callback (h5py's weakref ones, for instance), where Python prints "Exception
ignored" and the run goes on as if nothing happened. So the handler only records the request;
the loop stops where its state is consistent (`melspec` between items, `train` between steps).
A second signal raises at once, for a user who will not wait. A process started with SIGINT
ignored (in the background by a non-interactive shell) leaves Ctrl-C alone, as Unix tools do;
SIGTERM (kill, a scheduler's time limit) is always handled. Code that swallows exceptions (a C
library's callback: soundfile's encoder writing to memory) runs inside `deferred()`, where the
second signal too is only recorded, and raised when the block ends.

The command line's process (`cli.main` calls `ignore_late_signals`) only exits once a run was
asked to stop, so there the handlers are not restored when such a block ends: from then on
SIGINT and SIGTERM are ignored. Restored, a second Ctrl-C landing as the process shuts down
(after the block, before the exit) raised KeyboardInterrupt outside every handler, and Python
then ends the process by the signal (exit -2, not 130). A library user's process (a notebook)
gets its own handlers back, always.
"""

import contextlib
import signal
import threading
from collections.abc import Callable

_ignore_late_signals = False


def ignore_late_signals() -> None:
    """For the command line's process: after a StopSignals block that was asked to stop,
    SIGINT and SIGTERM are ignored while the process exits (see the module docstring)."""
    global _ignore_late_signals
    _ignore_late_signals = True


class StopSignals:
    """with StopSignals() as stop: ... stop.check() (raises KeyboardInterrupt) or stop.requested."""

    def __init__(self, on_request: Callable[[], None] | None = None):
        self.requested = False
        self.on_request = on_request
        self.previous = {}
        self.signals = 0  # received so far
        self._deferring = 0

    def _handler(self, signum, frame):
        self.signals += 1
        if self.requested:
            if self._deferring:
                return
            raise KeyboardInterrupt
        self.requested = True
        if self.on_request is not None:
            self.on_request()

    @contextlib.contextmanager
    def deferred(self):
        """A block where a second signal does not raise (it could land where an exception is
        swallowed); KeyboardInterrupt when the block ends if one came."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if self.signals >= 2:
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # only there can handlers be set
            for sig in (signal.SIGINT, signal.SIGTERM):
                if sig == signal.SIGINT and signal.getsignal(sig) is signal.SIG_IGN:
                    continue
                self.previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        late = _ignore_late_signals and self.signals > 0  # the process is on its way out
        for sig, handler in self.previous.items():
            signal.signal(sig, signal.SIG_IGN if late else handler)
        self.previous.clear()
        return False

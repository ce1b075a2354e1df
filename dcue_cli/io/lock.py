"""An exclusive lock on an output, so that two runs never write one file at once."""

import os
from pathlib import Path

from dcue_cli.errors import DcueError


class OutputLock:
    """An exclusive, non-blocking flock on `path`, released by the OS however the process ends
    (so a SIGKILLed run never leaves a stale lock behind). `message` is the error when another
    process holds it. Without fcntl (not POSIX) nothing is locked."""

    def __init__(self, path, message: str, *, remove: bool = False):
        self.path, self.remove = Path(path), remove
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise DcueError(message) from None

    def release(self):
        if self.fd is not None:
            if self.remove:  # unlink while still holding it: a waiting run then locks a fresh file
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

"""Atomic outputs: write to a temporary name beside the target, rename into place when done.

A crash, a Ctrl-C or an error never leaves a half-written file under the real name, and
an existing file is replaced only by a complete new one.
"""

import contextlib
import gzip
import io
import os
import sys
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_path_beside(target) -> Path:
    """A new empty file beside `target`, with the permissions a plain open() would give it."""
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    os.close(fd)
    # mkstemp makes the file 0600; an output should follow the umask like any other file.
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path beside `target`; rename it to `target` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_beside(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def open_text_output(target, newline="\n"):
    """A text stream for `target`: stdout for '-', gzip for '.gz', otherwise written atomically."""
    if str(target) == "-":
        stream = sys.stdout
        yield stream
        stream.flush()
        return
    with atomic_path(target) as tmp:
        if str(target).endswith(".gz"):
            # mtime=0: the same content gives the same bytes.
            raw = gzip.GzipFile(filename="", mode="wb", fileobj=open(tmp, "wb"), mtime=0)
            stream = io.TextIOWrapper(raw, encoding="utf-8", newline=newline)
            try:
                yield stream
            finally:
                stream.close()
                raw.fileobj.close()
        else:
            with open(tmp, "w", encoding="utf-8", newline=newline) as stream:
                yield stream

"""Atomic outputs: write to a temporary name beside the target, rename into place when done.

A crash, a Ctrl-C or an error never leaves a half-written file under the real name, and
an existing file is replaced only by a complete new one.
"""

import contextlib
import errno
import gzip
import io
import os
import sys
import tempfile
from pathlib import Path

from dcue_cli.errors import DcueError


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


def _cannot_write(target, exc: OSError) -> DcueError:
    reason = exc.strerror or str(exc)
    return DcueError(f"cannot write {target} ({reason}): give an output path in a folder you can write to.")


_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_FULL_WORDS = ("no space left on device", "disk quota exceeded", "errno = 28", "errno = 122")


def is_disk_full(exc: OSError) -> bool:
    """ENOSPC or EDQUOT, also from h5py (which may give the errno only in its message)."""
    return exc.errno in _FULL or any(word in str(exc).lower() for word in _FULL_WORDS)


def write_failed(target, exc: OSError, resume: str = "") -> DcueError:
    """The one line for an output that could not be written: a full disk names its fix.

    `resume`: what a rerun after freeing space starts from (melspec's kept items), said after
    "free some space"."""
    if is_disk_full(exc):
        return DcueError(f"cannot write {target}: the disk is full (no space left on device): free some space"
                         f"{resume}, or write the output to another disk (another -o or folder).")
    return _cannot_write(target, exc)


def _is_write_error(exc: OSError, tmp: Path) -> bool:
    """An error of writing `tmp` (not, say, of reading an input inside the block)."""
    return is_disk_full(exc) or (exc.filename is not None and os.fspath(exc.filename) == os.fspath(tmp)) or (
        exc.filename is None and str(tmp) in str(exc))


def check_output_path(target, what: str = "output") -> None:
    """A one-line DcueError now, before any work, if `target` cannot be written; creates nothing.

    The nearest existing folder above `target` must be a folder we may write in; the target
    itself must not be a folder. '-' (stdout) is always fine.
    """
    if str(target) == "-":
        return
    path = Path(os.path.abspath(target))
    if path.is_dir():
        raise DcueError(f"{target} is a folder: give a file name for the {what}.")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DcueError(f"cannot write {target}: {ancestor} is a file, not a folder: give another path "
                        f"for the {what}.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise DcueError(f"cannot write {target}: no permission to write in {ancestor}: give another path "
                        f"for the {what}.")


def make_folder(folder) -> Path:
    """mkdir -p, with a one-line DcueError (a file in the way, no permission) instead of OSError."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "a file is in the way" if isinstance(exc, (FileExistsError, NotADirectoryError)) else (
            exc.strerror or str(exc))
        raise DcueError(f"cannot create the folder {folder} ({reason}): give another path.") from None
    return folder


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path beside `target`; rename it to `target` if the block succeeds."""
    target = Path(target)
    if target.is_dir():
        raise DcueError(f"{target} is a folder: give a file name for the output.")
    make_folder(target.parent)
    try:
        tmp = temp_path_beside(target)
    except OSError as exc:
        raise _cannot_write(target, exc) from None
    try:
        try:
            yield tmp
        except OSError as exc:  # a full disk, or a write refused, while the block wrote tmp
            if not _is_write_error(exc, tmp):
                raise
            raise write_failed(target, exc) from None
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise write_failed(target, exc) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


class GuardedFile:
    """A new binary file for a library that writes through Python and cannot recover from a
    failed write: h5py's file-object driver (HDF5 left holding data it cannot flush, or objects
    it could not close, crashes the interpreter at exit, exit 139). The first OSError of a write
    (a full disk) is kept in `failure`, with the file's name, and not raised: that write and
    every one after it, and every write once `drop()` is called, are dropped and reported done,
    so the library goes on, closes the file, and never sees a failure. Its owner checks
    `failure` after each step and then removes the file. A short write is continued."""

    def __init__(self, path):
        self.path = Path(path)
        self.raw = open(self.path, "w+b", buffering=0)  # noqa: SIM115 - closed by close()
        self.failure: OSError | None = None
        self.dropping = False

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view) and not self.dropping:
                wrote = self.raw.write(view[done:])
                if not wrote:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += wrote
        except OSError as exc:
            self._failed(exc)
        return len(view)

    def truncate(self, size=None):
        if not self.dropping:
            try:
                self.raw.truncate(size)
            except OSError as exc:
                self._failed(exc)
        return size

    def _failed(self, exc: OSError) -> None:
        if exc.filename is None:
            exc.filename = str(self.path)
        self.failure, self.dropping = exc, True

    def drop(self) -> None:
        """From now on, writes are dropped: the file is about to be removed."""
        self.dropping = True

    def close(self) -> None:
        self.raw.close()

    def __getattr__(self, name):  # seek, tell, read, readinto, flush
        return getattr(self.raw, name)


def write_bytes_atomically(target, data) -> None:
    """`data` (bytes or a buffer) as the whole of `target`, atomically; a full disk is one line.

    Formats whose library leaves its state broken by a failed write (HDF5 crashes at exit after
    a full disk; torch's writer reports it as an opaque RuntimeError) are built in memory first
    and written through here."""
    with atomic_path(target) as tmp, open(tmp, "wb") as stream:
        stream.write(data)


@contextlib.contextmanager
def open_text_output(target, newline="\n"):
    """A text stream for `target`: stdout for '-', gzip for '.gz', otherwise written atomically.

    Ids read with undecodable bytes (surrogate escapes, see `text.open_text`) are written back
    as the same bytes.
    """
    if str(target) == "-":
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is None:  # a text-only stdout (some test harnesses)
            yield sys.stdout
            sys.stdout.flush()
            return
        sys.stdout.flush()
        stream = io.TextIOWrapper(buffer, encoding="utf-8", errors="surrogateescape", newline=newline)
        try:
            yield stream
        finally:
            stream.flush()
            stream.detach()  # leave stdout open
        return
    _refuse_replacing_binary(target)
    with atomic_path(target) as tmp:
        if str(target).endswith(".gz"):
            # mtime=0: the same content gives the same bytes.
            raw = gzip.GzipFile(filename="", mode="wb", fileobj=open(tmp, "wb"), mtime=0)  # noqa: SIM115 - closed below
            stream = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline=newline)
            try:
                yield stream
            finally:
                stream.close()
                raw.fileobj.close()
        else:
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline=newline) as stream:
                yield stream


def _paths(value) -> list:
    """The paths of one entry of `refuse_inputs_as_outputs` (None, one path, or several)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return [p for p in value if p is not None]
    return [value]


def same_file(a, b) -> bool:
    """True when `a` and `b` name one file: the same inode (a hard or symbolic link, another
    spelling), or, where one does not exist yet, the same real path. '-' is never a file."""
    if str(a) == "-" or str(b) == "-":
        return False
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def refuse_inputs_as_outputs(outputs: dict, inputs: dict) -> None:
    """A one-line DcueError, before any work, if an output is one of the command's inputs.

    `outputs` and `inputs` map how the user named each (e.g. "-o", "PLAYS") to a path, a list of
    paths or None; '-', folders and names of no file (`--items test`) among the inputs are
    skipped. Writing the output would replace the input: the user would lose it, exit 0.
    """
    for out_name, out_value in outputs.items():
        for out in _paths(out_value):
            if str(out) == "-" or not os.path.lexists(out):
                continue  # a new file cannot be an existing input
            for in_name, in_value in inputs.items():
                for source in _paths(in_value):
                    if (str(source) != "-" and os.path.exists(source) and not os.path.isdir(source)
                            and same_file(out, source)):
                        same = "" if str(source) == str(out) else f" {source}"
                        raise DcueError(f"{out_name} {out} is also the input {in_name}{same}: writing it would "
                                        f"destroy the input; give {out_name} another file name.")


def refuse_replacing_other_kind(target, kind: str, is_kind) -> None:
    """A one-line DcueError if `target` exists, is not empty and is not a `kind` file
    (`is_kind(path)` says): an output replaces a file of its own kind only, never, say, a
    mels file or a plays TSV given by mistake as -o."""
    if str(target) == "-" or not os.path.isfile(target) or os.path.getsize(target) == 0 or is_kind(target):
        return
    raise DcueError(f"{target} exists and is not {kind}: remove it first or give another output name.")


def refuse_replacing_binary(*targets) -> None:
    """A text output (TSV) never replaces a file of a binary format: a mels or embeddings file
    (HDF5), a checkpoint (zip or pickle) or gzip data, given by mistake as `recommend -o`,
    `score --per-user`, `autotag --predict`, was replaced, exit 0. A gzip file may be replaced by
    a '.gz' output; any other file (a TSV with odd bytes too) as before. Checked before the work
    (after `refuse_inputs_as_outputs`, whose line says more) and again by `open_text_output`."""
    for target in targets:
        if target is not None:
            _refuse_replacing_binary(target)


_BINARY_HEADS = (b"\x89HDF\r\n\x1a\n", b"PK\x03\x04") + tuple(b"\x80" + bytes([p]) for p in range(2, 6))


def _reads_as_tsv(head: bytes) -> bool:
    """Whether a file's first bytes are UTF-8 text holding a tab or a line end (a zip's local
    header holds binary fields that are not)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # only a character cut at the end of the bytes read is allowed
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")
    return "\t" in text or "\n" in text


def _refuse_replacing_binary(target) -> None:
    def replaceable(path) -> bool:
        with open(path, "rb") as f:
            head = f.read(256)
        if head.startswith(b"\x1f\x8b"):
            return str(target).endswith(".gz")
        if head.startswith(b"PK\x03\x04"):  # a zip, or a TSV whose first id starts so (ASCII)
            return _reads_as_tsv(head)
        return not head.startswith(_BINARY_HEADS)

    refuse_replacing_other_kind(target, "a TSV", replaceable)

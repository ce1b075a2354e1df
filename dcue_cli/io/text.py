"""Reading text inputs: '-' for stdin, '.gz' transparently, BOM and CRLF tolerated."""

import contextlib
import gzip
import io
import os
import sys
import zlib

from dcue_cli.errors import DcueError


def display_name(path) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def shorten(text: str, limit: int = 80) -> str:
    """A line as quoted in an error message: without its newline, cut to `limit` characters."""
    text = text.rstrip("\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _CheckedGzip(gzip.GzipFile):
    """A gzip reader whose damage (a truncated download, a file that only starts like gzip) is a
    one-line DcueError naming the file, not EOFError (which click would print as 'Aborted!')."""

    def __init__(self, fileobj, name, owns=True):
        super().__init__(fileobj=fileobj)
        self._display = name
        self._raw = fileobj if owns else None

    def close(self):
        try:
            super().close()
        finally:  # GzipFile leaves a file object it was given open
            if self._raw is not None:
                self._raw.close()
                self._raw = None

    @contextlib.contextmanager
    def _checked(self):
        try:
            yield
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            reason = str(exc) or "it ends before the end of the compressed data"
            raise DcueError(f"{self._display} is a damaged gzip file ({reason}): download or compress "
                            f"it again (`gzip -t` checks it).") from None

    def read(self, size=-1):
        with self._checked():
            return super().read(size)

    def read1(self, size=-1):
        with self._checked():
            return super().read1(size)

    def peek(self, n):
        with self._checked():
            return super().peek(n)

    def readline(self, size=-1):
        with self._checked():
            return super().readline(size)


def open_binary(path):
    """A binary stream for `path` ('-' = stdin), decompressed if gzip (by magic, not name)."""
    if str(path) == "-":
        raw = sys.stdin.buffer
        head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        return _CheckedGzip(raw, "<stdin>", owns=False) if head == b"\x1f\x8b" else raw
    if os.path.isdir(path):
        raise DcueError(f"{path} is a folder, not a file: give the path of the TSV file inside it.")
    try:
        stream = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    except FileNotFoundError:
        raise DcueError(f"{path} does not exist: check the path.") from None
    except PermissionError:
        raise DcueError(f"{path} cannot be read (permission denied): check its permissions.") from None
    if stream.peek(2)[:2] == b"\x1f\x8b":
        return _CheckedGzip(stream, str(path))
    return stream


def open_text(path, encoding="utf-8"):
    """A text stream over `path` with universal newlines and the BOM dropped.

    Undecodable bytes are kept as surrogate escapes, so an id with stray Latin-1 bytes is
    still read (and written back) unchanged instead of failing the whole file.
    """
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    return io.TextIOWrapper(open_binary(path), encoding=enc, errors="surrogateescape", newline=None)


def looks_like_text(path, sniff: int = 8192) -> bool:
    """True when the start of `path` has no NUL byte and is not gzip's magic: a plain text file
    (a TSV output may replace one, never an HDF5, gzip or other binary file)."""
    try:
        with open(path, "rb") as f:
            head = f.read(sniff)
    except OSError:
        return False
    return b"\x00" not in head and not head.startswith(b"\x1f\x8b")


def binary_kind(path, sniff: int = 4096) -> str | None:
    """What `path` is when it is no text file: an HDF5 file, a torch file or other binary data
    (NUL bytes); None for text, gzip, '-' (stdin) or a file that cannot be read (the text reader
    names that). For the readers of id and path lists, which would take its bytes for ids."""
    if str(path) == "-":
        return None
    from dcue_cli.io.checkpoints import TORCH_HEADS

    try:
        with open(path, "rb") as f:
            head = f.read(sniff)
    except OSError:
        return None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (mels or embeddings?)"
    if head.startswith(TORCH_HEADS):
        return "a torch file (a model checkpoint?)"
    if b"\x00" in head and not head.startswith(b"\x1f\x8b"):
        return "a binary file"
    return None


def refuse_binary(path, name: str, expected: str, fix: str = "check the path") -> None:
    """A one-line DcueError when `path` (given as `name`) is a binary file, not `expected`."""
    kind = binary_kind(path)
    if kind is not None:
        raise DcueError(f"{name} {path} is {kind}, not {expected}: {fix}.")

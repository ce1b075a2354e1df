"""Reading text inputs: '-' for stdin, '.gz' transparently, BOM and CRLF tolerated."""

import gzip
import io
import os
import sys

from dcue_cli.errors import DcueError


def display_name(path) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def open_binary(path):
    """A binary stream for `path` ('-' = stdin), decompressed if gzip (by magic, not name)."""
    if str(path) == "-":
        raw = sys.stdin.buffer
        head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        return gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw
    if os.path.isdir(path):
        raise DcueError(f"{path} is a folder, not a file: give the path of the TSV file inside it.")
    try:
        stream = open(path, "rb")
    except FileNotFoundError:
        raise DcueError(f"{path} does not exist: check the path.") from None
    except PermissionError:
        raise DcueError(f"{path} cannot be read (permission denied): check its permissions.") from None
    if stream.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream)
    return stream


def open_text(path, encoding="utf-8"):
    """A text stream over `path` with universal newlines and the BOM dropped.

    Undecodable bytes are kept as surrogate escapes, so an id with stray Latin-1 bytes is
    still read (and written back) unchanged instead of failing the whole file.
    """
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    return io.TextIOWrapper(open_binary(path), encoding=enc, errors="surrogateescape", newline=None)

"""Reading any line-oriented TSV row by row with exact `file:line` errors, and the options that
say how to read one (`--columns`, `--header`).

Every TSV reader (plays, splits, tags, id maps) builds on `iter_rows`; the plays reader (the one
that must be fast at 48 M rows) falls back to it to name the first bad line precisely.
"""

from collections.abc import Callable, Iterator, Sequence

from dcue_cli import log
from dcue_cli.errors import DcueError, OptionError
from dcue_cli.io.text import display_name, open_text, shorten


def is_number(text: str) -> bool:
    """True if `text` parses as a float (as a weight or count field would be read)."""
    try:
        float(text)
        return True
    except ValueError:
        return False


def parse_header_option(value) -> bool | None:
    """'auto' -> None (detect), 'yes'/True -> True, 'no'/False -> False."""
    if value in (None, "auto"):
        return None
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("yes", "true", "1", "y")


def parse_columns(text: str, n: int) -> Sequence[int]:
    """'0,1,2' -> (0, 1, 2): zero-based positions of the fields to read."""
    try:
        cols = tuple(int(c) for c in text.split(","))
    except ValueError:
        cols = ()
    if len(cols) != n or any(c < 0 for c in cols) or len(set(cols)) != n:
        raise OptionError(f"--columns {text!r}: give {n} distinct zero-based positions, e.g. 0,1,2.")
    return cols


def iter_rows(
    path,
    *,
    min_fields: int,
    max_fields: int | None = None,
    sep: str = "\t",
    header: bool | None = None,
    looks_like_header: Callable[[list], bool] | None = None,
    what: str = "TSV",
    fix: str = "",
) -> Iterator[tuple]:
    """Yield (line_number, fields) for every non-blank line of `path`.

    A line with fewer than `min_fields` or more than `max_fields` fields raises a one-line
    DcueError naming the file, the line and its text. `header=None` detects a header with
    `looks_like_header` on the first non-blank line; True always skips it; False never does.
    """
    name = display_name(path)
    with open_text(path) as stream:
        first = True
        for lineno, line in enumerate(stream, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split(sep)
            if first:
                first = False
                if header is True:
                    continue
                if header is None and looks_like_header and looks_like_header(fields):
                    # Said aloud: a first data line with a typo would otherwise vanish unnoticed.
                    log.info("%s:%d: skipped as a header line: %r", name, lineno, shorten(line))
                    continue
            if len(fields) < min_fields or (max_fields is not None and len(fields) > max_fields):
                expected = str(min_fields) if max_fields == min_fields else (
                    f"{min_fields} to {max_fields}" if max_fields else f"at least {min_fields}")
                raise DcueError(
                    f"{name}:{lineno}: expected {expected} {sep!r}-separated fields in a {what}, "
                    f"found {len(fields)}: {shorten(line)!r}{fix}"
                )
            yield lineno, fields

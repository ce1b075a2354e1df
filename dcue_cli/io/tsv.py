"""Line-oriented TSV readers with exact `file:line` errors: splits (tags: `tags.py`, id maps: `idmap.py`).

The plays reader (the one that must be fast at 48 M rows) lives in `plays.py`; it falls back
to `iter_rows` here to name the first bad line precisely.
"""

from collections.abc import Callable, Iterator, Sequence

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.io.text import display_name, open_text

SPLITS = ("train", "valid", "test")


def _shorten(text: str, limit: int = 80) -> str:
    text = text.rstrip("\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_header_option(value) -> bool | None:
    """'auto' -> None (detect), 'yes'/True -> True, 'no'/False -> False."""
    if value in (None, "auto"):
        return None
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("yes", "true", "1", "y")


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
                    log.info("%s:%d: skipped as a header line: %r", name, lineno, _shorten(line))
                    continue
            if len(fields) < min_fields or (max_fields is not None and len(fields) > max_fields):
                expected = str(min_fields) if max_fields == min_fields else (
                    f"{min_fields} to {max_fields}" if max_fields else f"at least {min_fields}")
                raise DcueError(
                    f"{name}:{lineno}: expected {expected} {sep!r}-separated fields in a {what}, "
                    f"found {len(fields)}: {_shorten(line)!r}{fix}"
                )
            yield lineno, fields


def read_splits(path) -> dict:
    """Read `item_id<TAB>split` into {item_id: split}; split must be train, valid or test."""
    name = display_name(path)
    splits = {}
    rows = iter_rows(
        path, min_fields=2, max_fields=2, what="splits TSV (item_id<TAB>split)",
        looks_like_header=lambda f: len(f) == 2 and f[1].strip().lower() not in SPLITS,
    )
    for lineno, (item, split) in rows:
        split = split.strip().lower()
        if split not in SPLITS:
            raise DcueError(
                f"{name}:{lineno}: split {split!r} for item {item!r} is not one of train, valid, test: "
                "fix the line or rewrite the file with `dcue subset`."
            )
        previous = splits.setdefault(item, split)
        if previous != split:
            raise DcueError(
                f"{name}:{lineno}: item {item!r} is in both {previous!r} and {split!r}: "
                "each item belongs to exactly one split."
            )
    if not splits:
        raise DcueError(f"{name} has no splits: expected lines of item_id<TAB>train|valid|test.")
    return splits


def write_splits(path, splits: dict) -> None:
    from dcue_cli.io.atomic import open_text_output

    with open_text_output(path) as out:
        for item, split in splits.items():
            out.write(f"{item}\t{split}\n")


def parse_columns(text: str, n: int) -> Sequence[int]:
    """'0,1,2' -> (0, 1, 2): zero-based positions of the fields to read."""
    try:
        cols = tuple(int(c) for c in text.split(","))
    except ValueError:
        cols = ()
    if len(cols) != n or any(c < 0 for c in cols) or len(set(cols)) != n:
        raise DcueError(f"--columns {text!r}: give {n} distinct zero-based positions, e.g. 0,1,2.")
    return cols

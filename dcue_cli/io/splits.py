"""The splits TSV (`item_id<TAB>train|valid|test`, written by `dcue subset`): read and write."""

from dcue_cli.errors import DcueError
from dcue_cli.io.rows import iter_rows
from dcue_cli.io.text import display_name

SPLITS = ("train", "valid", "test")


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
    """Write {item_id: split} as `item_id<TAB>split` lines, in the dict's order (atomically)."""
    from dcue_cli.io.atomic import open_text_output

    with open_text_output(path) as out:
        for item, split in splits.items():
            out.write(f"{item}\t{split}\n")

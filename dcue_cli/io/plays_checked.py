"""The line-by-line plays reader: exact `file:line` errors, or counted skips with --skip-bad.

Slow but it vouches for every line; `read_plays` comes here when the fast readers refuse a file
(to name its first bad line) and for --skip-bad.
"""

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.io.plays import PLAYS_FIX, Plays
from dcue_cli.io.rows import iter_rows
from dcue_cli.io.text import display_name, shorten


def _line_problem(fields, columns) -> tuple:
    """(problem or None, user, item, count) of one line's fields."""
    ucol, icol, ccol = columns
    explicit = tuple(columns) != (0, 1, 2)
    need = max(columns) + 1
    if len(fields) < need or (not explicit and len(fields) != 3):
        return (f"expected {'at least ' + str(need) if explicit else 3} tab-separated fields, "
                f"found {len(fields)}"), None, None, None
    # Ids verbatim, as the fast paths read them: the same file gives the same ids either way.
    user, item, text = fields[ucol], fields[icol], fields[ccol].strip()
    if not user or not item:
        return "empty user or item id", None, None, None
    if "\x00" in user or "\x00" in item:
        return "a NUL byte in the user or item id (an HDF5 output cannot hold one)", None, None, None
    try:
        value = float(text)
        ok = value >= 1 and value == int(value)
    except (ValueError, OverflowError):
        ok = False
    if not ok:
        return f"count {text!r} is not a positive integer", None, None, None
    if value >= 2**31:
        return f"count {text!r} is too large (max {2**31 - 1})", None, None, None
    return None, user, item, int(value)


def read_checked(path, columns, header, skip_bad: bool) -> Plays:
    """Plays of `path`; a bad line raises a one-line DcueError naming it, or is skipped and counted."""
    name = display_name(path)
    users, items = {}, {}
    u_codes, i_codes, counts = [], [], []
    skipped = 0
    for lineno, fields in iter_rows(path, min_fields=1, header=header, what="plays TSV"):
        problem, user, item, count = _line_problem(fields, columns)
        if problem:
            if not skip_bad:
                raise DcueError(f"{name}:{lineno}: {problem}: {shorten(chr(9).join(fields))!r}{PLAYS_FIX}")
            skipped += 1
            if skipped <= 3:
                log.debug("%s:%d: skipped: %s", name, lineno, problem)
            continue
        u_codes.append(users.setdefault(user, len(users)))
        i_codes.append(items.setdefault(item, len(items)))
        counts.append(count)
    if not counts:
        raise DcueError(f"{name} has no plays{' (every line was bad)' if skipped else ''}: "
                        "expected lines of user_id<TAB>item_id<TAB>count.")
    if skipped:
        log.warning("%s: skipped %d bad line%s (--skip-bad)", name, skipped, "" if skipped == 1 else "s")
    return Plays(np.array(list(users), dtype=object), np.array(list(items), dtype=object),
                 np.array(u_codes, np.int32), np.array(i_codes, np.int32), np.array(counts, np.int32),
                 skipped)

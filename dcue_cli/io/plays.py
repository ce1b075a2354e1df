"""Plays TSV (`user_id<TAB>item_id<TAB>count`, the Taste Profile format) into integer codes.

This module owns the `Plays` table, `write_plays` and `read_plays`, which picks a reader:
  io/plays_fixed.py    numpy on whole blocks, for ids of one width (the Taste Profile: seconds)
  io/plays_pandas.py   pandas' C parser in chunks, any columns or a header (a minute at 48 M rows)
  io/plays_checked.py  line by line: names the exact bad line, or skips bad lines (--skip-bad)
A fast reader that meets anything it cannot vouch for raises `NeedsCheck` and the next one
takes over, so every file reads the same whichever reader ran.
"""

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.io.text import display_name, open_binary, shorten

PLAYS_FIX = " (expected user_id<TAB>item_id<TAB>count; use --columns to pick fields, --skip-bad to skip bad lines)"


@dataclass
class Plays:
    """Interactions as parallel arrays of codes into `user_ids` / `item_ids`."""

    user_ids: np.ndarray  # (n_users,) object: the original ids, in order of first appearance
    item_ids: np.ndarray  # (n_items,) object
    users: np.ndarray  # (n,) int32 codes
    items: np.ndarray  # (n,) int32 codes
    counts: np.ndarray  # (n,) int32 play counts, all >= 1
    skipped: int = 0  # bad lines skipped with --skip-bad

    def __len__(self):
        return len(self.users)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def deduplicate(self) -> "Plays":
        """Sum the counts of repeated (user, item) rows; rows come out sorted by user, item."""
        if len(self) == 0:
            return self
        # One stable argsort and a segment sum: about half the memory of np.unique with
        # return_inverse, which matters at 48 M rows.
        key = self.users.astype(np.int64) * self.n_items + self.items
        order = np.argsort(key, kind="stable")
        key = key[order]
        heads = np.empty(len(key), bool)
        heads[0] = True
        np.not_equal(key[1:], key[:-1], out=heads[1:])
        starts = np.flatnonzero(heads)
        del heads
        counts = np.add.reduceat(self.counts[order].astype(np.int64), starts)
        del order
        uniq = key[starts]
        del key
        return Plays(
            self.user_ids, self.item_ids,
            (uniq // self.n_items).astype(np.int32), (uniq % self.n_items).astype(np.int32),
            _capped_counts(counts), self.skipped,
        )

    def select(self, rows: np.ndarray) -> "Plays":
        """Keep the rows where `rows` is True (or the given indices); drop ids left unused."""
        users, items, counts = self.users[rows], self.items[rows], self.counts[rows]
        keep_u = np.flatnonzero(chunked_bincount(users, None, self.n_users))  # sorted, no sort needed
        keep_i = np.flatnonzero(chunked_bincount(items, None, self.n_items))
        umap = np.full(self.n_users, -1, np.int32)
        umap[keep_u] = np.arange(len(keep_u), dtype=np.int32)
        imap = np.full(self.n_items, -1, np.int32)
        imap[keep_i] = np.arange(len(keep_i), dtype=np.int32)
        return Plays(self.user_ids[keep_u], self.item_ids[keep_i], umap[users], imap[items], counts, self.skipped)

    def item_totals(self) -> np.ndarray:
        """Total play count per item (float64)."""
        return chunked_bincount(self.items, self.counts, self.n_items)

    def to_csr(self, dtype=np.float32, binary: bool = False):
        """users x items sparse matrix of counts (or 1s); duplicates summed."""
        import scipy.sparse as sp

        data = np.ones(len(self), dtype) if binary else self.counts.astype(dtype)
        m = sp.csr_matrix((data, (self.users, self.items)), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        if binary:
            m.data[:] = 1
        return m


def _capped_counts(counts: np.ndarray) -> np.ndarray:
    """Summed counts as int32, those above its maximum capped there, and said (not silently)."""
    top = np.iinfo(np.int32).max
    over = int(np.count_nonzero(counts > top))
    if over:
        log.warning("%s (user, song) pair%s summed over duplicate rows exceed%s %d plays: capped at %d",
                    f"{over:,}", "" if over == 1 else "s", "s" if over == 1 else "", top, top)
    return np.minimum(counts, top).astype(np.int32)


def chunked_bincount(codes: np.ndarray, weights: np.ndarray | None, length: int,
                     step: int = 1 << 22) -> np.ndarray:
    """np.bincount in slices: it casts its whole input to intp/float64 (16 bytes a row), which
    at 48 M rows would cost 800 MB of temporaries."""
    total = np.zeros(length, np.float64 if weights is not None else np.int64)
    for start in range(0, len(codes), step):
        w = None if weights is None else weights[start:start + step]
        total += np.bincount(codes[start:start + step], weights=w, minlength=length)
    return total


def write_plays(path, plays: Plays) -> None:
    """Write plays as `user<TAB>item<TAB>count` (atomically; '-' for stdout)."""
    from dcue_cli.io.atomic import open_text_output

    with open_text_output(path) as out:
        step = 1_000_000
        for start in range(0, len(plays), step):
            u = plays.user_ids[plays.users[start:start + step]]
            i = plays.item_ids[plays.items[start:start + step]]
            c = plays.counts[start:start + step]
            out.write("".join(f"{a}\t{b}\t{n}\n" for a, b, n in zip(u, i, c.tolist())))


class NeedsCheck(Exception):
    """A fast plays reader met something it does not vouch for: the next reader takes over."""


def concatenate_freeing(parts: list) -> np.ndarray:
    """np.concatenate that releases each part once copied: peak ≈ the result plus one part."""
    out = np.empty(sum(len(p) for p in parts), parts[0].dtype)
    at = 0
    for i in range(len(parts)):
        part, parts[i] = parts[i], None
        out[at:at + len(part)] = part
        at += len(part)
        del part
    return out


def _looks_like_header(fields, count_col) -> bool:
    if len(fields) <= count_col:
        return False
    try:
        float(fields[count_col])
        return False
    except ValueError:
        return True


def _file_first_line(path) -> str:
    """The first line of a file (decoded, without its newline), for header detection. A lone CR
    ends a line too (old Mac files), as it does for every reader."""
    with open_binary(path) as stream:
        head = stream.readline(65536).decode("utf-8-sig", errors="replace")
    return re.split(r"\r\n|\r|\n", head, maxsplit=1)[0]


def _detect_header(path, columns, name=None) -> bool:
    first = _file_first_line(path)
    header = _looks_like_header(first.split("\t"), columns[2])
    if header:  # said aloud: a first data line with a bad count would otherwise vanish unnoticed
        log.info("%s:1: skipped as a header line (--header no reads it as data): %r",
                 name or display_name(path), shorten(first))
    return header


def read_plays(
    path,
    *,
    columns: Sequence[int] = (0, 1, 2),
    header: bool | None = None,
    skip_bad: bool = False,
    chunk_rows: int = 2_000_000,
    show_progress: bool = True,
) -> Plays:
    """Read a plays TSV. `columns` are the zero-based positions of user, item and count."""
    _fixed_mmap_threshold()
    if is_stream(path):
        return _read_spooled(path, columns=columns, header=header, skip_bad=skip_bad, chunk_rows=chunk_rows,
                             show_progress=show_progress)
    if header is None:
        header = _detect_header(path, columns)
    return _read_with(choose_readers(columns, header, skip_bad), path, columns=columns, header=header,
                      skip_bad=skip_bad, chunk_rows=chunk_rows, show_progress=show_progress)


def choose_readers(columns, header, skip_bad) -> tuple:
    """The readers to try in turn, by name: "fixed" (numpy), "pandas", then always "checked"."""
    if skip_bad:
        return ("checked",)
    if not header and tuple(columns) == (0, 1, 2):
        return ("fixed", "pandas", "checked")
    return ("pandas", "checked")


def _read_with(readers, path, *, columns, header, skip_bad, chunk_rows, show_progress) -> Plays:
    """Try `readers` (names from `choose_readers`) in turn; the first that vouches for the file wins."""
    from dcue_cli.io.plays_checked import read_checked
    from dcue_cli.io.plays_fixed import read_fixed_width
    from dcue_cli.io.plays_pandas import read_with_pandas

    for reader in readers:
        try:
            if reader == "fixed":
                return read_fixed_width(path, show_progress)
            if reader == "pandas":
                return read_with_pandas(path, columns, header, chunk_rows, show_progress)
        except NeedsCheck:
            log.debug("plays: ids are not fixed-width (or a line is odd); using the general reader"
                      if reader == "fixed" else
                      "plays fast path found a problem; re-reading line by line to locate it")
    return read_checked(path, columns, header, skip_bad)


def is_stream(path) -> bool:
    """True for stdin ('-') and anything else that is not a regular file (a named pipe, `<(cmd)`,
    /dev/stdin): what can be read only once."""
    if str(path) == "-":
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # missing: open_binary says so
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _read_spooled(path, *, columns, header, skip_bad, chunk_rows, show_progress) -> Plays:
    """The header detection and a fast reader that gives up would each read again, and a pipe
    cannot be rewound: copy it once to a temporary file (cheap) and read that."""
    name = display_name(path)
    with (tempfile.NamedTemporaryFile(prefix="dcue-stdin-", suffix=".tsv", delete=False) as tmp,
          open_binary(path) as src):
        shutil.copyfileobj(src, tmp, 1 << 22)
    try:
        if header is None:
            header = _detect_header(tmp.name, columns, name)
        return read_plays(tmp.name, columns=columns, header=header, skip_bad=skip_bad,
                          chunk_rows=chunk_rows, show_progress=show_progress)
    except DcueError as exc:
        raise DcueError(str(exc.message).replace(tmp.name, name)) from None
    finally:
        os.unlink(tmp.name)


def _fixed_mmap_threshold(threshold: int = 256 * 1024) -> None:
    """Have glibc serve large blocks by mmap and give them back when freed.

    Its default threshold grows after each big free, after which the reader's per-block
    temporaries stay in the heap and the process keeps ~1 GB it no longer uses at 48 M rows.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # -3 = M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass

"""Plays TSV (`user_id<TAB>item_id<TAB>count`, the Taste Profile format) into integer codes.

The fast path parses with pandas' C reader in chunks and codes ids through one dict per
side, so the 48 M-row Taste Profile stays within a few GB and a minute or so. Any problem
in the fast path re-reads the file with the plain line reader to name the exact bad line.
"""

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.io.text import display_name, open_binary
from dcue_cli.io.tsv import _shorten, iter_rows

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
            np.minimum(counts, np.iinfo(np.int32).max).astype(np.int32), self.skipped,
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


def _looks_like_header(fields, count_col) -> bool:
    if len(fields) <= count_col:
        return False
    try:
        float(fields[count_col])
        return False
    except ValueError:
        return True


def _first_line(path) -> str:
    with open_binary(path) as stream:
        return stream.readline(65536).decode("utf-8-sig", errors="replace").rstrip("\r\n")


def _detect_header(path, columns, name=None) -> bool:
    first = _first_line(path)
    header = _looks_like_header(first.split("\t"), columns[2])
    if header:  # said aloud: a first data line with a bad count would otherwise vanish unnoticed
        log.info("%s:1: skipped as a header line (--header no reads it as data): %r",
                 name or display_name(path), _shorten(first))
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
    if str(path) == "-":
        # pandas needs to re-read on error, and stdin cannot be rewound: spool it (cheap).
        with (tempfile.NamedTemporaryFile(prefix="dcue-stdin-", suffix=".tsv", delete=False) as tmp,
              open_binary("-") as src):
            shutil.copyfileobj(src, tmp, 1 << 22)
        try:
            if header is None:
                header = _detect_header(tmp.name, columns, "<stdin>")
            plays = read_plays(tmp.name, columns=columns, header=header, skip_bad=skip_bad,
                               chunk_rows=chunk_rows, show_progress=show_progress)
        except DcueError as exc:
            raise DcueError(str(exc.message).replace(tmp.name, "<stdin>")) from None
        finally:
            os.unlink(tmp.name)
        return plays
    if header is None:
        header = _detect_header(path, columns)
    if not skip_bad and not header and tuple(columns) == (0, 1, 2):
        try:
            return _read_fixed_width(path, show_progress)
        except _NeedsCheck:
            log.debug("plays: ids are not fixed-width (or a line is odd); using the general reader")
    if not skip_bad:
        try:
            return _read_fast(path, columns, header, chunk_rows, show_progress)
        except _NeedsCheck:
            log.debug("plays fast path found a problem; re-reading line by line to locate it")
    return _read_checked(path, columns, header, skip_bad)


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


class _NeedsCheck(Exception):
    pass


class _Coder:
    """Maps string ids to dense int codes in order of first appearance."""

    def __init__(self):
        self.codes = {}
        self.ids = []

    def encode(self, values) -> np.ndarray:
        import pandas as pd

        local, uniques = pd.factorize(values)
        table = self.codes
        mapping = np.empty(len(uniques), np.int32)
        for j, key in enumerate(uniques):
            code = table.get(key)
            if code is None:
                code = table[key] = len(self.ids)
                self.ids.append(key)
            mapping[j] = code
        return mapping[local]

    def array(self) -> np.ndarray:
        return np.array(self.ids, dtype=object)


class _HashCoder:
    """Codes fixed-width byte ids through two independent 64-bit hashes.

    Sorting and searching uint64 hashes is far cheaper than hashing Python strings. The
    first hash groups ids; the second must agree within each group and with the id already
    coded, so two ids are merged only if both hashes collide (about 2^-128 per pair); a
    detected collision sends the file to the general reader instead of merging silently.
    """

    def __init__(self, width):
        self.width = width
        self.sorted_hashes = np.empty(0, np.uint64)
        self.sorted_codes = np.empty(0, np.int64)
        self.check = np.empty(0, np.uint64)  # second hash, by code
        self.id_bytes = []  # (k, width) uint8 blocks, in code order
        self.n = 0

    @staticmethod
    def _hashes(matrix):
        n, width = matrix.shape
        padded = np.zeros((n, -(-width // 8) * 8), np.uint8)
        padded[:, :width] = matrix
        words = padded.view(np.uint64)
        h1 = np.full(n, 0xCBF29CE484222325, np.uint64)
        h2 = np.full(n, 0x84222325CBF29CE4, np.uint64)
        with np.errstate(over="ignore"):
            for j in range(words.shape[1]):
                h1 ^= words[:, j]
                h1 *= np.uint64(0x9E3779B97F4A7C15)
                h1 ^= h1 >> np.uint64(29)
                h2 += words[:, j]
                h2 *= np.uint64(0xC2B2AE3D27D4EB4F)
                h2 ^= h2 >> np.uint64(31)
        return h1, h2

    def encode(self, matrix) -> np.ndarray:
        h1, h2 = self._hashes(matrix)
        # Lines are often grouped (the Taste Profile is sorted by user): code runs, not rows.
        heads = np.concatenate([[True], h1[1:] != h1[:-1]])
        run_of_row = np.cumsum(heads) - 1
        head_rows = np.flatnonzero(heads)
        if np.any(h2 != h2[head_rows][run_of_row]):
            raise _NeedsCheck()
        uniq, first, inverse = np.unique(h1[head_rows], return_index=True, return_inverse=True)
        first = head_rows[first]
        if np.any(h2[head_rows] != h2[first][inverse.ravel()]):
            raise _NeedsCheck()
        pos = np.searchsorted(self.sorted_hashes, uniq)
        codes = np.empty(len(uniq), np.int64)
        if len(self.sorted_hashes):
            pos_clipped = np.minimum(pos, len(self.sorted_hashes) - 1)
            known = self.sorted_hashes[pos_clipped] == uniq
            codes[known] = self.sorted_codes[pos_clipped[known]]
            if np.any(self.check[codes[known]] != h2[first[known]]):
                raise _NeedsCheck()
        else:
            known = np.zeros(len(uniq), bool)
        new = np.flatnonzero(~known)
        new = new[np.argsort(first[new], kind="stable")]  # codes in order of first appearance
        codes[new] = self.n + np.arange(len(new))
        self.n += len(new)
        self.id_bytes.append(np.array(matrix[first[new]]))
        self.check = np.concatenate([self.check, h2[first[new]]])
        merged = np.concatenate([self.sorted_hashes, uniq[new]])
        order = np.argsort(merged, kind="stable")
        self.sorted_hashes = merged[order]
        self.sorted_codes = np.concatenate([self.sorted_codes, codes[new]])[order]
        return codes[inverse.ravel()][run_of_row].astype(np.int32)

    def array(self) -> np.ndarray:
        table = np.concatenate(self.id_bytes) if self.id_bytes else np.empty((0, self.width), np.uint8)
        # Sliced from the raw bytes: numpy's S dtype would drop an id's trailing NUL bytes.
        raw, w = np.ascontiguousarray(table).tobytes(), self.width
        return np.array([raw[k:k + w].decode("utf-8", "surrogateescape") for k in range(0, len(raw), w)],
                        dtype=object)


def _read_fixed_width(path, show_progress, block_bytes=1 << 26) -> Plays:
    """Fast path for files whose user ids and item ids each have one width (the Taste Profile).

    Parses whole blocks with numpy: newline and tab positions, fixed-width id matrices,
    digit arithmetic for counts. Anything unusual (CRLF, a header, blank lines, ids of
    varying width, a bad count) raises _NeedsCheck and the general reader takes over.
    """
    users = items = None
    parts_u, parts_i, parts_c = [], [], []
    bar = log.progress(desc=f"reading {os.path.basename(str(path))}", unit="B", unit_scale=True,
                       disable=not show_progress)
    try:
        with open_binary(path) as stream:
            leftover = b""
            if stream.peek(3)[:3] == b"\xef\xbb\xbf":  # a BOM is not part of the first user id
                stream.read(3)
            while True:
                block = stream.read(block_bytes)
                if not block:
                    if leftover:
                        block, leftover = leftover + b"\n", b""
                    else:
                        break
                else:
                    block = leftover + block
                    cut = block.rfind(b"\n") + 1
                    block, leftover = block[:cut], block[cut:]
                    if not block:
                        continue
                bar.update(len(block))
                # Zero padding lets the count window of the last line run past its newline.
                arr = np.frombuffer(block + bytes(16), np.uint8)
                nl = np.flatnonzero(arr == 10)
                tabs = np.flatnonzero(arr == 9)
                if len(tabs) != 2 * len(nl):
                    raise _NeedsCheck()
                starts = np.concatenate([[0], nl[:-1] + 1])
                t1, t2 = tabs[0::2], tabs[1::2]
                if not (np.all(t1 > starts) and np.all(t2 < nl - 1) and np.all(t2 > t1 + 1)):
                    raise _NeedsCheck()
                ulen, ilen, clen = t1 - starts, t2 - t1 - 1, nl - t2 - 1
                if users is None:
                    users, items = _HashCoder(int(ulen[0])), _HashCoder(int(ilen[0]))
                if np.any(ulen != users.width) or np.any(ilen != items.width) or clen.max() > 9:
                    raise _NeedsCheck()
                # Gather fixed-width ids through a window view: no (rows x width) index matrix.
                parts_u.append(users.encode(sliding_window_view(arr, users.width)[starts]))
                parts_i.append(items.encode(sliding_window_view(arr, items.width)[t1 + 1]))
                width = int(clen.max())
                valid = np.arange(width) < clen[:, None]
                digits = sliding_window_view(arr, width)[t2 + 1].astype(np.int64) - 48
                if np.any(valid & ((digits < 0) | (digits > 9))):
                    raise _NeedsCheck()
                power = np.where(valid, 10 ** np.maximum(clen[:, None] - 1 - np.arange(width), 0), 0)
                counts = (np.where(valid, digits, 0) * power).sum(axis=1)
                if np.any(counts < 1) or np.any(counts >= 2**31):
                    raise _NeedsCheck()
                parts_c.append(counts.astype(np.int32))
    finally:
        bar.close()
    if not parts_u:
        raise _NeedsCheck()
    return Plays(users.array(), items.array(), _concatenate_freeing(parts_u), _concatenate_freeing(parts_i),
                 _concatenate_freeing(parts_c))


def _concatenate_freeing(parts: list) -> np.ndarray:
    """np.concatenate that releases each part once copied: peak ≈ the result plus one part."""
    out = np.empty(sum(len(p) for p in parts), parts[0].dtype)
    at = 0
    for i in range(len(parts)):
        part, parts[i] = parts[i], None
        out[at:at + len(part)] = part
        at += len(part)
        del part
    return out


def _read_fast(path, columns, header, chunk_rows, show_progress) -> Plays:
    import csv

    import pandas as pd

    ucol, icol, ccol = columns
    # With the default layout every line must have exactly 3 fields: read all of them so an
    # extra field is caught (usecols would silently drop it).
    exact = tuple(columns) == (0, 1, 2)
    users, items = _Coder(), _Coder()
    parts_u, parts_i, parts_c = [], [], []
    bar = log.progress(desc=f"reading {os.path.basename(str(path))}", unit=" rows", unit_scale=True,
                       disable=not show_progress)
    try:
        with open_binary(path) as stream:
            reader = pd.read_csv(
                stream, sep="\t", header=0 if header else None, usecols=None if exact else [ucol, icol, ccol],
                dtype={ucol: str, icol: str, ccol: "float64"} if not header else None,
                na_filter=False, engine="c", quoting=csv.QUOTE_NONE, chunksize=chunk_rows,
                encoding="utf-8-sig", encoding_errors="surrogateescape",
            )
            for chunk in reader:
                cols = chunk.columns
                if exact and len(cols) != 3:
                    raise _NeedsCheck()
                if header:
                    # Column names come from the header line: address by position.
                    by_pos = {pos: cols[sorted(columns).index(pos)] for pos in columns}
                    u, i, c = chunk[by_pos[ucol]], chunk[by_pos[icol]], chunk[by_pos[ccol]]
                    u, i = u.astype(str), i.astype(str)
                    c = pd.to_numeric(c, errors="raise").astype("float64")
                else:
                    u, i, c = chunk[ucol], chunk[icol], chunk[ccol]
                c = c.to_numpy()
                if not (np.all(c >= 1) and np.all(c == np.floor(c)) and np.all(c < 2**31)):
                    raise _NeedsCheck()
                if (u.str.len() == 0).any() or (i.str.len() == 0).any():
                    raise _NeedsCheck()
                parts_u.append(users.encode(u.to_numpy()))
                parts_i.append(items.encode(i.to_numpy()))
                parts_c.append(c.astype(np.int32))
                bar.update(len(chunk))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, TypeError, KeyError, IndexError):
        raise _NeedsCheck() from None
    finally:
        bar.close()
    if not sum(len(p) for p in parts_u):
        raise _NeedsCheck()  # empty (or a header alone): the checked reader says so precisely
    return Plays(users.array(), items.array(), _concatenate_freeing(parts_u), _concatenate_freeing(parts_i),
                 _concatenate_freeing(parts_c))


def _read_checked(path, columns, header, skip_bad) -> Plays:
    """Line-by-line reader: exact `file:line` errors, or counted skips with --skip-bad."""
    name = display_name(path)
    ucol, icol, ccol = columns
    explicit = tuple(columns) != (0, 1, 2)
    need = max(columns) + 1
    users, items = {}, {}
    u_codes, i_codes, counts = [], [], []
    skipped = 0
    shown = 0
    rows = iter_rows(path, min_fields=1, header=header, what="plays TSV")
    for lineno, fields in rows:
        problem = None
        if len(fields) < need or (not explicit and len(fields) != 3):
            problem = (f"expected {'at least ' + str(need) if explicit else 3} tab-separated fields, "
                       f"found {len(fields)}")
        else:
            # Ids verbatim, as the fast paths read them: the same file gives the same ids either way.
            user, item, text = fields[ucol], fields[icol], fields[ccol].strip()
            if not user or not item:
                problem = "empty user or item id"
            else:
                try:
                    value = float(text)
                    ok = value >= 1 and value == int(value) and value < 2**31
                except (ValueError, OverflowError):
                    ok = False
                if not ok:
                    problem = f"count {text!r} is not a positive integer"
        if problem:
            if not skip_bad:
                raise DcueError(f"{name}:{lineno}: {problem}: {_shorten(chr(9).join(fields))!r}{PLAYS_FIX}")
            skipped += 1
            if shown < 3:
                log.debug("%s:%d: skipped: %s", name, lineno, problem)
                shown += 1
            continue
        u_codes.append(users.setdefault(user, len(users)))
        i_codes.append(items.setdefault(item, len(items)))
        counts.append(int(value))
    if not counts:
        raise DcueError(f"{name} has no plays{' (every line was bad)' if skipped else ''}: "
                        "expected lines of user_id<TAB>item_id<TAB>count.")
    if skipped:
        log.warning("%s: skipped %d bad line%s (--skip-bad)", name, skipped, "" if skipped == 1 else "s")
    return Plays(np.array(list(users), dtype=object), np.array(list(items), dtype=object),
                 np.array(u_codes, np.int32), np.array(i_codes, np.int32), np.array(counts, np.int32),
                 skipped)

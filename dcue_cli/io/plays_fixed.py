"""The fastest plays reader: files whose user ids and item ids each have one width (the Taste Profile).

Parses whole blocks with numpy: newline and tab positions, fixed-width id matrices, digit
arithmetic for counts; ids are coded through two 64-bit hashes. Anything unusual (CRLF, a
header, blank lines, ids of varying width, a bad count, a NUL byte) raises `NeedsCheck` and the next reader
of `dcue_cli.io.plays.read_plays` takes over.
"""

import os

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dcue_cli import log
from dcue_cli.io.plays import NeedsCheck, Plays, concatenate_freeing
from dcue_cli.io.text import open_binary


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
            raise NeedsCheck()
        uniq, first, inverse = np.unique(h1[head_rows], return_index=True, return_inverse=True)
        first = head_rows[first]
        if np.any(h2[head_rows] != h2[first][inverse.ravel()]):
            raise NeedsCheck()
        codes, known = self._known_codes(uniq, h2[first])
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

    def _known_codes(self, uniq, second):
        """Codes of the hashes `uniq` already coded (their second hash must agree), and which are."""
        codes = np.empty(len(uniq), np.int64)
        if not len(self.sorted_hashes):
            return codes, np.zeros(len(uniq), bool)
        pos = np.minimum(np.searchsorted(self.sorted_hashes, uniq), len(self.sorted_hashes) - 1)
        known = self.sorted_hashes[pos] == uniq
        codes[known] = self.sorted_codes[pos[known]]
        if np.any(self.check[codes[known]] != second[known]):
            raise NeedsCheck()
        return codes, known

    def array(self) -> np.ndarray:
        table = np.concatenate(self.id_bytes) if self.id_bytes else np.empty((0, self.width), np.uint8)
        # Sliced from the raw bytes: numpy's S dtype would drop an id's trailing NUL bytes.
        raw, w = np.ascontiguousarray(table).tobytes(), self.width
        return np.array([raw[k:k + w].decode("utf-8", "surrogateescape") for k in range(0, len(raw), w)],
                        dtype=object)


def _whole_line_blocks(stream, block_bytes):
    """Blocks of about `block_bytes` that end at a newline (the last line given one)."""
    leftover = b""
    if stream.peek(3)[:3] == b"\xef\xbb\xbf":  # a BOM is not part of the first user id
        stream.read(3)
    while True:
        block = stream.read(block_bytes)
        if not block:
            if leftover:
                yield leftover + b"\n"
            return
        block = leftover + block
        cut = block.rfind(b"\n") + 1
        block, leftover = block[:cut], block[cut:]
        if block:
            yield block


def _counts(arr, t2, nl, clen) -> np.ndarray:
    """The count field of each line, by digit arithmetic: positive int32 or NeedsCheck."""
    width = int(clen.max())
    valid = np.arange(width) < clen[:, None]
    digits = sliding_window_view(arr, width)[t2 + 1].astype(np.int64) - 48
    if np.any(valid & ((digits < 0) | (digits > 9))):
        raise NeedsCheck()
    power = np.where(valid, 10 ** np.maximum(clen[:, None] - 1 - np.arange(width), 0), 0)
    counts = (np.where(valid, digits, 0) * power).sum(axis=1)
    if np.any(counts < 1) or np.any(counts >= 2**31):
        raise NeedsCheck()
    return counts.astype(np.int32)


def _parse_block(block, coders):
    """(user codes, item codes, counts) of one block of whole lines; `coders` is [users, items]."""
    if b"\x00" in block:  # an id no HDF5 output can hold: the checked reader names the line
        raise NeedsCheck()
    # Zero padding lets the count window of the last line run past its newline.
    arr = np.frombuffer(block + bytes(16), np.uint8)
    nl = np.flatnonzero(arr == 10)
    tabs = np.flatnonzero(arr == 9)
    if len(tabs) != 2 * len(nl):
        raise NeedsCheck()
    starts = np.concatenate([[0], nl[:-1] + 1])
    t1, t2 = tabs[0::2], tabs[1::2]
    if not (np.all(t1 > starts) and np.all(t2 < nl - 1) and np.all(t2 > t1 + 1)):
        raise NeedsCheck()
    ulen, ilen, clen = t1 - starts, t2 - t1 - 1, nl - t2 - 1
    if coders[0] is None:
        coders[:] = _HashCoder(int(ulen[0])), _HashCoder(int(ilen[0]))
    users, items = coders
    if np.any(ulen != users.width) or np.any(ilen != items.width) or clen.max() > 9:
        raise NeedsCheck()
    # Gather fixed-width ids through a window view: no (rows x width) index matrix.
    return (users.encode(sliding_window_view(arr, users.width)[starts]),
            items.encode(sliding_window_view(arr, items.width)[t1 + 1]),
            _counts(arr, t2, nl, clen))


def read_fixed_width(path, show_progress: bool = True, block_bytes: int = 1 << 26) -> Plays:
    """Plays of a file whose ids each have one width, or NeedsCheck when the file is not so simple."""
    coders = [None, None]
    parts = ([], [], [])
    bar = log.progress(desc=f"reading {os.path.basename(str(path))}", unit="B", unit_scale=True,
                       disable=not show_progress)
    try:
        with open_binary(path) as stream:
            for block in _whole_line_blocks(stream, block_bytes):
                bar.update(len(block))
                for part, codes in zip(parts, _parse_block(block, coders)):
                    part.append(codes)
    finally:
        bar.close()
    if not parts[0]:
        raise NeedsCheck()
    users, items = coders
    return Plays(users.array(), items.array(), *(concatenate_freeing(p) for p in parts))

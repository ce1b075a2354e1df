"""The general fast plays reader: pandas' C parser in chunks, any columns, with or without a header.

Ids are coded through one dict per side, so the 48 M-row Taste Profile stays within a few GB.
Anything it cannot vouch for (a bad count, an empty id, a line with the wrong number of fields)
raises `NeedsCheck`, and the line-by-line reader re-reads the file to name the exact bad line.
"""

import os

import numpy as np

from dcue_cli import log
from dcue_cli.io.plays import NeedsCheck, Plays, concatenate_freeing
from dcue_cli.io.text import open_binary


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
                if "\x00" in key:  # an id no HDF5 output can hold: the checked reader names the line
                    raise NeedsCheck()
                code = table[key] = len(self.ids)
                self.ids.append(key)
            mapping[j] = code
        return mapping[local]

    def array(self) -> np.ndarray:
        return np.array(self.ids, dtype=object)


def _chunk_fields(chunk, columns, header, exact):
    """(user ids, item ids, counts as float64 numpy) of one chunk, or NeedsCheck."""
    import pandas as pd

    ucol, icol, ccol = columns
    cols = chunk.columns
    if exact and len(cols) != 3:
        raise NeedsCheck()
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
        raise NeedsCheck()
    if (u.str.len() == 0).any() or (i.str.len() == 0).any():
        raise NeedsCheck()
    return u, i, c


def read_with_pandas(path, columns, header, chunk_rows: int = 2_000_000, show_progress: bool = True) -> Plays:
    """Plays of `path` (fields at `columns`; `header` True skips the first line), or NeedsCheck."""
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
                u, i, c = _chunk_fields(chunk, columns, header, exact)
                parts_u.append(users.encode(u.to_numpy()))
                parts_i.append(items.encode(i.to_numpy()))
                parts_c.append(c.astype(np.int32))
                bar.update(len(chunk))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, TypeError, KeyError, IndexError):
        raise NeedsCheck() from None
    finally:
        bar.close()
    if not sum(len(p) for p in parts_u):
        raise NeedsCheck()  # empty (or a header alone): the checked reader says so precisely
    return Plays(users.array(), items.array(), concatenate_freeing(parts_u), concatenate_freeing(parts_i),
                 concatenate_freeing(parts_c))

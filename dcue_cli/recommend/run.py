"""`run_recommend`: the top -k items for every requested user, as TSV rows streamed to a stream.

Everything that can be wrong with the input (ids, plays, vectors) is checked before the first
row is written, so an error never leaves half an output behind.
"""

import time

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.io.embeddings import refuse_non_finite, refuse_overflow
from dcue_cli.recommend.topk import (
    catalogue,
    chunk_users,
    exclusion_columns,
    iter_topk,
)

SPLIT_NAMES = ("train", "valid", "test")
HEADER = ("user", "rank", "item", "score")


def candidate_rows(emb, items: str | None, splits: str | None) -> tuple:
    """(positions of the items to rank, a note): all, a split of --splits, or the ids of a file."""
    if items in (None, "all"):
        return np.arange(len(emb.item_ids)), f"all {len(emb.item_ids):,} items"
    if items in SPLIT_NAMES:
        from dcue_cli.io.splits import read_splits

        wanted = {i for i, s in read_splits(splits).items() if s == items}
        where = f"the {items} split of {splits}"
    else:
        from dcue_cli.io.idmap import read_id_list

        wanted = set(read_id_list(items, "--items"))
        where = str(items)
        if not wanted:
            raise DcueError(f"{items} lists no item id: give one id per line (e.g. from `dcue embed`'s items).")
    rows = np.flatnonzero(np.fromiter((i in wanted for i in emb.item_ids), bool, len(emb.item_ids)))
    if not len(rows):
        raise DcueError(f"none of the {len(wanted):,} items of {where} has a vector in {emb.path}: embed them "
                        "first (`dcue embed MODEL new-mels.h5`), or check the ids.")
    if len(rows) < len(wanted):
        log.warning("%s of the %s items of %s have no vector in %s: left out", f"{len(wanted) - len(rows):,}",
                    f"{len(wanted):,}", where, emb.path)
    return rows, f"{len(rows):,} items of {where}"


def requested_users(emb, users_path: str | None, fold_plays) -> list:
    """The user ids to recommend for, in order, each once."""
    if users_path is None:
        ids = list(emb.user_ids if emb.user_ids is not None else [])
        if fold_plays is not None:
            ids += [str(u) for u in fold_plays.user_ids]
        where = f"{emb.path}" + (" and --plays" if fold_plays is not None else "")
    else:
        from dcue_cli.io.idmap import read_id_list

        ids = read_id_list(users_path, "--users")
        where = "<stdin>" if users_path == "-" else str(users_path)
    unique = list(dict.fromkeys(ids))
    if not unique:
        raise DcueError(f"{where} lists no user id: give one user id per line (`-` reads them from stdin).")
    if len(unique) < len(ids):
        log.info("%s repeated user ids of %s recommended for once", f"{len(ids) - len(unique):,}", where)
    return unique


def item_lists(plays, users: list, item_row: dict, note: str = "") -> dict:
    """{user: (item positions in the embeddings, counts)} of `plays`, items without a vector dropped."""
    code = {u: c for c, u in enumerate(plays.user_ids)}
    wanted = np.array([code.get(u, -1) for u in users], np.int64)
    sel = np.zeros(plays.n_users, bool)
    sel[wanted[wanted >= 0]] = True
    rows = np.flatnonzero(sel[plays.users])
    pos = np.array([item_row.get(str(i), -1) for i in plays.item_ids], np.int64)
    u, it, c = plays.users[rows], pos[plays.items[rows]], plays.counts[rows]
    keep = it >= 0
    if note and not keep.all():
        log.info("%s plays of %s are of items without a vector in the file: not used", f"{(~keep).sum():,}", note)
    u, it, c = u[keep], it[keep], c[keep]
    order = np.argsort(u, kind="stable")
    u, it, c = u[order], it[order], c[order]
    bounds = np.searchsorted(u, np.arange(plays.n_users + 1))
    return {str(plays.user_ids[x]): (it[bounds[x]:bounds[x + 1]], c[bounds[x]:bounds[x + 1]])
            for x in np.flatnonzero(sel)}


def user_vectors(emb, users: list, fold_plays, *, skip_unknown: bool, fold_method, wmf_options) -> tuple:
    """(the users kept, their vectors, counts) with new users of --plays folded in."""
    from dcue_cli.recommend.foldin import fold_in

    known = emb.user_index()
    new_users = [u for u in users if u not in known]
    folded = item_lists(fold_plays, new_users, emb.item_index(), "the new users") if fold_plays else {}
    kept, unknown, new = [], [], []
    for u in users:
        if u in known:
            kept.append(u)
        elif u in folded and len(folded[u][0]):
            kept.append(u)
            new.append(u)
        else:
            unknown.append(u)
    if unknown and not skip_unknown:
        first = unknown[0]
        if first in folded:  # in --plays, but none of its plays is of an item with a vector
            raise DcueError(f"user {first!r} is not in {emb.path}, and none of its plays in --plays is of an item "
                            f"of {emb.path} ({len(unknown):,} of the {len(users):,} users cannot be folded in): "
                            "are the plays and the embeddings of the same songs? (--skip-unknown leaves such "
                            "users out).")
        where = " nor in --plays" if fold_plays is not None else ""
        raise DcueError(f"user {first!r} is not in {emb.path}{where} ({len(unknown):,} of the {len(users):,} "
                        "users are unknown): give --plays with their plays to fold them in, or --skip-unknown "
                        "to leave them out.")
    if unknown:
        log.warning("%s unknown users skipped (--skip-unknown), e.g. %r", f"{len(unknown):,}", unknown[0])
    if not kept:
        raise DcueError("no user is left to recommend for: every one is unknown to the model.")
    vectors = np.zeros((len(kept), emb.item_vectors.shape[1]), np.float32)
    old = [i for i, u in enumerate(kept) if u in known]
    if old:
        vectors[old] = emb.user_vectors[[known[kept[i]] for i in old]]
    how = ""
    if new:
        fresh, how = fold_in(emb, [folded[u] for u in new], method=fold_method, **wmf_options)
        vectors[[i for i, u in enumerate(kept) if u not in known]] = fresh
        log.info("folded in %s new users from --plays by %s", f"{len(new):,}", how)
    return kept, vectors, {"known": len(old), "folded_in": len(new), "skipped": len(unknown), "fold_in": how}


def _read(path, read_opts, cache):
    from dcue_cli.io.plays import read_plays

    if path not in cache:
        cache[path] = read_plays(path, show_progress=False, **read_opts)
    return cache[path]


def run_recommend(embeddings, out, *, users=None, k=10, exclude_played=None, items=None, splits=None, plays=None,
                  id_map=None, fold_method=None, wmf_options=None, read_opts=None, device="auto",
                  skip_unknown=False, chunk=None) -> dict:
    """Write `user, rank, item, score[, artist, title]` rows to the text stream `out`; return a report."""
    from dcue_cli.io.embeddings import read_embeddings
    from dcue_cli.runtime import torch_device

    if k < 1:
        raise DcueError(f"-k {k}: give a positive number of items.")
    start = time.perf_counter()
    cache, read_opts = {}, read_opts or {}
    emb = read_embeddings(embeddings)
    if emb.user_ids is None and plays is None:
        raise DcueError(f"{emb.path} has no user vectors: give --plays to fold users in from their plays, or a file "
                        "written by `dcue wmf` or `dcue embed` with users.")
    fold_plays = _read(plays, read_opts, cache) if plays else None
    names = requested_users(emb, users, fold_plays)
    kept, vectors, counts = user_vectors(emb, names, fold_plays, skip_unknown=skip_unknown,
                                         fold_method=fold_method, wmf_options=wmf_options or {})
    rows, what = candidate_rows(emb, items, splits)
    refuse_non_finite(emb.path, emb.item_vectors[rows], emb.item_ids[rows], "item")
    refuse_non_finite(emb.path, vectors, np.array(kept, object), "user")
    refuse_overflow(emb.path, vectors, emb.item_vectors[rows])
    played = None
    if exclude_played:
        lists = item_lists(_read(exclude_played, read_opts, cache), kept, emb.item_index())
        played = [lists[u][0] if u in lists else np.empty(0, np.int64) for u in kept]
    titles = _titles(id_map)
    dev = torch_device(device)
    cat = catalogue(emb.item_vectors, emb.similarity == "cosine", rows, dev)
    log.info("recommending the top %d of %s for %s users on the %s (%s similarity)", k, what, f"{len(kept):,}",
             "GPU" if dev.type == "cuda" else "CPU", emb.similarity)
    written = _stream(out, cat, emb.item_ids, kept, vectors, played, k, titles, chunk)
    seconds = time.perf_counter() - start
    return dict(counts, users=len(kept), candidates=cat.size, rows=written, k=k, seconds=seconds,
                device=str(dev), similarity=emb.similarity)


def _titles(id_map):
    if not id_map:
        return None
    from dcue_cli.io.idmap import read_id_map
    from dcue_cli.recommend.queries import titles_from_id_map

    return titles_from_id_map(read_id_map(id_map))


def _stream(out, cat, item_ids, users, vectors, played, k, titles, chunk) -> int:
    out.write("\t".join(HEADER + (("artist", "title") if titles is not None else ())) + "\n")
    excluded = None
    written = 0
    bar = log.progress(total=len(users), desc="recommending", unit=" users", unit_scale=True)
    step = chunk or chunk_users(cat)
    for first in range(0, len(users), step):
        if played is not None:
            excluded = exclusion_columns(cat, played[first:first + step])
        for _, ranked in iter_topk(cat, vectors[first:first + step], k, excluded, chunk=step):
            lines = []
            for user, (positions, values) in zip(users[first:first + step], ranked):
                for r, (p, v) in enumerate(zip(positions, values), 1):
                    fields = f"{user}\t{r}\t{item_ids[p]}\t{v:.6g}"
                    if titles is not None:
                        fields += "\t" + "\t".join(titles.get(str(item_ids[p]), ("", "")))
                    lines.append(fields)
            written += len(lines)
            if lines:
                out.write("\n".join(lines) + "\n")
            out.flush()
        bar.update(len(ranked))
    bar.close()
    return written

"""Property-based tests (hypothesis): the TSV readers and the metrics, on inputs nobody wrote by hand.

Readers: what `write_plays`/`write_splits` write reads back unchanged, through every path of the
plays reader (numpy fixed-width, pandas, line by line) and whatever the line endings, BOM or blank
lines; and any bytes at all either read or fail with a one-line DcueError, never another exception.
Metrics: AUC is invariant to strictly increasing transforms of the scores, equals sklearn's with
ties, and 1 - AUC of the reversed scores; every ranking metric stays within its bounds.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dcue_cli.errors import DcueError
from dcue_cli.io.plays import read_plays, write_plays
from dcue_cli.io.idmap import read_id_map
from dcue_cli.io.tags import read_tags
from dcue_cli.io.tsv import read_splits, write_splits
from dcue_cli.metrics import auc_per_user, per_user_metrics

# Each example writes a file under tmp_path: the function-scoped fixture is shared on purpose.
FILES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FAST = settings(max_examples=60, deadline=None)

# An id: any text without the separators (tab, newline) and not empty; surrogate escapes stand
# for undecodable bytes (a Latin-1 file read as UTF-8) and must survive a round trip as bytes.
ID_CHARS = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\t\n\r\x0b\x0c\x1c\x1d\x1e\x85"
                         "\u2028\u2029\ufeff")
ids = st.one_of(
    st.text(ID_CHARS, min_size=1, max_size=12),
    st.binary(min_size=1, max_size=8).map(lambda b: b.replace(b"\t", b"_").replace(b"\n", b"_")
                                          .replace(b"\r", b"_").decode("utf-8", "surrogateescape")),
).filter(lambda s: s.strip() != "" and not s.startswith(("\ufeff", "\x1f")))  # not a BOM, nor gzip's magic
counts = st.integers(min_value=1, max_value=2**31 - 1)
rows = st.lists(st.tuples(ids, ids, counts), min_size=1, max_size=30)


def _rows_of(plays):
    return sorted(zip(plays.user_ids[plays.users].tolist(), plays.item_ids[plays.items].tolist(),
                      plays.counts.tolist()))


def _as_plays(triples):
    from dcue_cli.io.plays import Plays

    users, items = {}, {}
    u = [users.setdefault(a, len(users)) for a, _, _ in triples]
    i = [items.setdefault(b, len(items)) for _, b, _ in triples]
    return Plays(np.array(list(users), dtype=object), np.array(list(items), dtype=object),
                 np.array(u, np.int32), np.array(i, np.int32), np.array([c for _, _, c in triples], np.int32))


# ----------------------------------------------------------------------------- plays TSV


@FILES
@given(triples=rows, skip_bad=st.booleans())
def test_plays_written_then_read_are_the_same_rows(tmp_path, triples, skip_bad):
    path = tmp_path / "plays.tsv"
    write_plays(path, _as_plays(triples))
    got = read_plays(path, skip_bad=skip_bad, show_progress=False)  # skip_bad: the line-by-line path
    assert _rows_of(got) == sorted(triples)
    assert got.skipped == 0


@FILES
@given(n_users=st.integers(1, 20), n_items=st.integers(1, 20), width=st.integers(1, 12), data=st.data())
def test_fixed_width_ids_take_the_numpy_path_and_agree_with_the_line_reader(tmp_path, n_users, n_items, width,
                                                                             data):
    alphabet = st.sampled_from("abcdefXYZ0123456789")
    user_ids = data.draw(st.lists(st.text(alphabet, min_size=width, max_size=width), min_size=n_users,
                                  max_size=n_users, unique=True))
    item_ids = data.draw(st.lists(st.text(alphabet, min_size=width, max_size=width), min_size=n_items,
                                  max_size=n_items, unique=True))
    triples = data.draw(st.lists(st.tuples(st.sampled_from(user_ids), st.sampled_from(item_ids),
                                           st.integers(1, 999_999_999)), min_size=1, max_size=40))
    path = tmp_path / "plays.tsv"
    path.write_text("".join(f"{u}\t{i}\t{c}\n" for u, i, c in triples))
    fast = read_plays(path, show_progress=False)
    checked = read_plays(path, skip_bad=True, show_progress=False)
    assert _rows_of(fast) == _rows_of(checked) == sorted(triples)
    assert list(fast.user_ids) == list(checked.user_ids)  # codes in order of first appearance, both ways
    assert list(fast.item_ids) == list(checked.item_ids)


@FILES
@given(triples=rows, crlf=st.booleans(), bom=st.booleans(), blanks=st.lists(st.integers(0, 40), max_size=4),
       gz=st.booleans())
def test_line_endings_bom_blank_lines_and_gzip_do_not_change_what_is_read(tmp_path, triples, crlf, bom, blanks,
                                                                          gz):
    import gzip

    lines = [f"{u}\t{i}\t{c}" for u, i, c in triples]
    for at in sorted(blanks, reverse=True):
        lines.insert(min(at, len(lines)), "")
    newline = "\r\n" if crlf else "\n"
    data = ("\ufeff" if bom else "") + newline.join(lines) + newline
    raw = data.encode("utf-8", "surrogateescape")
    path = tmp_path / ("plays.tsv.gz" if gz else "plays.tsv")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    got = read_plays(path, header=False, show_progress=False)
    assert _rows_of(got) == sorted(triples)


@FILES
@given(data=st.binary(max_size=300), skip_bad=st.booleans(), header=st.sampled_from([None, True, False]))
def test_any_bytes_are_read_or_refused_in_one_line(tmp_path, data, skip_bad, header):
    path = tmp_path / "plays.tsv"
    path.write_bytes(data)
    try:
        plays = read_plays(path, header=header, skip_bad=skip_bad, show_progress=False)
    except DcueError as exc:
        assert "\n" not in exc.message and exc.message.startswith(str(path))
        return
    assert len(plays) > 0 and np.all(plays.counts >= 1)
    assert plays.users.max() < plays.n_users and plays.items.max() < plays.n_items


@FILES
@given(lines=st.lists(st.tuples(st.text(st.sampled_from("ab1\t x"), max_size=6),
                                st.sampled_from(["1", "2", "0", "-3", "2.5", "x", "", "1e3", " 4 "])),
                      min_size=1, max_size=15))
def test_skip_bad_keeps_exactly_the_good_lines(tmp_path, lines):
    """With --skip-bad, a line is kept iff it has three fields, two non-empty ids and a count >= 1."""
    text = "".join(f"{ids}\t{count}\n" for ids, count in lines)
    path = tmp_path / "plays.tsv"
    path.write_text(text)
    expected = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if len(fields) != 3 or not fields[0] or not fields[1]:
            continue
        try:
            value = float(fields[2])
        except ValueError:
            continue
        if value >= 1 and value == int(value) and value < 2**31:
            expected.append((fields[0], fields[1], int(value)))
    try:
        got = read_plays(path, header=False, skip_bad=True, show_progress=False)
    except DcueError as exc:
        assert not expected and "has no plays" in exc.message
        return
    assert _rows_of(got) == sorted(expected)
    assert got.skipped == sum(1 for raw in text.splitlines() if raw.strip()) - len(expected)


# ----------------------------------------------------------------------------- splits, tags, id map


@FILES
@given(splits=st.dictionaries(ids, st.sampled_from(["train", "valid", "test"]), min_size=1, max_size=30))
def test_splits_written_then_read_are_the_same(tmp_path, splits):
    path = tmp_path / "splits.tsv"
    write_splits(path, splits)
    assert read_splits(path) == splits


@FILES
@given(rows=st.lists(st.tuples(ids, ids, st.integers(0, 100)), min_size=1, max_size=30),
       crlf=st.booleans(), bom=st.booleans())
def test_tags_read_back_whatever_the_line_endings(tmp_path, rows, crlf, bom):
    newline = "\r\n" if crlf else "\n"
    text = ("\ufeff" if bom else "") + "".join(f"{i}\t{t}\t{w}{newline}" for i, t, w in rows)
    path = tmp_path / "tags.tsv"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    items, tags, weights = read_tags(path)
    assert list(zip(items, tags, weights)) == [(i, t.strip(), float(w)) for i, t, w in rows]


@FILES
@given(data=st.binary(max_size=300), reader=st.sampled_from(["splits", "tags", "id_map"]))
def test_other_readers_read_or_refuse_any_bytes_in_one_line(tmp_path, data, reader):
    path = tmp_path / "file.tsv"
    path.write_bytes(data)
    read = {"splits": read_splits, "tags": read_tags, "id_map": read_id_map}[reader]
    try:
        read(path)
    except DcueError as exc:
        assert "\n" not in exc.message and exc.message.startswith(str(path))


# ----------------------------------------------------------------------------- metrics

# Small integer scores: many ties, and strictly increasing maps keep distinct values distinct.
score_rows = st.integers(1, 6).flatmap(lambda n_users: st.integers(2, 25).flatmap(lambda n_items: st.tuples(
    arrays(np.int64, (n_users, n_items), elements=st.integers(-5, 5)),
    arrays(np.bool_, (n_users, n_items)),
)))
MONOTONE = {
    "affine": lambda x: 3.5 * x + 7.0,
    "cube": lambda x: x.astype(np.float64) ** 3,
    "exp": lambda x: np.exp(x / 2.0),
    "rank": lambda x: np.unique(x, return_inverse=True)[1].reshape(x.shape).astype(np.float64),
}


@FAST
@given(sp=score_rows, transform=st.sampled_from(sorted(MONOTONE)))
def test_metrics_are_invariant_to_strictly_increasing_transforms(sp, transform):
    scores, positives = sp
    before = per_user_metrics(scores.astype(np.float64), positives, ks=(1, 3, 10))
    after = per_user_metrics(MONOTONE[transform](scores), positives, ks=(1, 3, 10))
    for name in before:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=name)


@FAST
@given(sp=score_rows)
def test_auc_equals_sklearn_with_ties_and_reverses(sp):
    from sklearn.metrics import roc_auc_score

    scores, positives = sp
    auc = auc_per_user(scores.astype(np.float64), positives)
    for row in range(len(scores)):
        if positives[row].all() or not positives[row].any():
            assert np.isnan(auc[row])
            continue
        assert auc[row] == pytest.approx(roc_auc_score(positives[row], scores[row]), abs=1e-12)
    reversed_auc = auc_per_user(-scores.astype(np.float64), positives)
    defined = ~np.isnan(auc)
    np.testing.assert_allclose(reversed_auc[defined], 1 - auc[defined], atol=1e-12)


@FAST
@given(sp=score_rows, ks=st.lists(st.integers(1, 30), min_size=1, max_size=3, unique=True),
       candidates=st.none() | st.integers(0, 2**32 - 1))
def test_ranking_metrics_stay_within_their_bounds(sp, ks, candidates):
    scores, positives = sp
    mask = None
    if candidates is not None:
        mask = np.random.default_rng(candidates).random(scores.shape) < 0.7
    got = per_user_metrics(scores.astype(np.float64), positives, mask, ks=ks)
    pos = positives if mask is None else positives & mask
    n_cand = np.full(len(scores), scores.shape[1]) if mask is None else mask.sum(axis=1)
    n_pos = pos.sum(axis=1)
    defined = (n_pos > 0) & (n_cand - n_pos > 0)
    for name, values in got.items():
        assert np.all(np.isnan(values[~defined])), name
        v = values[defined]
        assert np.all((v >= -1e-12) & (v <= 1 + 1e-12)), (name, v)
    eps = 1e-9
    for k in ks:
        # precision@k can reach at most (positives among the first k) / k
        assert np.all(got[f"precision@{k}"][defined] <= np.minimum(n_pos, k)[defined] / k + eps)
        # recall@k is the share of positives among the first k: at least 1 when all fit
        assert np.all(got[f"recall@{k}"][defined] * n_pos[defined] <= np.minimum(n_pos, k)[defined] + eps)
        full = defined & (k >= n_cand)
        np.testing.assert_allclose(got[f"recall@{k}"][full], 1.0)


@FAST
@given(sp=score_rows)
def test_a_perfect_ranking_scores_one_and_all_ties_score_the_random_baseline(sp):
    _, positives = sp
    perfect = per_user_metrics(positives.astype(np.float64), positives, ks=(5,))
    ties = per_user_metrics(np.zeros(positives.shape), positives, ks=(5,))
    n_pos = positives.sum(axis=1)
    defined = (n_pos > 0) & (n_pos < positives.shape[1])
    for name in ("auc", "ndcg@5", "map@5"):
        np.testing.assert_allclose(perfect[name][defined], 1.0, err_msg=name)
    np.testing.assert_allclose(ties["auc"][defined], 0.5)
    np.testing.assert_allclose(ties["precision@5"][defined],
                               (n_pos / positives.shape[1])[defined] * np.minimum(5, positives.shape[1]) / 5)


@FAST
@given(sp=score_rows, dim=st.integers(1, 4), chunk=st.integers(1, 64), seed=st.integers(0, 1000))
def test_chunked_evaluation_equals_the_dense_computation(sp, dim, chunk, seed):
    import scipy.sparse as sp_

    from dcue_cli.metrics import evaluate

    _, positives = sp
    rng = np.random.default_rng(seed)
    users = rng.integers(-2, 3, (positives.shape[0], dim)).astype(np.float32)  # integer vectors: exact
    items = rng.integers(-2, 3, (positives.shape[1], dim)).astype(np.float32)  # scores, many ties
    result = evaluate(users, items, "dot", sp_.csr_matrix(positives.astype(np.float32)), ks=(3,),
                      chunk_elements=chunk, threads=1 + seed % 3)
    dense = per_user_metrics(users.astype(np.float64) @ items.T.astype(np.float64), positives, ks=(3,))
    for name, values in dense.items():
        np.testing.assert_allclose(result["per_user"][name], values, atol=1e-9, equal_nan=True, err_msg=name)

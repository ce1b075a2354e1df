"""Property-based tests (hypothesis): the tags and id-map readers and the metrics, on inputs nobody
wrote by hand (the plays reader's are in test_io_plays.py, the splits TSV's in test_io_splits.py).

Readers: tags read back whatever the line endings or BOM; any bytes at all either read or fail
with a one-line DcueError, never another exception.
Metrics: AUC is invariant to strictly increasing transforms of the scores, equals sklearn's with
ties, and 1 - AUC of the reversed scores; every ranking metric stays within its bounds.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dcue_cli.errors import DcueError
from dcue_cli.evaluate.metrics import auc_per_user, per_user_metrics
from dcue_cli.io.idmap import read_id_map
from dcue_cli.io.splits import read_splits
from dcue_cli.io.tags import read_tags

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


# ----------------------------------------------------------------------------- tags, id map (and any bytes to splits)


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

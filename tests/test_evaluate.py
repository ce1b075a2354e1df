"""Metrics: exact against sklearn and against brute force over tie orders; chunked == dense."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from dcue_cli.evaluate.metrics import (
    auc_per_user,
    evaluate,
    mean_auc,
    metric_names,
    per_user_metrics,
)
from dcue_cli.evaluate.stats import bootstrap_means, percentile_interval, wilcoxon_p


def _sklearn_auc(scores, positives, candidates=None):
    from sklearn.metrics import roc_auc_score

    out = []
    for u in range(len(scores)):
        keep = np.ones(scores.shape[1], bool) if candidates is None else candidates[u]
        y, s = positives[u][keep], scores[u][keep]
        out.append(roc_auc_score(y, s) if 0 < y.sum() < len(y) else np.nan)
    return np.array(out)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_auc_equals_sklearn_with_many_ties(dtype):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (150, 60)).astype(dtype)  # four distinct values: ties everywhere
    positives = rng.random((150, 60)) < 0.15
    candidates = rng.random((150, 60)) < 0.8
    for cand in (None, candidates):
        ours = auc_per_user(scores, positives, cand)
        ref = _sklearn_auc(scores.astype(np.float64), positives, cand)
        assert np.array_equal(np.isnan(ours), np.isnan(ref))
        assert np.nanmax(np.abs(ours - ref)) < 1e-9


def test_auc_on_continuous_scores_and_signed_zero_and_infinities():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((50, 30))
    scores[0, :4] = [0.0, -0.0, 0.0, -0.0]  # -0.0 == 0.0: a tie, as in sklearn
    scores[1, :3] = [np.inf, -np.inf, np.inf]
    positives = rng.random((50, 30)) < 0.3
    positives[0, :4] = [True, False, False, True]
    positives[1, :3] = [True, True, False]
    ours = auc_per_user(scores.astype(np.float32), positives)
    ref = _sklearn_auc(np.clip(scores, -1e300, 1e300), positives)
    assert np.nanmax(np.abs(ours - ref)) < 1e-9


def test_auc_undefined_without_a_positive_or_a_negative():
    scores = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    positives = np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0]], bool)
    auc = auc_per_user(scores, positives)
    assert np.isnan(auc[0]) and np.isnan(auc[1]) and auc[2] == 1.0


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        auc_per_user(np.array([[0.1, np.nan]]), np.array([[True, False]]))


def _brute_force(scores, positives, k):
    """precision, recall, nDCG, AP at k averaged over every order of the tied items."""
    n = len(scores)
    orders = [p for p in itertools.permutations(range(n))
              if all(scores[p[i]] >= scores[p[i + 1]] for i in range(n - 1))]
    n_pos = positives.sum()
    ideal = sum(1 / np.log2(t + 2) for t in range(min(n_pos, k)))
    out = []
    for order in orders:
        rel = positives[list(order)][:k].astype(float)
        precision_at = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        dcg = sum(r / np.log2(t + 2) for t, r in enumerate(rel))
        out.append([rel.sum() / k, rel.sum() / n_pos, dcg / ideal, (precision_at * rel).sum() / min(k, n_pos)])
    return np.mean(out, axis=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=2, max_size=7), st.data())
def test_ranking_metrics_are_the_expectation_over_tie_orders(levels, data):
    scores = np.array(levels, float)
    positives = np.array(data.draw(st.lists(st.booleans(), min_size=len(levels), max_size=len(levels))))
    if not 0 < positives.sum() < len(levels):
        return
    k = data.draw(st.integers(1, len(levels) + 2))
    got = per_user_metrics(scores[None], positives[None], ks=(k,))
    expected = _brute_force(scores, positives, k)
    for name, value in zip(("precision", "recall", "ndcg", "map"), expected):
        assert abs(got[f"{name}@{k}"][0] - value) < 1e-12, name


def test_ranking_metrics_without_ties_are_the_usual_ones():
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((100, 50))
    positives = rng.random((100, 50)) < 0.1
    positives[:, 0] = True
    got = per_user_metrics(scores, positives, ks=(5, 20))
    for u in range(100):
        rel = positives[u][np.argsort(-scores[u])]
        for k in (5, 20):
            hits = rel[:k].sum()
            prec = np.cumsum(rel[:k]) / np.arange(1, k + 1)
            assert got[f"precision@{k}"][u] == pytest.approx(hits / k, abs=1e-12)
            assert got[f"recall@{k}"][u] == pytest.approx(hits / rel.sum(), abs=1e-12)
            assert got[f"map@{k}"][u] == pytest.approx((prec * rel[:k]).sum() / min(k, rel.sum()), abs=1e-12)


def test_ndcg_equals_sklearn_with_ties():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 3, (60, 25)).astype(float)
    positives = rng.random((60, 25)) < 0.2
    positives[:, 0], positives[:, 1] = True, False
    got = per_user_metrics(scores, positives, ks=(1, 5, 30))
    for u in range(60):
        for k in (1, 5, 30):
            ref = ndcg_score(positives[u][None].astype(float), scores[u][None], k=k)
            assert abs(got[f"ndcg@{k}"][u] - ref) < 1e-12


def test_constant_scores_give_the_random_baseline():
    positives = np.zeros((1, 10), bool)
    positives[0, :3] = True
    got = per_user_metrics(np.zeros((1, 10)), positives, ks=(5,))
    assert got["auc"][0] == 0.5
    assert got["precision@5"][0] == pytest.approx(0.3)
    assert got["recall@5"][0] == pytest.approx(0.5)


def _fixture(seed=4, users=97, items=41, d=6):
    rng = np.random.default_rng(seed)
    uv = rng.standard_normal((users, d)).astype(np.float32)
    iv = rng.standard_normal((items, d)).astype(np.float32)
    iv[5] = iv[6]  # identical items: ties in every user's scores
    pos = sp.random(users, items, density=0.12, random_state=seed, format="csr")
    exc = sp.random(users, items, density=0.2, random_state=seed + 1, format="csr")
    return uv, iv, pos, exc


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_evaluate_in_chunks_and_threads_equals_the_dense_computation(similarity):
    uv, iv, pos, exc = _fixture()
    cand = np.ones(len(iv), bool)
    cand[::4] = False
    u, i = uv, iv
    if similarity == "cosine":
        u = u / np.linalg.norm(u, axis=1, keepdims=True)
        i = i / np.linalg.norm(i, axis=1, keepdims=True)
    scores = u @ i.T
    dense_cand = cand[None, :] & ~exc.toarray().astype(bool)
    expected = per_user_metrics(scores[:, cand], pos.toarray()[:, cand] > 0, dense_cand[:, cand], ks=(3, 10))
    for chunk, threads in ((1, 2), (7 * 31, 1), (5 * 31, 3), (10**6, 2)):
        got = evaluate(uv, iv, similarity, pos, cand, ks=(3, 10), exclude=exc, chunk_elements=chunk, threads=threads)
        for name in metric_names((3, 10)):
            np.testing.assert_allclose(got["per_user"][name], expected[name], rtol=0, atol=1e-6, equal_nan=True)
        assert got["n_users"] == int((~np.isnan(expected["auc"])).sum())
        assert got["n_items"] == int(cand.sum())
        assert got["metrics"]["auc"] == pytest.approx(np.nanmean(expected["auc"]))


def test_mean_auc_is_evaluates_auc_and_accepts_index_candidates():
    uv, iv, pos, _ = _fixture()
    cols = np.arange(0, len(iv), 2)
    mask = np.zeros(len(iv), bool)
    mask[cols] = True
    assert mean_auc(uv, iv, "dot", pos, cols) == evaluate(uv, iv, "dot", pos, mask, ks=())["metrics"]["auc"]


def test_missing_items_rank_last_and_missing_users_tie():
    users = np.array([[1.0], [1.0]], np.float32)
    items = np.array([[3.0], [2.0], [1.0]], np.float32)
    pos = sp.csr_matrix(np.array([[1, 0, 0], [1, 0, 0]]))
    missing = np.array([True, False, False])  # the positive has no vector: it ranks last
    got = evaluate(users, items, "dot", pos, ks=(1,), missing_items=missing, missing_users=np.array([False, True]))
    assert got["per_user"]["auc"].tolist() == [0.0, 0.5]
    assert got["per_user"]["precision@1"][1] == pytest.approx(1 / 3)


def test_bootstrap_is_seeded_and_paired():
    rng = np.random.default_rng(5)
    a = rng.random(500)
    b = a + 0.01
    boots = bootstrap_means(np.column_stack([a, b]), n_boot=200, seed=1)
    assert np.allclose(boots[:, 1] - boots[:, 0], 0.01)  # paired: same resamples for both columns
    assert np.allclose(bootstrap_means(a, 200, seed=1), boots[:, 0], rtol=0, atol=1e-12)
    low, high = percentile_interval(bootstrap_means(a, 2000))
    assert low < a.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * a.std() / np.sqrt(len(a)), rel=0.15)


def test_paired_difference_interval_and_wilcoxon():
    rng = np.random.default_rng(6)
    a = rng.random(300)
    assert wilcoxon_p(a - a) == 1.0
    better = a + 0.05 + 0.01 * rng.standard_normal(300)
    boots = bootstrap_means(np.column_stack([a, better]), 1000)
    low, _high = percentile_interval(boots[:, 1] - boots[:, 0])
    assert low > 0 and wilcoxon_p(better - a) < 1e-10
    assert wilcoxon_p(np.array([np.nan, 0.0])) == 1.0

"""`dcue refit`: users fitted again on a model's fixed item vectors (dcue_cli/refit.py)."""

import numpy as np
import pytest
from conftest import error_line, invoke


@pytest.fixture(scope="module")
def styled(tmp_path_factory):
    """Items whose 16-d vectors carry one of three styles (plus noise), users who mostly play one
    style; 60 training, 15 valid and 25 test songs."""
    from dcue_cli.io.embeddings import Embeddings, write_embeddings

    d = tmp_path_factory.mktemp("refit")
    rng = np.random.default_rng(0)
    n_items, n_users = 100, 80
    style = rng.integers(0, 3, n_items)
    centres = rng.standard_normal((3, 16)) * 2
    vectors = (centres[style] + rng.standard_normal((n_items, 16))).astype(np.float32)
    items = np.array([f"S{i:03d}" for i in range(n_items)], dtype=object)
    split = np.array(["train"] * 60 + ["valid"] * 15 + ["test"] * 25)
    taste = rng.integers(0, 3, n_users)
    lines = []
    for u in range(n_users):
        liked = np.flatnonzero(style == taste[u])
        others = np.flatnonzero(style != taste[u])
        for i in np.concatenate([rng.choice(liked, 12, replace=False), rng.choice(others, 2, replace=False)]):
            lines.append(f"U{u:03d}\t{items[i]}\t{rng.integers(1, 5)}\n")
    (d / "plays.tsv").write_text("".join(lines))
    (d / "splits.tsv").write_text("".join(f"{i}\t{s}\n" for i, s in zip(items, split)))
    users = np.array([f"U{u:03d}" for u in range(n_users - 5)], dtype=object)  # five the model never saw
    write_embeddings(d / "model.h5", Embeddings(items, vectors, users, rng.standard_normal((len(users), 16)).astype(
        np.float32), source="dcue", similarity="cosine"))
    return d, style, split, taste


def test_refit_users_rank_their_style_first_and_new_users_get_vectors(styled, tmp_path):
    from dcue_cli.io.embeddings import read_embeddings

    d, style, split, taste = styled
    out = tmp_path / "refit.h5"
    r = invoke(["refit", d / "model.h5", d / "plays.tsv", "--splits", d / "splits.tsv", "-o", out])
    assert "valid AUC by (k, C)" in r.stderr and r.stdout == ""
    emb = read_embeddings(out, need_users=True)
    assert emb.similarity == "dot" and emb.source == "dcue+refit" and len(emb.item_ids) == 100
    assert 2 <= emb.attrs["refit_dims"] <= 16 and emb.attrs["refit_C"] in (0.3, 1.0, 3.0)  # 16-d vectors
    assert len(emb.user_ids) == 80  # every user with a training play, the five new ones too
    test = np.flatnonzero(split == "test")
    scores = emb.user_vectors @ emb.item_vectors[test].T
    u = [int(x[1:]) for x in emb.user_ids]
    hits = np.mean([style[test][np.argmax(scores[k])] == taste[u[k]] for k in range(len(u))])
    assert hits > 0.9, hits  # each user's best cold song is of their style


def test_refit_chooses_k_at_the_middle_strength_then_c_at_that_k(styled, tmp_path):
    import re

    from dcue_cli.io.embeddings import read_embeddings

    d, *_ = styled
    out = tmp_path / "refit.h5"
    r = invoke(["refit", d / "model.h5", d / "plays.tsv", "--splits", d / "splits.tsv", "-o", out,
                "--dims", "2-4,6", "--strengths", "3,0.3,1"])
    tried = {(int(k), float(c)): float(a) for k, c, a in re.findall(r"k (\d+) C ([\d.]+): ([\d.]+)", r.stderr)}
    at_middle = {k: a for (k, c), a in tried.items() if c == 1.0}
    assert sorted(at_middle) == [2, 3, 4, 6]
    best_k = max(at_middle, key=at_middle.get)
    assert sorted(tried) == sorted([(k, 1.0) for k in at_middle] + [(best_k, 0.3), (best_k, 3.0)])
    emb = read_embeddings(out, need_users=True)
    chosen = (emb.attrs["refit_dims"], emb.attrs["refit_C"])
    assert chosen[0] == best_k and tried[chosen] == max(tried[(best_k, c)] for c in (0.3, 1.0, 3.0))
    assert emb.item_vectors.shape[1] == best_k


def test_refit_scores_through_score(styled, tmp_path):
    d, *_ = styled
    out = tmp_path / "refit.h5"
    invoke(["refit", d / "model.h5", d / "plays.tsv", "--splits", d / "splits.tsv", "-o", out, "--dims", "4",
            "--strengths", "1"])
    r = invoke(["score", out, "--plays", d / "plays.tsv", "--splits", d / "splits.tsv", "--json"])
    import json

    (model,) = json.loads(r.stdout)["models"]
    assert model["metrics"]["auc"]["mean"] > 0.75  # the styles rank the cold songs (chance: 0.5)


def test_refit_bad_inputs(styled, tmp_path):
    d, *_ = styled
    base = ["refit", d / "model.h5", d / "plays.tsv", "--splits", d / "splits.tsv"]
    r = invoke([*base, "-o", d / "model.h5"], expect=1)
    assert "model.h5" in error_line(r)
    (tmp_path / "model.pt").write_bytes(b"a checkpoint, say")
    r = invoke([*base, "-o", tmp_path / "model.pt"], expect=1)
    assert "is not an embeddings file" in error_line(r)
    assert (tmp_path / "model.pt").read_bytes() == b"a checkpoint, say"
    for dims in ("a,b", "5-3", "0-4", ","):
        r = invoke([*base, "-o", tmp_path / "x.h5", "--dims", dims], expect=2)
        assert "--dims" in r.stderr, dims
    r = invoke([*base, "-o", tmp_path / "x.h5", "--strengths", "0"], expect=2)
    assert "--strengths" in r.stderr
    (tmp_path / "all_test.tsv").write_text((d / "splits.tsv").read_text().replace("train", "test"))
    r = invoke(["refit", d / "model.h5", d / "plays.tsv", "--splits", tmp_path / "all_test.tsv", "-o",
                tmp_path / "x.h5"], expect=1)
    assert "no item of the embeddings is a training song" in error_line(r)
    assert not (tmp_path / "x.h5").exists()


def test_fit_users_reaches_the_regularised_optimum_where_plain_newton_oscillates():
    """Songs in tight clusters (as excerpts of a few recordings are) and a user who plays 15 songs
    of one: full Newton steps from the base rate swing the taste back and forth (off by ~11 after
    10 steps, as for 39 of the real-recordings set's 2,000 users); the damped steps reach
    scikit-learn's optimum of the same objective."""
    from sklearn.linear_model import LogisticRegression

    from dcue_cli.refit import fit_users

    rng = np.random.default_rng(26)
    centres = rng.standard_normal((8, 6)) * 1.5
    cluster = rng.integers(0, 8, 1400)
    z = centres[cluster] + 0.3 * rng.standard_normal((1400, 6))
    z = (z - z.mean(0)) / z.std(0)
    played = np.zeros((2, 1400), dtype=bool)
    played[0, rng.choice(np.flatnonzero(cluster == 0), 15, replace=False)] = True
    played[1, rng.choice(1400, 40, replace=False)] = True  # an ordinary user in the same block
    tastes = fit_users(z, played, 0.3)
    for taste, y in zip(tastes, played):
        best = LogisticRegression(C=0.3, max_iter=10000, tol=1e-12).fit(z, y).coef_[0]
        np.testing.assert_allclose(taste, best, atol=1e-4)

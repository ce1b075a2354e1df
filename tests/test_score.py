"""`dcue score`: both protocols on hand-made fixtures with known answers, output forms, queries, errors."""

import json

import numpy as np
import pytest
from conftest import error_line, fails, invoke

from dcue_cli.io.embeddings import Embeddings, write_embeddings


def _write(path, text):
    path.write_text(text)
    return path


def _emb(path, items: dict, users: dict, similarity="dot", **attrs):
    write_embeddings(path, Embeddings(
        np.array(list(items), dtype=object), np.array([[v] for v in items.values()], np.float32),
        np.array(list(users), dtype=object), np.array([[v] for v in users.values()], np.float32),
        source=attrs.pop("source", "dcue"), similarity=similarity, attrs=attrs))
    return path


@pytest.fixture
def cold(tmp_path):
    """Test songs t1..t4, train songs r1, r2. A plays t1, t2; B plays t3; C no test song; D all of them."""
    plays = _write(tmp_path / "plays.tsv", "A\tr1\t5\nA\tt1\t2\nA\tt2\t1\nB\tr2\t1\nB\tt3\t4\nC\tr1\t1\n"
                                           "D\tt1\t1\nD\tt2\t1\nD\tt3\t1\nD\tt4\t1\n")
    splits = _write(tmp_path / "splits.tsv", "r1\ttrain\nr2\ttrain\nt1\ttest\nt2\ttest\nt3\ttest\nt4\ttest\n")
    users = {u: 1.0 for u in "ABCD"}
    model = _emb(tmp_path / "model.h5", {"t1": 4, "t2": 3, "t3": 2, "t4": 1, "r1": 0, "r2": 0}, users, name="DCUE")
    return tmp_path, plays, splits, model


def _json(result):
    return json.loads(result.stdout)


def test_cold_start_auc_and_oracle_popularity(cold):
    _, plays, splits, model = cold
    report = _json(invoke(["score", model, "--plays", plays, "--splits", splits, "--popularity", "--json", "-k", "1"]))
    assert report["protocol"] == "cold-start" and report["users"] == 2 and report["items"] == 4
    popularity, dcue = report["models"]
    # A: positives t1, t2 on top: 1; B: t3 third of four: 1/3. Popularity (test totals t3 5, t1 3,
    # t2 2, t4 1): A 2/4, B 1.
    assert dcue["metrics"]["auc"]["mean"] == pytest.approx((1 + 1 / 3) / 2, abs=1e-12)
    assert popularity["metrics"]["auc"]["mean"] == pytest.approx(0.75, abs=1e-12)
    assert dcue["metrics"]["precision@1"]["mean"] == pytest.approx(0.5)
    assert popularity["note"] == "ranks by total play count in the evaluated interactions: an oracle, as in the paper"
    assert dcue["vs_first"]["auc"]["diff"] == pytest.approx((1 + 1 / 3) / 2 - 0.75)
    assert 0 <= dcue["vs_first"]["auc"]["p_wilcoxon"] <= 1
    stats = dcue["metrics"]["auc"]
    assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"]


def test_table_goes_to_stdout_alone_and_to_stderr_beside_json(cold):
    _, plays, splits, model = cold
    alone = invoke(["score", model, "--plays", plays, "--splits", splits, "--popularity", "--paper"])
    lines = alone.stdout.splitlines()
    assert lines[0] == ("cold-start protocol: the test songs of " + str(splits) +
                        ": 4 songs, 2 users with a positive and a negative among them")
    assert any(line.startswith("Popularity [1]") and "0.7500 ±" in line for line in lines)
    assert "[1] Popularity: ranks by total play count in the evaluated interactions: an oracle" in alone.stdout
    assert "paired against Popularity" in alone.stdout
    assert "paper (Lee et al. 2018, Table 1; MSD, cold-start AUC): Popularity 0.7059, WMF 0.9302" in alone.stdout
    both = invoke(["score", model, "--plays", plays, "--splits", splits, "--json"])
    assert json.loads(both.stdout)["models"][0]["name"] == "DCUE"
    assert "DCUE" in both.stderr and "0.6667 ±" in both.stderr


def test_per_user_values_match_sklearn(cold):
    from sklearn.metrics import roc_auc_score

    tmp_path, plays, splits, model = cold
    out = tmp_path / "users.tsv"
    invoke(["score", model, "--plays", plays, "--splits", splits, "--per-user", out, "-k", "2"])
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows[0] == ["model", "user", "positives", "candidates", "auc", "precision@2", "recall@2", "ndcg@2", "map@2"]
    by_user = {r[1]: r for r in rows[1:]}
    assert sorted(by_user) == ["A", "B"]
    assert float(by_user["B"][4]) == pytest.approx(roc_auc_score([0, 0, 1, 0], [4, 3, 2, 1]), abs=1e-9)
    assert by_user["A"][2:4] == ["2", "4"]


def test_wmf_fitted_on_all_is_labelled_an_upper_bound(cold):
    tmp_path, plays, splits, model = cold
    wmf = _emb(tmp_path / "wmf.h5", {"t1": 1, "t2": 2, "t3": 3, "t4": 4}, {u: 1.0 for u in "ABD"},
               source="wmf", fit_on="all", name="WMF")
    report = _json(invoke(["score", model, wmf, "--plays", plays, "--splits", splits, "--json"]))
    assert report["models"][1]["note"] == ("fitted on plays of the very songs ranked here: an upper bound, "
                                           "not a cold-start method")
    trained = _emb(tmp_path / "wmf_train.h5", {"r1": 1, "r2": 2}, {u: 1.0 for u in "AB"}, source="wmf", fit_on="train")
    result = invoke(["score", trained, "--plays", plays, "--splits", splits], expect=1)
    assert result.stderr.startswith(f"Error: {trained} is WMF fitted on the train songs only (fit_on=train)")


def test_missing_items_are_reported_penalized_or_dropped(cold):
    tmp_path, plays, splits, model = cold
    partial = _emb(tmp_path / "partial.h5", {"t2": 3, "t3": 2, "t4": 1}, {u: 1.0 for u in "ABCD"}, name="Partial")
    result = invoke(["score", model, partial, "--plays", plays, "--splits", splits, "--json"])
    assert (f"Warning: {partial} has no vector for 1 of the 4 songs to rank: such items rank below every other "
            "item (tied); --missing drop evaluates only what every file has instead") in result.stderr
    report = _json(result)
    row = report["models"][1]
    assert row["missing_items"] == 1 and "1 songs without a vector ranked last (--missing penalize)" in row["note"]
    # t2 > t3 > t4 > t1 (missing: last). A's positives t2 and t1: 2 of 4 pairs; B's t3: 2 of 3.
    assert row["metrics"]["auc"]["mean"] == pytest.approx((0.5 + 2 / 3) / 2)
    dropped = _json(invoke(["score", model, partial, "--plays", plays, "--splits", splits, "--json",
                            "--missing", "drop"]))
    assert dropped["items"] == 3
    assert "--missing drop: evaluated on the 3 songs and 2 users that every file has" in dropped["notes"]


def test_missing_users_are_reported(cold):
    tmp_path, plays, splits, _ = cold
    few = _emb(tmp_path / "few.h5", {"t1": 4, "t2": 3, "t3": 2, "t4": 1}, {"A": 1.0})
    result = invoke(["score", few, "--plays", plays, "--splits", splits, "--json"])
    assert "has no vector for 1 of the 2 users: such users rank every item as a tie" in result.stderr
    assert _json(result)["models"][0]["metrics"]["auc"]["mean"] == pytest.approx((1 + 0.5) / 2)


@pytest.fixture
def warm(tmp_path):
    train = _write(tmp_path / "train.tsv", "A\ti1\t1\nA\ti2\t1\nB\ti3\t1\nC\ti4\t1\nC\ti5\t1\n")
    test = _write(tmp_path / "test.tsv", "A\ti3\t2\nB\ti1\t1\nB\ti9\t1\n")
    model = _emb(tmp_path / "m.h5", {"i1": 5, "i2": 4, "i3": 3, "i4": 2, "i5": 1}, {u: 1.0 for u in "ABC"})
    return tmp_path, train, test, model


def test_warm_protocol_never_counts_training_plays(warm):
    _, train, test, model = warm
    result = invoke(["score", model, "--train-plays", train, "--test-plays", test, "--popularity", "--json", "-k", 1])
    report = _json(result)
    assert report["protocol"] == "warm" and report["users"] == 2 and report["items"] == 5
    popularity, dcue = report["models"]
    # A's training items i1, i2 score above its test item i3: counted as negatives they would give 0.
    assert dcue["metrics"]["auc"]["mean"] == 1.0
    assert popularity["note"] == "ranks by total play count in the training plays"
    assert popularity["metrics"]["auc"]["mean"] == 0.5  # all training counts tie
    # P@1 in expectation over the tie: A has 3 candidates, B 4, one positive each.
    assert popularity["metrics"]["precision@1"]["mean"] == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert ("1 test plays on 1 items that no training play has are left out (the warm protocol ranks the "
            "training items; use --plays/--splits for cold items)") in report["notes"]


def test_warm_oracle_popularity_is_labelled(warm):
    _, train, test, _ = warm
    report = _json(invoke(["score", "--train-plays", train, "--test-plays", test, "--popularity",
                           "--popularity-from", "evaluated", "--json"]))
    assert report["models"][0]["note"] == "ranks by total play count in the test plays: an oracle, as in the paper"


def test_cold_popularity_from_train_is_refused(cold):
    _, plays, splits, _ = cold
    result = invoke(["score", "--plays", plays, "--splits", splits, "--popularity", "--popularity-from", "train"],
                    expect=1)
    assert result.stderr.startswith("Error: --popularity-from train needs training plays of the ranked items")


def test_usage_errors(cold, warm):
    _, plays, splits, model = cold
    _, train, test, _ = warm
    result = invoke(["score", model], expect=2)
    assert "nothing to evaluate against: give --plays and --splits (the cold-start protocol)" in result.stderr
    result = invoke(["score", model, "--plays", plays, "--splits", splits, "--train-plays", train,
                     "--test-plays", test], expect=2)
    assert "choose one protocol" in result.stderr
    result = invoke(["score", model, "--plays", plays], expect=2)
    assert "the cold-start protocol needs both --plays and --splits" in result.stderr
    result = invoke(["score", "--plays", plays, "--splits", splits], expect=2)
    assert "nothing to score: give embeddings files" in result.stderr
    result = invoke(["score", model, "--plays", plays, "--splits", splits, "-k", "10,x"], expect=2)
    assert "give positive integers separated by commas" in result.stderr


def test_file_errors(cold, tmp_path):
    _, plays, splits, _model = cold
    result = invoke(["score", tmp_path / "nope.h5", "--plays", plays, "--splits", splits], expect=1)
    assert result.stderr.strip() == f"Error: {tmp_path / 'nope.h5'} does not exist: check the path."
    items_only = tmp_path / "items.h5"
    write_embeddings(items_only, Embeddings(np.array(["t1"], dtype=object), np.ones((1, 2), np.float32)))
    result = invoke(["score", items_only, "--plays", plays, "--splits", splits], expect=1)
    assert "has no /users/ids: user vectors are needed here" in result.stderr
    other = _emb(tmp_path / "other.h5", {"x1": 1.0}, {"A": 1.0})
    result = invoke(["score", other, "--plays", plays, "--splits", splits], expect=1)
    assert result.stderr.startswith(f"Error: none of the 4 songs to rank has a vector in {other} "
                                    "(its ids look like 'x1', those to rank like 't1', 't2')")


def test_user_query_with_titles_exclusions_and_split(cold):
    tmp_path, plays, splits, model = cold
    id_map = _write(tmp_path / "unique_tracks.txt", "TRA<SEP>t1<SEP>Artist One<SEP>Title One\n"
                                                    "TRB<SEP>t3<SEP>Artist Three<SEP>Title Three\n")
    out = invoke(["score", model, "--user", "A", "-k", 3, "--id-map", id_map]).stdout.splitlines()
    assert out == ["rank\titem\tscore\tartist\ttitle", "1\tt1\t4\tArtist One\tTitle One", "2\tt2\t3\t\t",
                   "3\tt3\t2\tArtist Three\tTitle Three"]
    out = invoke(["score", model, "--user", "A", "-k", 2, "--exclude-played", plays, "--items", "test",
                  "--splits", splits]).stdout.splitlines()
    assert out == ["rank\titem\tscore", "1\tt3\t2", "2\tt4\t1"]


def test_item_query_uses_the_files_similarity(tmp_path):
    items = {"a": [1.0, 0.0], "b": [10.0, 1.0], "c": [0.0, 1.0], "d": [0.99, 0.01]}
    for similarity, best in (("dot", "b"), ("cosine", "d")):
        path = tmp_path / f"{similarity}.h5"
        write_embeddings(path, Embeddings(np.array(list(items), dtype=object), np.array(list(items.values()),
                                          np.float32), similarity=similarity))
        out = invoke(["score", path, "--item", "a", "-k", 1]).stdout.splitlines()
        assert out[1].split("\t")[:2] == ["1", best]


def test_query_errors(cold):
    _, _plays, _splits, model = cold
    result = invoke(["score", model, "--user", "nobody"], expect=1)
    assert result.stderr.strip() == ("Error: user 'nobody' is not in " + str(model) +
                                     " (4 users, e.g. 'A', 'B', 'C'): check the id.")
    result = invoke(["score", model, "--item", "zz"], expect=1)
    assert "item 'zz' is not in" in result.stderr
    result = invoke(["score", model, model, "--user", "A"], expect=2)
    assert "a --user/--item query reads exactly one embeddings file, not 2" in result.stderr
    result = invoke(["score", model, "--user", "A", "--items", "test"], expect=2)
    assert "--items test needs --splits" in result.stderr
    result = invoke(["score", model, "--user", "A", "--json"], expect=2)
    assert "--json applies to evaluations" in result.stderr


def test_chained_real_commands_cold_start(tmp_path):
    """subset -> wmf --fit-on all -> score, on a synthetic play file with structure."""
    rng = np.random.default_rng(0)
    lines = []
    for u in range(60):
        group = u % 3
        for i in rng.choice(np.arange(group * 20, group * 20 + 20), size=8, replace=False):
            lines.append(f"user{u}\tsong{i}\t{rng.integers(1, 5)}\n")
    plays = _write(tmp_path / "all.tsv", "".join(lines))
    invoke(["subset", plays, "--songs", 0, "--users", 0, "-o", tmp_path / "sub"])
    invoke(["wmf", tmp_path / "sub" / "plays.tsv", "--splits", tmp_path / "sub" / "splits.tsv", "--fit-on", "all",
            "--factors", 6, "--iterations", 8, "--regularization", 0.1, "-o", tmp_path / "wmf.h5"])
    report = _json(invoke(["score", tmp_path / "wmf.h5", "--plays", tmp_path / "sub" / "plays.tsv",
                           "--splits", tmp_path / "sub" / "splits.tsv", "--popularity", "--json"]))
    popularity, wmf = report["models"]
    assert wmf["metrics"]["auc"]["mean"] > 0.85 > popularity["metrics"]["auc"]["mean"]


# ----------------------------------------------------------------------------- --plot

def test_plot_draws_the_auc_distributions_and_roc_curves(cold):
    pytest.importorskip("matplotlib")
    tmp_path, plays, splits, model = cold
    result = invoke(["score", model, "--plays", plays, "--splits", splits, "--popularity", "--plot",
                     tmp_path / "auc.png"])
    assert (tmp_path / "auc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote the per-user AUC and ROC plot to {tmp_path / 'auc.png'}" in result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    invoke(["score", model, "--plays", plays, "--splits", splits, "--plot", tmp_path / "auc.svg"])
    assert (tmp_path / "auc.svg").read_text().lstrip().startswith("<?xml")


def test_mean_roc_area_is_the_mean_per_user_auc():
    import scipy.sparse as sp

    from dcue_cli.evaluate.metrics import auc_per_user
    from dcue_cli.evaluate.plots import mean_roc
    from dcue_cli.evaluate.protocols import Model, Task

    rng = np.random.default_rng(0)
    n_users, n_items = 60, 37
    positives = rng.random((n_users, n_items)) < 0.2
    positives[:, 0], positives[:, 1] = True, False  # everyone has a positive and a negative
    task = Task("cold-start", "test", np.arange(n_users).astype(str).astype(object),
                np.arange(n_items).astype(str).astype(object), sp.csr_matrix(positives.astype(np.float32)))
    for items in (rng.normal(size=(n_items, 4)), rng.integers(0, 3, (n_items, 4))):  # the second has ties
        users = rng.normal(size=(n_users, 4))
        model = Model("m", users.astype(np.float32), items.astype(np.float32), "dot",
                      np.zeros(n_items, bool), np.zeros(n_users, bool))
        fpr, tpr = mean_roc(task, model, np.ones(n_users, bool), grid_points=2001)
        auc = auc_per_user(users.astype(np.float32) @ items.astype(np.float32).T, positives).mean()
        area = (getattr(np, "trapezoid", None) or np.trapz)(tpr, fpr)  # numpy 1.x: trapz
        assert area == pytest.approx(auc, abs=2e-3)
        assert tpr[0] >= 0 and tpr[-1] == pytest.approx(1.0) and np.all(np.diff(tpr) >= -1e-12)
    tied = Model("tied", np.zeros((n_users, 1), np.float32), np.ones((n_items, 1), np.float32), "dot",
                 np.zeros(n_items, bool), np.zeros(n_users, bool))
    fpr, tpr = mean_roc(task, tied, np.ones(n_users, bool))
    assert np.allclose(tpr, fpr)  # all ties: the diagonal, area one half


def test_plot_without_matplotlib_is_a_one_line_error(cold, monkeypatch):
    import sys

    tmp_path, plays, splits, model = cold
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    result = invoke(["score", model, "--plays", plays, "--splits", splits, "--plot", tmp_path / "auc.png"], expect=1)
    assert result.stderr == "Error: --plot needs matplotlib: pip install 'dcue[plot]'\n"
    assert result.stdout == "" and not (tmp_path / "auc.png").exists()


def test_plot_errors(cold):
    pytest.importorskip("matplotlib")
    tmp_path, plays, splits, model = cold
    result = invoke(["score", model, "--plays", plays, "--splits", splits, "--plot", tmp_path / "auc.txt"], expect=1)
    assert result.stderr.startswith(f"Error: --plot {tmp_path / 'auc.txt'}: the file name must end in a known "
                                    "image format: .png, .pdf, .svg (or ")
    result = invoke(["score", model, "--plays", plays, "--splits", splits, "--plot", tmp_path / "no" / "a.png"],
                    expect=1)
    assert result.stderr == (f"Error: --plot {tmp_path / 'no' / 'a.png'}: the folder {tmp_path / 'no'} does not "
                             "exist: create it or choose another path.\n")
    result = invoke(["score", model, "--user", "A", "--plot", tmp_path / "a.png"], expect=2)
    assert "--plot applies to evaluations, not to --user/--item queries." in result.stderr


def test_mean_roc_leaves_out_each_users_training_items(warm):
    from dcue_cli.evaluate.plots import mean_roc
    from dcue_cli.evaluate.protocols import align, warm_task
    from dcue_cli.io.embeddings import read_embeddings
    from dcue_cli.io.plays import read_plays

    tmp_path, train, test, model = warm
    task = warm_task(read_plays(train, show_progress=False), read_plays(test, show_progress=False))
    _fpr, tpr = mean_roc(task, align(read_embeddings(model, need_users=True), task), np.ones(task.n_users, bool))
    # A's test song i3 ranks below i1, i2 but those are A's training songs: each user's AUC is 1.
    assert np.allclose(tpr, 1.0)
    pytest.importorskip("matplotlib")
    invoke(["score", model, "--train-plays", train, "--test-plays", test, "--plot", tmp_path / "warm.png"])
    assert (tmp_path / "warm.png").stat().st_size > 0


# ---- unknown ids (moved from the hostile-input suite)


def test_unknown_user_and_item_ids(world, tmp_path):
    fails(["score", world / "emb.h5", "--user", "nobody"],
          f"user 'nobody' is not in {world / 'emb.h5'} (40 users, e.g. 'u00', 'u01', 'u02'): check the id.")
    fails(["score", world / "emb.h5", "--item", "nothing"],
          f"item 'nothing' is not in {world / 'emb.h5'} (30 items, e.g. 's00', 's01', 's02'): check the id.")
    (tmp_path / "plays.tsv").write_text("someone\ts01\t1\n")
    result = invoke(["score", world / "emb.h5", "--user", "u01", "--exclude-played", tmp_path / "plays.tsv"])
    assert f"Warning: user 'u01' has no play in {tmp_path / 'plays.tsv'}: nothing excluded" in result.stderr
    # plays of users and songs the embeddings never saw: counted, and ranked last or dropped
    extra = (world / "plays.tsv").read_text() + "stranger\ts25\t3\nstranger\ts26\t1\nu01\tnew_song\t2\n"
    (tmp_path / "more.tsv").write_text(extra)
    (tmp_path / "splits.tsv").write_text((world / "splits.tsv").read_text() + "new_song\ttest\n")
    result = invoke(["score", world / "emb.h5", "--plays", tmp_path / "more.tsv", "--splits", tmp_path / "splits.tsv",
                     "--bootstrap", 100])
    assert (f"Warning: {world / 'emb.h5'} has no vector for 1 of the 7 songs to rank and 1 of the 34 users: such items "
            "rank below every other item (tied) and such users rank every item as a tie; --missing drop evaluates "
            "only what every file has instead") in result.stderr


# ---- -k for queries, --splits from stdin, one stdin, missing files (second round, helper REL-TRAIN)


def test_a_query_refuses_several_cut_offs(cold):
    _, _plays, _splits, model = cold
    for query in (["--user", "A"], ["--item", "t1"]):
        r = invoke(["score", model, *query, "-k", "3,5"], expect=2)
        assert "Invalid value for -k: '3,5': a --user/--item query prints one list: give one cut-off, e.g. -k 3." \
            in r.stderr and "Traceback" not in r.stderr and not r.stdout


def test_splits_from_stdin(world):
    args = ["score", world / "emb.h5", "--plays", world / "plays.tsv", "--bootstrap", 100, "--json"]
    from_file = invoke([*args, "--splits", world / "splits.tsv"]).stdout
    from_stdin = invoke([*args, "--splits", "-"], input=(world / "splits.tsv").read_text()).stdout
    assert from_stdin == from_file.replace(f"songs of {world / 'splits.tsv'}", "songs of -")


def test_two_inputs_cannot_both_read_stdin(world):
    r = invoke(["score", world / "emb.h5", "--plays", "-", "--splits", "-"], input="", expect=2)
    assert "--plays and --splits cannot both read stdin: give all but one of them a file." in r.stderr


def test_a_missing_option_file_exits_1_like_a_missing_argument(world, tmp_path):
    """The rule: an input file that is not there is the data's problem (exit 1), argument or option."""
    fails(["score", world / "emb.h5", "--plays", world / "plays.tsv", "--splits", tmp_path / "nope.tsv"],
          f"{tmp_path / 'nope.tsv'} does not exist: check the path.")
    fails(["score", world / "emb.h5", "--user", "u00", "--id-map", tmp_path / "nope.txt"],
          f"{tmp_path / 'nope.txt'} does not exist: check the path.")


# ----------------------------------------------------------------------------- REL-SIGNALS: bootstrap size, Ctrl-C


def test_a_bootstrap_too_large_for_memory_or_time_is_a_misuse_naming_the_largest_that_fits(cold, monkeypatch):
    from dcue_cli import runtime

    _, plays, splits, model = cold
    args = ["score", model, "--plays", plays, "--splits", splits, "--bootstrap"]
    monkeypatch.setattr(runtime, "available_memory", lambda: 8 * 10**9)
    # 1 model x 2 metrics (auc, and one cut-off's four: precision, recall, ndcg, map) = 5 figures
    result = invoke([*args, 10**9], expect=2)
    assert error_line(result) == (
        "--bootstrap 1,000,000,000: 1,000,000,000 resamples of 5 figures (models x metrics) need 56.0 GB, "
        "more than half the 8.0 GB of memory free now: give --bootstrap 71,428,571 or fewer.")
    monkeypatch.setattr(runtime, "available_memory", lambda: 10**15)
    result = invoke([*args, 10**11], expect=2)  # 2 users to evaluate (A and B: D played every test song)
    assert error_line(result) == (
        "--bootstrap 100,000,000,000: 100,000,000,000 resamples of 2 users are 2.0e+11 random draws, hours of "
        "work: give --bootstrap 50,000,000,000 or fewer (1,000 to 10,000 is usual).")
    result = invoke([*args, 1_000_000])  # past the old cap of 100,000: fits, and works
    assert "Error" not in result.stderr


def test_ctrl_c_exits_130_saying_nothing_was_written(cold, monkeypatch):
    from dcue_cli.evaluate import protocols

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(protocols, "bootstrap_means", interrupted)
    _, plays, splits, model = cold
    result = invoke(["score", model, "--plays", plays, "--splits", splits], expect=130)
    assert "interrupted: nothing was written." in result.stderr and "Aborted!" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_between_blocks_of_resamples_and_writes_nothing(cold, monkeypatch, sig):
    import os
    import signal

    from dcue_cli.evaluate import protocols

    real = protocols.bootstrap_means

    def signalled(*args, **kwargs):  # the signal lands as the resampling starts
        os.kill(os.getpid(), getattr(signal, sig))
        return real(*args, **kwargs)

    monkeypatch.setattr(protocols, "bootstrap_means", signalled)
    tmp_path, plays, splits, model = cold
    per_user = tmp_path / "per_user.tsv"
    # as from a terminal, even under a pytest started in the background (SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = invoke(["score", model, "--plays", plays, "--splits", splits, "--per-user", per_user], expect=130)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.stderr.strip().splitlines()[-1] == "Warning: interrupted: nothing was written."
    assert result.stdout == "" and not per_user.exists() and "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- semi-cold and fully cold songs


@pytest.fixture
def by_artist(tmp_path):
    """Train songs r1, r3 by X and r2 by Y; test songs t1 (X), t2 (Y): semi-cold; t3 (Z, no training
    song) and t4 (no artist): fully cold. A plays t1, t3; B t1, t2; C t4."""
    plays = _write(tmp_path / "plays.tsv", "A\tr1\t1\nA\tt1\t1\nA\tt3\t1\nB\tr2\t1\nB\tt1\t1\nB\tt2\t1\n"
                                           "C\tr1\t1\nC\tt4\t1\n")
    splits = _write(tmp_path / "splits.tsv", "r1\ttrain\nr2\ttrain\nr3\ttrain\nt1\ttest\nt2\ttest\nt3\ttest\n"
                                             "t4\ttest\n")
    # t1 has a second track by another artist: the first track's artist (X) is kept, counted
    artists = _write(tmp_path / "unique_tracks.txt", "".join(
        f"TR{k}<SEP>{song}<SEP>{artist}<SEP>Title {k}\n" for k, (song, artist) in enumerate(
            [("r1", "X"), ("r2", "Y"), ("r3", "X"), ("t1", "X"), ("t1", "Z"), ("t2", "Y"), ("t3", "Z")])))
    users = {u: 1.0 for u in "ABC"}
    model = _emb(tmp_path / "model.h5", {"t1": 4, "t2": 3, "t3": 2, "t4": 1}, users, name="DCUE")
    wmf_train = _emb(tmp_path / "wmf_train.h5", {"r1": 2, "r2": -1, "r3": 0}, users, source="wmf", fit_on="train")
    return tmp_path, plays, splits, artists, model, wmf_train


def test_artists_score_semi_cold_and_fully_cold_songs_apart(by_artist):
    _, plays, splits, artists, model, _ = by_artist
    plain = _json(invoke(["score", model, "--plays", plays, "--splits", splits, "--popularity", "--json"]))
    result = invoke(["score", model, "--plays", plays, "--splits", splits, "--popularity", "--json",
                     "--artists", artists])
    report = _json(result)
    assert f"Warning: 1 songs of {artists} have tracks by different artists: each keeps its first" in result.stderr
    assert report["models"] == plain["models"]  # the whole task's figures are as without --artists
    groups = report["artist_groups"]
    assert groups["songs"] == {"semi-cold": 2, "fully-cold": 2} and groups["without_artist"] == 1
    semi, fully = groups["semi-cold"], groups["fully-cold"]
    assert semi["items"] == 2 and semi["users"] == 1  # B played both semi-cold songs: no negative
    assert fully["items"] == 2 and fully["users"] == 2
    auc = lambda group, row: group["models"][row]["metrics"]["auc"]["mean"]
    assert auc(semi, 1) == 1.0  # A: t1 (4) above t2 (3)
    assert auc(fully, 1) == 0.5  # A: t3 above t4, right; C: t4 below t3, wrong
    assert "1 of these songs have no artist in" in fully["notes"][0]
    table = invoke(["score", model, "--plays", plays, "--splits", splits, "--artists", artists]).stdout
    assert "semi-cold songs: the test songs whose artist has training songs: 2 songs, 1 users" in table
    assert "fully cold songs: the test songs whose artist has no training song: 2 songs, 2 users" in table


def test_artist_mean_baseline_and_against(by_artist):
    _, plays, splits, artists, model, wmf_train = by_artist
    report = _json(invoke(["score", model, "--plays", plays, "--splits", splits, "--artists", artists,
                           "--artist-mean", wmf_train, "--against", model, "--json"]))
    assert [m["name"] for m in report["models"]] == ["DCUE", "Artist mean"]  # --against: DCUE first
    mean = report["models"][1]
    # X's mean 1 (r1 2, r3 0), Y's -1, the global mean 1/3 for t3 (Z has no training song) and t4.
    # A: t1 (1) beats t2 and t4, t3 (1/3) beats t2 and ties t4: 3.5/4; B: t1 beats t3 and t4, t2 (-1)
    # neither: 2/4; C: t4 beats t2, ties t3, loses to t1: 1.5/3
    assert mean["metrics"]["auc"]["mean"] == pytest.approx((3.5 / 4 + 2 / 4 + 1.5 / 3) / 3)
    assert "mean WMF factors of its artist's training songs" in mean["note"]
    groups = report["artist_groups"]
    assert groups["semi-cold"]["models"][1]["metrics"]["auc"]["mean"] == 1.0
    assert groups["fully-cold"]["models"][1]["metrics"]["auc"]["mean"] == 0.5  # every such song ties
    assert groups["semi-cold"]["models"][1]["vs_first"]["auc"]["diff"] == 0.0


def test_artist_option_errors(by_artist, tmp_path):
    _, plays, splits, artists, model, wmf_train = by_artist
    base = ["score", model, "--plays", plays, "--splits", splits]
    r = invoke(base + ["--artist-mean", wmf_train], expect=2)
    assert "--artist-mean needs --artists" in r.stderr
    r = invoke(["score", model, "--train-plays", plays, "--test-plays", plays, "--artists", artists], expect=2)
    assert "it applies to the cold-start protocol" in r.stderr
    fails(base + ["--against", "nope"], "--against 'nope' is no row of the table: give one of 'DCUE', or one of "
          "the files.", expect=2)
    other = _write(tmp_path / "other.tsv", "x1\tSomeone\n")
    fails(base + ["--artists", other], f"none of the 4 test songs has an artist in {other} (its items look like "
          "'x1', the songs like 't1', 't2'): give the map of these songs, keyed by song id.")
    fails(base + ["--artists", artists, "--artist-mean", model],
          f"--artist-mean {model} has no vector of a training song of the splits: give the WMF factors fitted "
          "on these training songs (`dcue wmf --fit-on train`).")

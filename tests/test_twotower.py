"""`dcue twotower`: the paper's index ablation, DCUE's towers over user and song indices (dcue_cli/twotower.py)."""

import numpy as np
import pytest
from conftest import assert_absent, error_line, fails, invoke

SMALL = ["--epochs", "3", "--steps-per-epoch", "40", "--batch-size", "256", "--warmup-steps", "10", "--lr", "0.05",
         "--embed-dim", "16", "--user-embed-dim", "16", "--hidden", "16"]


@pytest.fixture(scope="module")
def tastes(tmp_path_factory):
    """90 songs of three styles, 60 users who each play mostly one style; 20% of each user's plays
    held out (test.tsv), and splits for the cold-start protocol."""
    d = tmp_path_factory.mktemp("twotower")
    rng = np.random.default_rng(0)
    style = np.arange(90) % 3
    train, test = [], []
    for u in range(60):
        liked = rng.choice(np.flatnonzero(style == u % 3), 20, replace=False)
        other = rng.choice(np.flatnonzero(style != u % 3), 3, replace=False)
        for k, i in enumerate(np.concatenate([liked, other])):
            (test if k % 5 == 0 and k < 20 else train).append(f"u{u:02d}\ts{i:02d}\t{1 + k % 3}\n")
    (d / "train.tsv").write_text("".join(train))
    (d / "test.tsv").write_text("".join(test))
    (d / "plays.tsv").write_text("".join(train + test))
    (d / "splits.tsv").write_text("".join(f"s{i:02d}\t{'train' if i < 70 else 'test'}\n" for i in range(90)))
    return d


def test_the_index_model_learns_each_users_style_and_scores_warm(tastes, tmp_path):
    from dcue_cli.io.embeddings import read_embeddings

    out = tmp_path / "index.h5"
    r = invoke(["twotower", tastes / "train.tsv", "-o", out, *SMALL])
    assert r.stdout == "" and "wrote" in r.stderr
    emb = read_embeddings(out, need_users=True)
    assert emb.source == "dcue-index" and emb.similarity == "cosine"
    assert len(emb.user_ids) == 60 and len(emb.item_ids) == 90 and emb.item_vectors.shape[1] == 16
    assert emb.attrs["fit_on"] == "all" and emb.attrs["steps"] == 120
    report = invoke(["score", out, "--train-plays", tastes / "train.tsv", "--test-plays", tastes / "test.tsv",
                     "--json"]).stdout
    import json

    assert json.loads(report)["models"][0]["metrics"]["auc"]["mean"] > 0.85  # held-out plays of each user's style
    again = tmp_path / "again.h5"
    invoke(["twotower", tastes / "train.tsv", "-o", again, *SMALL])
    np.testing.assert_array_equal(read_embeddings(again).item_vectors, emb.item_vectors)  # the seed fixes it


def test_fitted_on_all_songs_it_is_labelled_an_upper_bound_and_on_train_songs_it_cannot_score_cold(tastes, tmp_path):
    cold = ["--plays", tastes / "plays.tsv", "--splits", tastes / "splits.tsv"]
    invoke(["twotower", tastes / "plays.tsv", "--splits", tastes / "splits.tsv", "--fit-on", "all",
            "-o", tmp_path / "all.h5", *SMALL])
    r = invoke(["score", tmp_path / "all.h5", *cold])
    assert "fitted on plays of the very songs ranked here: an upper bound, not a cold-start method" in r.stdout
    invoke(["twotower", tastes / "plays.tsv", "--splits", tastes / "splits.tsv", "--fit-on", "train",
            "-o", tmp_path / "train.h5", *SMALL])
    r = invoke(["score", tmp_path / "train.h5", *cold], expect=1)
    assert error_line(r) == (f"{tmp_path / 'train.h5'} is the index model fitted on the train songs only (fit_on="
                             "train), so it has no vector for the cold songs: refit with --fit-on all for the "
                             "paper's row, or predict them from audio with `dcue train`.")


def test_bad_inputs_are_one_line_and_write_nothing(tastes, tmp_path):
    out = tmp_path / "index.h5"
    plays, splits = tastes / "plays.tsv", tastes / "splits.tsv"
    r = invoke(["twotower", plays, "--splits", splits, "-o", out], expect=2)
    assert "--splits needs --fit-on" in r.stderr
    r = invoke(["twotower", plays, "--fit-on", "all", "-o", out], expect=2)
    assert "--fit-on needs --splits" in r.stderr
    r = invoke(["twotower", plays, "-o", out, "--hidden", "16,x"], expect=2)
    assert "expected comma-separated integers" in r.stderr
    (tmp_path / "empty.tsv").write_text("")
    r = invoke(["twotower", tmp_path / "empty.tsv", "-o", out], expect=1)
    assert "Traceback" not in r.stderr and error_line(r)
    fails(["twotower", plays, "-o", plays], f"-o {plays} is also the input PLAYS: writing it would destroy the "
          "input; give -o another file name.")
    (tmp_path / "notes.txt").write_text("mine\n")
    r = invoke(["twotower", plays, "-o", tmp_path / "notes.txt", *SMALL], expect=1)
    assert "not an embeddings file" in error_line(r) and (tmp_path / "notes.txt").read_text() == "mine\n"
    assert_absent(out)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_between_steps_and_writes_nothing(tastes, tmp_path, monkeypatch, sig):
    import os
    import signal

    from conftest import leftovers

    from dcue_cli.train.sampling import PairSampler

    real = PairSampler.batch

    def signalled(self, epoch, step):  # the signal lands during the sixth step
        if step == 5:
            os.kill(os.getpid(), getattr(signal, sig))
        return real(self, epoch, step)

    monkeypatch.setattr(PairSampler, "batch", signalled)
    out = tmp_path / "index.h5"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal
    try:
        result = invoke(["twotower", tastes / "plays.tsv", "-o", out, *SMALL], expect=130)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.stderr.strip().splitlines()[-1] == f"Warning: interrupted: nothing was written ({out} is as it was)."
    assert not out.exists() and leftovers(tmp_path) == []

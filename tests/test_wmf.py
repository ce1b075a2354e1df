"""`dcue wmf` and dcue_cli.wmf: confidences, fitting, the embeddings it writes, its errors."""

import json
import re

import numpy as np
import pytest
from conftest import assert_absent, error_line, fails, invoke, shared_data

from dcue_cli.io.embeddings import read_embeddings
from dcue_cli.runtime import implicit_device as choose_device
from dcue_cli.wmf import WmfConfig, confidence, fit_wmf


def _block_plays(path, users=40, items=30, seed=0):
    """Two taste groups: users 0..19 play items 0..14, the others items 15..29 (a few each)."""
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(users):
        group = range(items // 2) if u < users // 2 else range(items // 2, items)
        for i in rng.choice(list(group), size=6, replace=False):
            lines.append(f"u{u}\ts{i}\t{rng.integers(1, 20)}\n")
    path.write_text("".join(lines))
    return path


def _splits(path, items=30):
    path.write_text("".join(f"s{i}\t{'train' if i % 5 else 'test'}\n" for i in range(items)))
    return path


def test_confidence_forms():
    counts = np.array([1, 3, 100])
    assert confidence(counts, 40, "linear").tolist() == [41, 121, 4001]
    np.testing.assert_allclose(confidence(counts, 2, "log", epsilon=0.5), 1 + 2 * np.log1p(counts / 0.5), rtol=1e-6)
    assert confidence(counts, 1).dtype == np.float32


def test_fit_is_seeded_and_learns_the_groups(tmp_path):
    from dcue_cli.io.plays import read_plays

    plays = read_plays(_block_plays(tmp_path / "p.tsv"))
    config = WmfConfig(factors=4, iterations=10, regularization=0.1, alpha=5, threads=1)
    users, items, info = fit_wmf(plays.to_csr(), config, show_progress=False)
    again, _, _ = fit_wmf(plays.to_csr(), WmfConfig(**{**config.__dict__, "threads": 2}), show_progress=False)
    assert info["device"] == "cpu" and users.dtype == np.float32
    assert users.shape == (plays.n_users, 4) and items.shape == (plays.n_items, 4)
    np.testing.assert_allclose(users, again, rtol=1e-5, atol=1e-6)  # same seed, any thread count
    scores = users @ items.T
    group_u = np.array([int(u[1:]) < 20 for u in plays.user_ids])
    group_i = np.array([int(i[1:]) < 15 for i in plays.item_ids])
    same = group_u[:, None] == group_i[None, :]
    assert scores[same].mean() > scores[~same].mean() + 0.3


def test_device_choice_without_cuda():
    import implicit.gpu

    if implicit.gpu.HAS_CUDA:
        pytest.skip("CUDA present")
    assert choose_device("auto") == "cpu"
    assert choose_device("cpu") == "cpu"
    with pytest.raises(Exception, match="this implicit has no CUDA support here"):
        choose_device("cuda")


@pytest.mark.gpu
def test_gpu_fit_matches_shapes(tmp_path):
    import implicit.gpu

    if not implicit.gpu.HAS_CUDA:
        pytest.skip("implicit has no CUDA here")
    from dcue_cli.io.plays import read_plays

    plays = read_plays(_block_plays(tmp_path / "p.tsv"))
    users, _items, info = fit_wmf(plays.to_csr(), WmfConfig(factors=8, iterations=5, device="cuda"))
    assert info["device"] == "gpu" and users.shape == (plays.n_users, 8)


def test_cli_writes_the_embeddings_contract_and_says_where_it_ran(tmp_path):
    plays = _block_plays(tmp_path / "p.tsv")
    out = tmp_path / "wmf.h5"
    result = invoke(["wmf", plays, "-o", out, "--factors", 5, "--iterations", 3, "--alpha", 2,
                     "--confidence", "log", "--epsilon", 0.5, "--regularization", 0.2, "--seed", 7, "--threads", 1])
    assert result.stdout == ""
    assert "fitting WMF on the CPU (1 thread)" in result.stderr
    assert "OpenBLAS" not in result.stderr and "Warning" not in result.stderr
    emb = read_embeddings(out, need_users=True)
    assert emb.source == "wmf" and emb.similarity == "dot"
    assert emb.item_vectors.shape == (30, 5) and emb.user_vectors.shape == (40, 5)
    expected = {"factors": 5, "iterations": 3, "alpha": 2.0, "confidence": "log", "epsilon": 0.5,
                "regularization": 0.2, "seed": 7, "fit_on": "all", "wmf_device": "cpu", "wmf_threads": 1,
                "n_users": 40, "n_items": 30, "plays": "p.tsv", "name": "WMF"}
    for key, value in expected.items():
        assert emb.attrs[key] == value, key
    assert "implicit_version" in emb.attrs


def test_fit_on_train_keeps_only_train_songs(tmp_path):
    plays = _block_plays(tmp_path / "p.tsv")
    splits = _splits(tmp_path / "splits.tsv")
    invoke(["wmf", plays, "--splits", splits, "--fit-on", "train", "-o", tmp_path / "t.h5", "--factors", 3,
            "--iterations", 2])
    invoke(["wmf", plays, "--splits", splits, "--fit-on", "all", "-o", tmp_path / "a.h5", "--factors", 3,
            "--iterations", 2])
    train = read_embeddings(tmp_path / "t.h5")
    everything = read_embeddings(tmp_path / "a.h5")
    assert all(int(i[1:]) % 5 for i in train.item_ids) and len(train.item_ids) == 24
    assert len(everything.item_ids) == 30
    assert train.attrs["fit_on"] == "train" and train.attrs["splits"] == "splits.tsv"


def test_usage_errors(tmp_path):
    plays = _block_plays(tmp_path / "p.tsv")
    splits = _splits(tmp_path / "splits.tsv")
    result = invoke(["wmf", plays, "--splits", splits, "-o", tmp_path / "x.h5"], expect=2)
    assert "--splits needs --fit-on: 'all' (the paper's WMF row" in result.stderr
    result = invoke(["wmf", plays, "--fit-on", "train", "-o", tmp_path / "x.h5"], expect=2)
    assert "--fit-on needs --splits" in result.stderr
    result = invoke(["wmf", plays, "-o", tmp_path], expect=2)
    assert "is a directory" in result.stderr
    assert not (tmp_path / "x.h5").exists()


def test_fit_on_train_needs_train_songs(tmp_path):
    plays = _block_plays(tmp_path / "p.tsv")
    (tmp_path / "other.tsv").write_text("".join(f"x{i}\ttrain\n" for i in range(30)))
    fails(["wmf", plays, "--splits", tmp_path / "other.tsv", "--fit-on", "train", "-o", tmp_path / "w.h5"],
          "--fit-on train: no song of the plays is in the train split of --splits: give the plays and splits "
          "written together by `dcue subset`.")
    assert_absent(tmp_path / "w.h5")


def test_bad_plays_line_is_named(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("u1\ts1\t3\nu2\ts2\tlots\n")
    result = invoke(["wmf", bad, "-o", tmp_path / "x.h5"], expect=1)
    assert f"{bad}:2: count 'lots' is not a positive integer" in result.stderr
    assert not (tmp_path / "x.h5").exists()


def test_cuda_without_cuda_is_a_one_line_error(tmp_path):
    import implicit.gpu

    if implicit.gpu.HAS_CUDA:
        pytest.skip("CUDA present")
    result = invoke(["wmf", _block_plays(tmp_path / "p.tsv"), "-o", tmp_path / "x.h5", "--device", "cuda"], expect=1)
    assert result.stderr.strip() == ("Error: --device cuda: this implicit has no CUDA support here "
                                     "(implicit.gpu.HAS_CUDA is False): use --device cpu, or install implicit "
                                     "built with CUDA.")


def test_lastfm_slice_warm_pipeline_beats_popularity(tmp_path):
    """Real data: HetRec Last.fm, its first 1,200 users, through subset -> wmf -> score (warm)."""
    source = shared_data("lastfm_hetrec2k", "user_artists.dat")
    lines = source.read_bytes().splitlines(keepends=True)
    users = set()
    keep = [lines[0]]
    for line in lines[1:]:
        user = line.split(b"\t")[0]
        if user not in users and len(users) >= 1200:
            break
        users.add(user)
        keep.append(line)
    sliced = tmp_path / "user_artists.dat"
    sliced.write_bytes(b"".join(keep))
    invoke(["subset", sliced, "--header", "yes", "--songs", 0, "--users", 0, "--holdout-interactions", 0.2,
            "-o", tmp_path / "lf"])
    invoke(["wmf", tmp_path / "lf" / "plays.train.tsv", "-o", tmp_path / "wmf.h5", "--confidence", "log",
            "--alpha", 5, "--factors", 32, "--regularization", 10, "--iterations", 10])
    result = invoke(["score", tmp_path / "wmf.h5", "--train-plays", tmp_path / "lf" / "plays.train.tsv",
                     "--test-plays", tmp_path / "lf" / "plays.test.tsv", "--popularity", "--json",
                     "--bootstrap", 200])
    report = json.loads(result.stdout)
    popularity, wmf = report["models"]
    assert popularity["note"] == "ranks by total play count in the training plays"
    assert report["users"] > 1000
    assert wmf["metrics"]["auc"]["mean"] > 0.85
    assert wmf["vs_first"]["precision@10"]["ci_low"] > 0  # clearly better than popularity at the top


# ----------------------------------------------------------------------------- REL-SIGNALS: full disk, seeds, divergence


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    from conftest import disk_full_line, fill_the_disk, leftovers

    plays = _block_plays(tmp_path / "p.tsv")
    before = plays.read_bytes()
    fill_the_disk(monkeypatch)
    out = tmp_path / "wmf.h5"
    fails(["wmf", plays, "-o", out, "--factors", 3, "--iterations", 1], disk_full_line(out))
    assert not out.exists() and leftovers(tmp_path) == [] and plays.read_bytes() == before


@pytest.mark.parametrize("command", ["subset", "wmf", "train", "synth", "autotag", "score"])
@pytest.mark.parametrize("seed", [-1, 10**23])
def test_a_seed_out_of_range_is_a_misuse_for_every_command(command, seed):
    # one definition (options.seed_option): what numpy, implicit and torch all take
    result = invoke([command, "--seed", seed, "x", "y"], expect=2)
    assert f"Error: Invalid value for '--seed': {seed} is not in the range 0<=x<=4294967295." in result.stderr
    assert "Traceback" not in result.stderr


def test_the_largest_seed_fits(tmp_path):
    plays = _block_plays(tmp_path / "p.tsv")
    invoke(["wmf", plays, "-o", tmp_path / "w.h5", "--factors", 3, "--iterations", 1, "--seed", 2**32 - 1])
    invoke(["subset", plays, "-o", tmp_path / "sub", "--seed", 2**32 - 1, "--songs", 10, "--users", 10])
    invoke(["synth", tmp_path / "syn", "--songs", 2, "--users", 2, "--seconds", 1, "--format", "wav",
            "--seed", 2**32 - 1])


@pytest.mark.parametrize("option,value", [("--alpha", "nan"), ("--alpha", "inf"), ("--regularization", "nan"),
                                          ("--epsilon", "-inf")])
def test_a_non_finite_setting_is_a_misuse(tmp_path, option, value):
    plays = _block_plays(tmp_path / "p.tsv")
    result = invoke(["wmf", plays, "-o", tmp_path / "w.h5", option, value], expect=2)
    assert f"Error: Invalid value for '{option}': {value} is not a finite number: give an ordinary number." \
        in result.stderr
    assert not (tmp_path / "w.h5").exists()


@pytest.mark.parametrize("setting", [["--alpha", "1e20"], ["--alpha", "1e38"], ["--regularization", "1e30"]])
def test_a_diverging_fit_is_one_line_saying_what_to_change(tmp_path, setting):
    plays = _block_plays(tmp_path / "p.tsv")
    out = tmp_path / "w.h5"
    alpha = float(setting[1]) if setting[0] == "--alpha" else 40.0
    regularization = float(setting[1]) if setting[0] == "--regularization" else 0.01
    fails(["wmf", plays, "-o", out, "--factors", 3, "--iterations", 2, *setting],
          f"WMF diverged (non-finite factors with --alpha {alpha:g} and --regularization {regularization:g}): "
          "give a smaller --alpha (default 40) or a --regularization nearer the default 0.01.")
    assert_absent(out)


# ----------------------------------------------------------------------------- a third round of hostile inputs


@pytest.mark.parametrize("command", [["wmf", "p.tsv"], ["embed", "m.pt", "mels.h5"], ["train", "mels.h5", "p.tsv"],
                                     ["melspec", "audio"], ["melspec", "--merge", "a.h5"]])
def test_a_binary_output_to_stdout_is_a_misuse(tmp_path, monkeypatch, command):
    # `-o -` wrote a file named '-' (wmf, embed, train): HDF5 and checkpoints cannot go to stdout
    monkeypatch.chdir(tmp_path)
    result = invoke([*command, "-o", "-"], expect=2)
    assert ("Error: Invalid value for '-o' / '--output': '-': this output is a binary file (HDF5 or a checkpoint), "
            "which cannot go to stdout: give a file name.") in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_factors_too_many_for_the_memory_are_one_line_before_the_fit(tmp_path, monkeypatch):
    from dcue_cli import runtime

    plays = _block_plays(tmp_path / "p.tsv")
    monkeypatch.setattr(runtime, "available_memory", lambda: 10**9)
    out = tmp_path / "w.h5"  # --factors 100000 was numpy's MemoryError traceback from implicit
    result = invoke(["wmf", plays, "-o", out, "--factors", 20000], expect=1)
    assert re.fullmatch(r"--factors 20000 for \d+ users and \d+ items needs about 3\.\d GB but 1\.0 GB is free in "
                        r"host memory: lower --factors\.", error_line(result))
    assert_absent(out)

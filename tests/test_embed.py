"""`dcue embed`: item vectors from audio for every item (cold ones too), user vectors, the contract."""

import numpy as np
import pytest
from conftest import N_MELS, invoke, make_toy, toy_args


@pytest.fixture(scope="module")
def model(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model.pt"
    invoke(toy_args(toy, out, "--epochs", "2", "--patience", "0"))
    return out


def test_embed_writes_every_item_and_user(toy, model, tmp_path):
    import torch

    from dcue_cli.io.embeddings import read_embeddings

    out = tmp_path / "dcue.h5"
    r = invoke(["embed", model, toy / "mels.h5", "-o", out])
    assert r.stdout == "" and "60 items and" in r.stderr
    emb = read_embeddings(out, need_users=True)
    ckpt = torch.load(model, weights_only=True)
    assert emb.source == "dcue" and emb.similarity == "cosine"
    assert list(emb.item_ids) == [f"S{i:04d}" for i in range(60)]  # train, valid and test songs alike
    assert list(emb.user_ids) == ckpt["user_ids"]
    assert emb.item_vectors.shape == (60, 32) and emb.user_vectors.shape == (len(ckpt["user_ids"]), 32)
    assert np.isfinite(emb.item_vectors).all() and np.isfinite(emb.user_vectors).all()
    assert emb.attrs["objective"] == "hinge" and emb.attrs["model"] == str(model)


def test_item_vector_is_the_mean_over_non_overlapping_crops(toy, model, tmp_path):
    import h5py
    import torch

    from dcue_cli.io.checkpoints import load_checkpoint, model_from_checkpoint
    from dcue_cli.io.embeddings import read_embeddings

    out = tmp_path / "dcue.h5"
    invoke(["embed", model, toy / "mels.h5", "-o", out, "--batch-crops", "7"])  # batches cut across items
    emb = read_embeddings(out)
    ckpt = load_checkpoint(model)
    net = model_from_checkpoint(ckpt).eval()
    mean = torch.tensor(ckpt["normalisation"]["mean"])
    std = torch.tensor(ckpt["normalisation"]["std"])
    with h5py.File(toy / "mels.h5") as f:
        offsets = f["offsets"][()]
        lengths = np.diff(offsets)
        checked = set()
        for i in range(60):
            x = torch.tensor(f["mel"][offsets[i]:offsets[i + 1]].astype(np.float32))
            x = (x - mean) / std
            if len(x) >= 32:
                crops = torch.stack([x[k * 32:(k + 1) * 32] for k in range(len(x) // 32)])
                checked.add("long")
            else:
                crops = x[torch.arange(32) % len(x)].unsqueeze(0)  # tiled
                checked.add("short")
            with torch.no_grad():
                expected = net.audio(crops).mean(0).numpy()
            assert np.allclose(emb.item_vectors[i], expected, atol=1e-4), (i, lengths[i])
    assert checked == {"long", "short"}


def test_cold_items_of_another_file_are_embedded(tmp_path, model):
    from dcue_cli.io.embeddings import read_embeddings

    other = make_toy(tmp_path / "other", n_songs=9, prefix="NEW", seed=5)
    invoke(["embed", model, other / "mels.h5",
            "-o", tmp_path / "new.h5"])
    emb = read_embeddings(tmp_path / "new.h5")
    assert list(emb.item_ids) == [f"NEW{i:04d}" for i in range(9)]


def test_scores_through_dcue_score(toy, model, tmp_path):
    """embed's output is what `score` reads; the toy's structure shows as an AUC well above chance."""
    import json

    out = tmp_path / "dcue.h5"
    invoke(["embed", model, toy / "mels.h5", "-o", out])
    r = invoke(["score", out, "--plays", toy / "plays.tsv", "--splits", toy / "splits.tsv", "--json"])
    result = json.loads(r.stdout)
    assert result["protocol"] == "cold-start" and result["models"][0]["source"] == "dcue"
    assert result["models"][0]["missing_items"] == 0
    assert result["models"][0]["metrics"]["auc"]["mean"] > 0.7


def test_mismatched_features_are_refused(model, tmp_path):
    import h5py

    narrow = make_toy(tmp_path / "narrow", n_songs=5, n_mels=8)
    r = invoke(["embed", model, f"{narrow}/mels.h5", "-o", tmp_path / "x.h5"], expect=1)
    assert r.stderr.strip() == (f"Error: {narrow}/mels.h5 has 8 mel bins but the model {model} takes "
                                f"{N_MELS}: compute the mels with --n-mels {N_MELS}.")
    other = make_toy(tmp_path / "other_sr", n_songs=5)
    with h5py.File(f"{other}/mels.h5", "a") as f:
        f.attrs["sr"] = 44100
    r = invoke(["embed", model, f"{other}/mels.h5", "-o", tmp_path / "x.h5"], expect=1)
    assert "has sr=44100 (the model was trained on sr=22050)" in r.stderr and "--allow-feature-mismatch" in r.stderr
    assert not (tmp_path / "x.h5").exists()
    r = invoke(["embed", model, f"{other}/mels.h5", "-o", tmp_path / "x.h5", "--allow-feature-mismatch"])
    assert "embedding anyway" in r.stderr and (tmp_path / "x.h5").exists()


def test_not_a_model(toy, tmp_path):
    r = invoke(["embed", toy / "plays.tsv", toy / "mels.h5", "-o", tmp_path / "x.h5"], expect=1)
    assert r.stderr.startswith(f"Error: {toy / 'plays.tsv'} is not a dcue model checkpoint")
    assert "write it with `dcue train`" in r.stderr
    r = invoke(["embed", tmp_path / "absent.pt", toy / "mels.h5", "-o", tmp_path / "x.h5"], expect=1)
    assert "absent.pt does not exist" in r.stderr


def test_regression_model_embeds_with_wmf_users(toy, tmp_path):
    from dcue_cli.io.embeddings import Embeddings, read_embeddings, write_embeddings
    from dcue_cli.io.plays import read_plays
    from dcue_cli.io.splits import read_splits

    plays, splits = read_plays(toy / "plays.tsv"), read_splits(toy / "splits.tsv")
    rng = np.random.default_rng(0)
    train = np.array([i for i in plays.item_ids if splits[i] == "train"], dtype=object)
    users = rng.normal(size=(plays.n_users, 6)).astype(np.float32)
    write_embeddings(tmp_path / "wmf.h5", Embeddings(train, rng.normal(size=(len(train), 6)).astype(np.float32),
                                                     plays.user_ids, users, source="wmf", similarity="dot",
                                                     attrs={"fit_on": "train"}))
    invoke(toy_args(toy, tmp_path / "reg.pt", "--objective", "regress", "--target", tmp_path / "wmf.h5",
                    "--epochs", "1"))
    invoke(["embed", tmp_path / "reg.pt", toy / "mels.h5", "-o", tmp_path / "reg.h5"])
    emb = read_embeddings(tmp_path / "reg.h5", need_users=True)
    assert emb.source == "wmf-regression" and emb.similarity == "dot"
    assert list(emb.user_ids) == list(plays.user_ids) and np.allclose(emb.user_vectors, users)
    assert emb.item_vectors.shape == (60, 6)


def test_pipeline_from_audio(tmp_path):
    """synth -> melspec -> subset -> train -> embed -> score, tiny, with real subcommands."""
    import json

    d = tmp_path
    invoke(["-q", "synth", d / "data", "--songs", "40", "--users", "80", "--seconds", "4", "-j", "1"])
    invoke(["-q", "melspec", d / "data" / "audio", "-o", d / "mels.h5", "--id-map", d / "data" / "unique_tracks.txt",
            "-j", "0"])
    invoke(["-q", "subset", d / "data" / "train_triplets.txt", "-o", d / "sub", "--songs", "0", "--users", "0"])
    invoke(["-q", "train", d / "mels.h5", d / "sub" / "plays.tsv", "--splits", d / "sub" / "splits.tsv",
            "-o", d / "model.pt", "--conv-channels", "16,16,16", "--conv-kernels", "4,4,4", "--pool-sizes", "4,4,4",
            "--embed-dim", "16", "--user-embed-dim", "16", "--user-hidden", "16", "--epochs", "2",
            "--shared-negatives", "--batch-size", "128", "--steps-per-epoch", "0"])
    invoke(["-q", "embed", d / "model.pt", d / "mels.h5", "-o", d / "dcue.h5"])
    r = invoke(["score", d / "dcue.h5", "--plays", d / "sub" / "plays.tsv", "--splits", d / "sub" / "splits.tsv",
                "--json"])
    model = json.loads(r.stdout)["models"][0]
    assert model["missing_items"] == 0 and 0 <= model["metrics"]["auc"]["mean"] <= 1


@pytest.mark.gpu
def test_embed_on_gpu_matches_cpu(toy, model, tmp_path):
    import torch

    from dcue_cli.io.embeddings import read_embeddings

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    invoke(["embed", model, toy / "mels.h5", "-o", tmp_path / "cpu.h5", "--device", "cpu"])
    invoke(["embed", model, toy / "mels.h5", "-o", tmp_path / "gpu.h5", "--device", "cuda", "--no-amp"])
    a, b = read_embeddings(tmp_path / "cpu.h5"), read_embeddings(tmp_path / "gpu.h5")
    assert np.allclose(a.item_vectors, b.item_vectors, atol=1e-3)
    assert np.allclose(a.user_vectors, b.user_vectors, atol=1e-3)


# ----------------------------------------------------------------------------- REL-SIGNALS: full disk, Ctrl-C


def test_a_full_disk_is_one_line_and_leaves_nothing(toy, model, tmp_path, monkeypatch):
    from conftest import disk_full_line, error_line, fill_the_disk, leftovers

    fill_the_disk(monkeypatch)
    out = tmp_path / "dcue.h5"
    result = invoke(["embed", model, toy / "mels.h5", "-o", out], expect=1)
    assert error_line(result) == disk_full_line(out)
    assert not out.exists() and leftovers(tmp_path) == []


def test_ctrl_c_exits_130_saying_nothing_was_written(toy, model, tmp_path, monkeypatch):
    from dcue_cli.io import embeddings

    def interrupted(*args, **kwargs):  # a second Ctrl-C as the vectors are being written
        raise KeyboardInterrupt

    monkeypatch.setattr(embeddings, "write_bytes_atomically", interrupted)
    out = tmp_path / "dcue.h5"
    result = invoke(["embed", model, toy / "mels.h5", "-o", out], expect=130)
    assert f"interrupted: nothing was written ({out} is as it was)." in result.stderr
    assert "Aborted!" not in result.stderr and not out.exists()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_between_batches_of_crops_and_writes_nothing(toy, model, tmp_path, monkeypatch, sig):
    import os
    import signal

    from conftest import leftovers

    from dcue_cli import crops

    real = crops.item_vectors

    def signalled(*args, **kwargs):  # the signal lands as the first chunk's forward passes start
        os.kill(os.getpid(), getattr(signal, sig))
        return real(*args, **kwargs)

    monkeypatch.setattr(crops, "item_vectors", signalled)
    out = tmp_path / "dcue.h5"
    # as from a terminal, even under a pytest started in the background (SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = invoke(["embed", model, toy / "mels.h5", "-o", out, "--batch-crops", "4"], expect=130)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.stderr.strip().splitlines()[-1] == (
        f"Warning: interrupted: nothing was written ({out} is as it was).")
    assert "Traceback" not in result.stderr and not out.exists() and leftovers(tmp_path) == []


def test_an_artist_model_adds_each_items_artist_vector(toy, tmp_path):
    """item vector = its audio's + its artist's; an artist without training songs, or none, is the unknown."""
    import torch

    from dcue_cli.io.checkpoints import save_checkpoint
    from dcue_cli.io.embeddings import read_embeddings

    amap = tmp_path / "artists.tsv"
    amap.write_text("".join(f"S{i:04d}\tA{i % 7}\n" for i in range(55)) + "S0055\tNewcomer\n")
    model = tmp_path / "artist.pt"
    invoke(toy_args(toy, model, "--epochs", "1", "--artists", amap))
    result = invoke(["embed", model, toy / "mels.h5", "-o", tmp_path / "a.h5"], expect=2)
    assert result.stderr.strip() == (f"Error: {model} was trained with --artists: give embed --artists MAP, the "
                                     "artist map it was trained with (e.g. unique_tracks.txt).")
    assert not (tmp_path / "a.h5").exists()
    result = invoke(["embed", model, toy / "mels.h5", "-o", tmp_path / "a.h5", "--artists", amap])
    ckpt = torch.load(model, weights_only=True)
    vocab = ckpt["artist_vocab"]
    unseen = sum(f"A{i % 7}" not in vocab for i in range(55)) + 1  # + the newcomer
    assert f"{55 - unseen + 1:,} items by an artist with training songs, {unseen} by another artist and 4 with none" \
        in result.stderr
    # the same network without its artist embedding: the audio-only vectors
    audio_only = dict(ckpt, model={k: v for k, v in ckpt["model"].items() if not k.startswith("artist.")},
                      model_config=dict(ckpt["model_config"], n_artists=0))
    del audio_only["artist_vocab"]
    save_checkpoint(tmp_path / "audio.pt", audio_only)
    result = invoke(["embed", tmp_path / "audio.pt", toy / "mels.h5", "-o", tmp_path / "p.h5", "--artists", amap])
    assert "--artists ignored: " in result.stderr
    with_artist, plain = read_embeddings(tmp_path / "a.h5"), read_embeddings(tmp_path / "p.h5")
    assert with_artist.name == "dcue+artist" and plain.name == "dcue"
    index = {a: k + 1 for k, a in enumerate(vocab)}
    rows = [index.get(f"A{i % 7}", 0) if i < 55 else 0 for i in range(60)]
    weights = ckpt["model"]["artist.embedding.weight"].numpy() * ckpt["model_config"]["artist_scale"]
    assert np.allclose(with_artist.item_vectors - plain.item_vectors, weights[rows], atol=1e-5)
    assert np.array_equal(with_artist.user_vectors, plain.user_vectors)

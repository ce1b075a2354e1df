"""`dcue train`: the networks, the data path, the loop (checkpoints, resume, Ctrl-C, DDP), the CLI.

The fixture is a tiny synthetic world written here: songs of three "styles" whose log-mels
carry a style-specific spectral shape, users who mostly play one style. A small model
learns it in seconds on a CPU, so the tests check learning, not just plumbing.
"""

import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import N_MELS, REPO, invoke, make_toy, toy_args


def read_log(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:]]


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    """One model trained through the CLI, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("run") / "model.pt"
    result = invoke(toy_args(toy, out, "--epochs", "4", "--patience", "0"))
    return out, result


# ---- the networks ----


def test_default_architecture_is_the_papers():
    import torch

    from dcue_cli.model import DCUE, ModelConfig

    cfg = ModelConfig(n_users=7)
    model = DCUE(cfg)
    convs = [m for m in model.audio.features if isinstance(m, torch.nn.Conv1d)]
    pools = [m.kernel_size for m in model.audio.features if isinstance(m, torch.nn.MaxPool1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
        (128, 128, 4), (128, 256, 4), (256, 256, 4), (256, 256, 2), (256, 256, 1)]
    assert pools == [4, 4, 4, 2]
    assert cfg.frames_after_pooling() == 1  # 130 -> 32 -> 8 -> 2 -> 1
    assert model.audio.project.out_features == 256
    assert model.user.embedding.weight.shape == (7, 300)
    assert [m.out_features for m in model.user.mlp if isinstance(m, torch.nn.Linear)] == [300, 256]
    users, items = model(torch.randn(5, 130, 128), torch.tensor([0, 1, 2, 3, 6]))
    assert users.shape == (5, 256) and items.shape == (5, 256)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_cosine_all_is_every_users_cosine_with_every_item():
    import torch

    from dcue_cli.model import cosine, cosine_all

    users, items = torch.randn(5, 7), torch.randn(3, 7)
    expanded = cosine(users, items.unsqueeze(0).expand(5, -1, -1))
    assert torch.allclose(cosine_all(users, items), expanded, atol=1e-6)


def test_same_padding_matches_keras_for_even_kernels():
    import torch

    from dcue_cli.model import AudioNet, ModelConfig

    net = AudioNet(ModelConfig(n_mels=2, crop_frames=6, conv_channels=(1,), conv_kernels=(4,), pool_sizes=(1,),
                                batch_norm=False))
    conv = net.features[1]
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, :] = torch.tensor([1.0, 10.0, 100.0, 1000.0])
        conv.bias.zero_()
    x = torch.zeros(1, 6, 2)
    x[0, :, 0] = torch.arange(1.0, 7.0)
    out = net.features[:2](x.transpose(1, 2))[0, 0]
    # Keras 'same', kernel 4: one zero on the left, two on the right
    padded = [0, 1, 2, 3, 4, 5, 6, 0, 0]
    expected = [sum(w * padded[t + j] for j, w in enumerate([1, 10, 100, 1000])) for t in range(6)]
    assert out.tolist() == expected


def test_losses():
    import torch

    from dcue_cli.model import cosine, hinge_loss, softmax_loss

    pos = torch.tensor([0.9, 0.1])
    neg = torch.tensor([[0.0, 0.8], [0.5, -1.0]])
    assert torch.allclose(hinge_loss(pos, neg, 0.2), torch.tensor([0.1, 0.6]))
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert torch.allclose(hinge_loss(pos, neg, 0.2, mask), torch.tensor([0.0, 0.6]))
    sm = softmax_loss(pos, neg, 1.0)
    assert torch.allclose(sm[0], -torch.log_softmax(torch.tensor([0.9, 0.0, 0.8]), 0)[0])
    u = torch.tensor([[1.0, 0.0]])
    i = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]]])
    assert torch.allclose(cosine(u, i), torch.tensor([[1.0, 0.0, -1.0]]))


# ---- the data path ----


def test_crops_stay_inside_long_clips_and_tile_short_ones():
    import torch

    from dcue_cli.crops import crop_positions, random_starts, tiled_crop_plan

    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([130, 131, 500, 40, 1] * 200)
    starts = random_starts(lengths, 130, g)
    pos = crop_positions(starts, lengths, 130)
    long = lengths >= 130
    assert (starts[long] + 130 <= lengths[long]).all()
    assert (pos[long] == starts[long, None] + torch.arange(130)).all()  # contiguous, no wrap
    assert (pos < lengths[:, None]).all() and (pos >= 0).all()
    short = pos[lengths == 40][0]
    assert sorted(set(short.tolist())) == list(range(40))  # the whole short clip, tiled
    assert set(starts[lengths == 500].tolist()) > {0}  # starts vary
    item, start = tiled_crop_plan(np.array([260, 300, 40, 0, 130]), 130)
    assert item.tolist() == [0, 0, 1, 1, 2, 4] and start.tolist() == [0, 130, 0, 130, 0, 0]


def test_cache_holds_the_chosen_items_in_the_given_order(toy):
    import h5py
    import torch

    from dcue_cli.crops import MelCache, Normaliser
    from dcue_cli.io.mels import MelsFile

    items = np.array([5, 2, 3, 4, 9, 0])  # out of file order, with a consecutive run
    with MelsFile(toy / "mels.h5") as reader:
        cache = MelCache.load(reader, items, Normaliser([1.0], [2.0]), 32, "cpu")
    with h5py.File(toy / "mels.h5") as f:
        off = f["offsets"][()]
        for row, i in enumerate(items):
            expected = (torch.tensor(f["mel"][off[i]:off[i + 1]].astype(np.float32)) - 1.0) / 2.0
            start, n = int(cache.offsets[row]), int(cache.lengths[row])
            assert n == off[i + 1] - off[i]
            assert torch.equal(cache.normalise(cache.frames[start:start + n]), expected)


def _sampler(toy, **kwargs):
    from dcue_cli.crops import MelCache, Normaliser
    from dcue_cli.io.mels import MelsFile
    from dcue_cli.io.plays import read_plays
    from dcue_cli.io.splits import read_splits
    from dcue_cli.train.data import load_training_data
    from dcue_cli.train.sampling import PairSampler

    reader = MelsFile(toy / "mels.h5")
    data = load_training_data(reader.ids, reader.lengths, read_plays(toy / "plays.tsv"),
                              read_splits(toy / "splits.tsv"))
    cache = MelCache.load(reader, data.train_items, Normaliser([0.0], [1.0]), 32, "cpu")
    options = {"batch_size": 8, "negatives": 6, "seed": 3}
    options.update(kwargs)
    return data, PairSampler(data, cache, **options), reader


def test_negatives_are_training_songs_the_user_did_not_play(toy):
    data, sampler, reader = _sampler(toy)
    played = set(zip(data.pair_users.tolist(), data.pair_items.tolist()))
    import torch

    g = torch.Generator().manual_seed(1)
    users = torch.as_tensor(data.pair_users[:200])
    negs = sampler.draw_negatives(users, g)
    assert negs.shape == (200, 6)
    assert (negs >= 0).all() and (negs < len(data.train_items)).all()
    hits = sum((u, n) in played for u, row in zip(users.tolist(), negs.tolist()) for n in row)
    assert hits == 0
    # every training pair is a positive, every batch row is one
    b = sampler.batch(0, 0)
    assert b.crops.shape == (8, 7, 32, N_MELS) and b.n_crops == 56
    reader.close()


def test_batches_are_a_function_of_epoch_and_step(toy):
    import torch

    _, sampler, reader = _sampler(toy)
    a, b = sampler.batch(2, 5), sampler.batch(2, 6)
    sampler.batch(0, 0)
    again = sampler.batch(2, 5)
    assert torch.equal(a.crops, again.crops) and torch.equal(a.users, again.users)
    assert not torch.equal(a.crops, b.crops)
    # one epoch visits every training pair once (up to the wrap of the last batch)
    steps = sampler.steps_per_epoch()
    perm = sampler._permutation(1)
    assert sorted(perm.tolist()) == list(range(sampler.n_pairs)) and steps == math.ceil(sampler.n_pairs / 8)
    reader.close()


def test_shared_negatives_pool_masks_each_users_own_songs(toy):
    _, sampler, reader = _sampler(toy, shared_negatives=True, negatives=10, in_batch=True)
    b = sampler.batch(0, 3)
    assert b.crops.shape == (8 + 10, 32, N_MELS) and b.neg_mask.shape == (8, 10)
    assert b.batch_neg_mask.shape == (8, 8) and not b.batch_neg_mask.diagonal().any()
    assert sampler.crops_per_batch() == 18
    reader.close()


def test_song_grouped_batches_share_each_songs_crop_among_its_listeners(toy):
    import torch

    data, sampler, reader = _sampler(toy, shared_negatives=True, negatives=10, in_batch=True, batch_size=12,
                                     listeners_per_song=4)
    played = set(zip(data.pair_users.tolist(), data.pair_items.tolist()))
    assert sampler.crops_per_batch() == 3 + 10
    seen = torch.zeros(len(data.pair_users))
    for step in range(200):
        b = sampler.batch(0, step)
        assert b.crops.shape == (3 + 10, 32, N_MELS) and b.users.shape == (12,)
        assert b.pos_index.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
        songs = [int(x) for x in sampler.pair_items[sampler._permutation(0)[
            (step * 3 + torch.arange(3)) % sampler.n_pairs]]]
        for user, k in zip(b.users.tolist(), b.pos_index.tolist()):
            assert (user, songs[k]) in played  # every listener played the song of its crop
        # the batch's songs are negatives exactly where the user did not play them
        expected = [[(u, s) not in played for s in songs] for u in b.users.tolist()]
        assert b.batch_neg_mask.tolist() == expected
        key = torch.as_tensor(data.pair_users).long() * 10_000 + torch.as_tensor(data.pair_items).long()
        for u, k in zip(b.users.tolist(), b.pos_index.tolist()):
            seen[(key == u * 10_000 + songs[k]).nonzero()[0]] += 1
    # pairs stay (roughly) equally likely: no pair is drawn far more often than the others
    assert seen.sum() == 200 * 12 and seen.max() < 8 * seen.mean()
    # the same (epoch, step) gives the same batch (resume)
    assert torch.equal(sampler.batch(1, 5).users, sampler.batch(1, 5).users)
    with pytest.raises(ValueError, match="needs shared negatives"):
        _sampler(toy, listeners_per_song=2)
    reader.close()


def test_artist_batches_carry_each_crops_artist_with_dropout(toy):
    """Every crop carries its song's artist, the unknown (0) with probability p; the crops are those
    an audio-only run draws (the dropout is drawn after them)."""
    import torch

    n_train = len(_sampler(toy)[0].train_items)
    artists = np.arange(n_train) % 5 + 1
    _, plain, reader = _sampler(toy, shared_negatives=True, negatives=10, batch_size=12, listeners_per_song=4)
    _, kept, _ = _sampler(toy, shared_negatives=True, negatives=10, batch_size=12, listeners_per_song=4,
                          item_artists=artists)
    _, dropped, _ = _sampler(toy, shared_negatives=True, negatives=10, batch_size=12, listeners_per_song=4,
                             item_artists=artists, artist_dropout=0.4)
    zeros = 0
    for step in range(50):
        a, b, c = plain.batch(0, step), kept.batch(0, step), dropped.batch(0, step)
        assert a.artists is None and torch.equal(a.crops, b.crops) and torch.equal(a.crops, c.crops)
        assert b.artists.shape == (3 + 10,) and (b.artists > 0).all()
        assert ((c.artists == b.artists) | (c.artists == 0)).all()
        zeros += int((c.artists == 0).sum())
    assert 0.3 < zeros / (50 * 13) < 0.5
    assert torch.equal(dropped.batch(1, 3).artists, dropped.batch(1, 3).artists)  # resumable
    _, per_user, _ = _sampler(toy, item_artists=artists)
    assert per_user.batch(0, 0).artists.shape == (8, 7)  # each pair's positive and negatives
    reader.close()


def test_popularity_sampling_prefers_played_songs(toy):
    import torch

    data, sampler, reader = _sampler(toy, sampling="popularity")
    draws = sampler._draw_items((20000,), torch.Generator().manual_seed(0))
    counts = np.bincount(draws.numpy(), minlength=len(data.train_items))
    plays = np.bincount(data.pair_items, weights=data.pair_counts, minlength=len(data.train_items))
    assert np.corrcoef(counts, plays)[0, 1] > 0.95
    reader.close()


# ---- the loop, through the CLI ----


def test_training_learns_the_toy_world(trained):
    """Loss falls and the validation AUC rises well above chance, within a minute on a CPU."""
    out, result = trained
    rows = read_log(out.with_name("model.log.tsv"))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    losses = [float(r["loss"]) for r in rows]
    aucs = [float(r["valid_auc"]) for r in rows]
    assert losses[-1] < 0.7 * losses[0], losses
    assert max(aucs) > 0.75, aucs
    assert all(float(r["crops_per_s"]) > 0 for r in rows)
    assert "valid AUC" in result.stderr and result.stdout == ""


def test_curves_are_drawn_beside_the_log(trained):
    pytest.importorskip("matplotlib")
    from dcue_cli.io.training_log import read_training_log

    out, _result = trained
    png = out.with_name("model.curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    rows = read_training_log(out.with_name("model.log.tsv"))
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and all(0 < r["valid_auc"] <= 1 for r in rows)
    assert not list(out.parent.glob("*.tmp*"))  # drawn atomically


def test_no_curves_and_no_matplotlib(toy, tmp_path, monkeypatch):
    import sys

    invoke(toy_args(toy, tmp_path / "a.pt", "--epochs", "1", "--steps-per-epoch", "1", "--no-curves"))
    assert not (tmp_path / "a.curves.png").exists()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    r = invoke(toy_args(toy, tmp_path / "b.pt", "--epochs", "1", "--steps-per-epoch", "1"))
    assert (f"matplotlib is absent: no training curves in {tmp_path / 'b.curves.png'} "
            "(pip install 'dcue[plot]', or --no-curves to silence this)") in r.stderr
    assert (tmp_path / "b.pt").exists() and not (tmp_path / "b.curves.png").exists()


def test_checkpoint_is_plain_and_complete(trained):
    import torch

    out, _ = trained
    best = torch.load(out, weights_only=True)
    last = torch.load(out.with_name("model.last.pt"), weights_only=True)
    for ckpt in (best, last):
        assert ckpt["format"] == "dcue-model" and ckpt["objective"] == "hinge"
        assert {"model", "optimizer", "position", "best", "user_ids", "model_config", "train_config",
                "feature_config", "normalisation", "rng", "data"} <= set(ckpt)
        assert ckpt["model_config"]["conv_channels"] == [16, 32, 32]
        assert ckpt["feature_config"]["n_mels"] == N_MELS and ckpt["feature_config"]["sr"] == 22050
        assert len(ckpt["user_ids"]) == ckpt["model_config"]["n_users"]
        assert all(isinstance(u, str) for u in ckpt["user_ids"])
    assert last["position"]["epoch"] == 4 and last["position"]["step_in_epoch"] == 0
    assert last["position"]["global_step"] == 4 * math.ceil(last["data"]["n_pairs"] / 16)
    rows = read_log(out.with_name("model.log.tsv"))
    best_row = max(rows, key=lambda r: float(r["valid_auc"]))
    assert best["best"]["auc"] == pytest.approx(float(best_row["valid_auc"]), abs=1e-5)
    assert best["position"]["epoch"] == int(best_row["epoch"])


def test_resume_continues_exactly(toy, tmp_path):
    """2 epochs straight == 1 epoch, then --resume for the second (same batches, same weights)."""
    import torch

    a, b = tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"
    invoke(toy_args(toy, a, "--epochs", "2", "--patience", "0"))
    invoke(toy_args(toy, b, "--epochs", "1", "--patience", "0"))
    result = invoke(toy_args(toy, b, "--epochs", "2", "--resume", "--lr", "0.5"))
    assert "ignoring --lr 0.5 (the run has 0.05)" in result.stderr and "--batch-size" not in result.stderr
    sa = torch.load(a.with_name("model.last.pt"), weights_only=True)
    sb = torch.load(b.with_name("model.last.pt"), weights_only=True)
    for key, value in sa["model"].items():
        assert torch.equal(value, sb["model"][key]), key
    assert sa["position"] == sb["position"]
    assert [r["step"] for r in read_log(a.with_name("model.log.tsv"))] == \
           [r["step"] for r in read_log(b.with_name("model.log.tsv"))]


def test_interrupt_saves_and_resumes_mid_epoch(toy, tmp_path):
    """Ctrl-C mid-epoch saves the position; resuming gives the uninterrupted run's weights."""
    import torch

    from dcue_cli import log
    from dcue_cli.io.plays import read_plays
    from dcue_cli.io.splits import read_splits
    from dcue_cli.train.config import TrainConfig, TrainingInterrupted
    from dcue_cli.train.loop import Trainer

    log.configure(quiet=True)
    sizes = {"conv_channels": (16, 32, 32), "conv_kernels": (4, 4, 2), "pool_sizes": (4, 4, 2), "crop_frames": 32,
                 "embed_dim": 32, "user_embed_dim": 32, "user_hidden": (32,)}
    cfg = TrainConfig(batch_size=16, negatives=5, epochs=1, patience=0)
    plays, splits = read_plays(toy / "plays.tsv"), read_splits(toy / "splits.tsv")

    def trainer(out, resume=False):
        return Trainer(toy / "mels.h5", plays, splits, out, cfg, sizes, device="cpu", resume=resume)

    full = trainer(tmp_path / "full.pt")
    full.run()
    full.close()

    cut = trainer(tmp_path / "cut.pt")
    original = cut.sampler.batch

    def batch_then_stop(epoch, step):
        if step == 3:
            cut.request_stop()  # what the SIGINT handler does
        return original(epoch, step)

    cut.sampler.batch = batch_then_stop
    with pytest.raises(TrainingInterrupted) as info:
        cut.run()
    cut.close()
    assert info.value.step == 4  # the step in flight finished, then it stopped
    saved = torch.load(tmp_path / "cut.last.pt", weights_only=True)
    assert saved["position"]["step_in_epoch"] == 4 and saved["position"]["epoch"] == 0
    again = trainer(tmp_path / "cut.pt", resume=True)
    again.run()
    again.close()
    a = torch.load(tmp_path / "full.last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut.last.pt", weights_only=True)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_learning_rate_drops_on_a_plateau_and_early_stopping(toy, tmp_path):
    from dcue_cli import log
    from dcue_cli.io.plays import read_plays
    from dcue_cli.io.splits import read_splits
    from dcue_cli.train.config import TrainConfig
    from dcue_cli.train.loop import Trainer

    log.configure(quiet=True)
    cfg = TrainConfig(batch_size=16, negatives=5, epochs=10, steps_per_epoch=2, patience=3, plateau_patience=1,
                      plateau_factor=0.5, lr=0.04, lr_decay=0.0, schedule="keras", optimizer="sgd",
                      weight_decay=0.0)
    sizes = {"conv_channels": (16,), "conv_kernels": (4,), "pool_sizes": (4,), "crop_frames": 32, "embed_dim": 8,
                 "user_embed_dim": 8, "user_hidden": (8,)}
    trainer = Trainer(toy / "mels.h5", read_plays(toy / "plays.tsv"), read_splits(toy / "splits.tsv"),
                      tmp_path / "m.pt", cfg, sizes, device="cpu")
    trainer.validator = lambda model: 0.6  # never better after the first epoch
    result = trainer.run()
    trainer.close()
    rows = read_log(tmp_path / "m.log.tsv")
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.04, 0.04, 0.02, 0.01])
    assert result.stopped_early and result.epochs_run == 4 and result.best_epoch == 1


def test_objectives_and_options_run(toy, tmp_path):
    """softmax + popularity + log weighting + adam; the paper's per-user negatives with --cache none."""
    out = tmp_path / "sm.pt"
    invoke(toy_args(toy, out, "--epochs", "1", "--objective", "softmax", "--shared-negatives",
                    "--negative-sampling", "popularity", "--weighting", "log", "--optimizer", "adam",
                    "--lr", "0.003", "--no-batch-norm"))
    rows = read_log(tmp_path / "sm.log.tsv")
    assert math.isfinite(float(rows[0]["loss"])) and float(rows[0]["valid_auc"]) > 0
    out = tmp_path / "grouped.pt"
    invoke(toy_args(toy, out, "--epochs", "2", "--listeners-per-song", "4", "--batch-size", "32"))
    rows = read_log(tmp_path / "grouped.log.tsv")
    assert float(rows[-1]["valid_auc"]) > 0.7 and float(rows[-1]["loss"]) < float(rows[0]["loss"])
    r = invoke(toy_args(toy, out, "--listeners-per-song", "2", "--per-user-negatives"), expect=2)
    assert "--listeners-per-song above 1 needs --shared-negatives" in r.stderr
    out = tmp_path / "none.pt"
    invoke(toy_args(toy, out, "--epochs", "1", "--cache", "none", "-j", "1", "--steps-per-epoch", "4",
                    "--per-user-negatives", "--no-in-batch-negatives"))
    assert [r["step"] for r in read_log(tmp_path / "none.log.tsv")] == ["4"]


def test_regress_objective_learns_wmf_factors(toy, tmp_path):
    import torch

    from dcue_cli.io.embeddings import Embeddings, write_embeddings
    from dcue_cli.io.plays import read_plays
    from dcue_cli.io.splits import read_splits

    # stand-in WMF factors: users and training songs from a rank-8 SVD of the training plays
    plays, splits = read_plays(toy / "plays.tsv"), read_splits(toy / "splits.tsv")
    m = plays.to_csr(binary=True).toarray()
    train_cols = [k for k, i in enumerate(plays.item_ids) if splits[i] == "train"]
    u, s, vt = np.linalg.svd(m[:, train_cols], full_matrices=False)
    target = Embeddings(plays.item_ids[train_cols], (vt[:8].T * np.sqrt(s[:8])).astype(np.float32),
                        plays.user_ids, (u[:, :8] * np.sqrt(s[:8])).astype(np.float32),
                        source="wmf", similarity="dot", attrs={"fit_on": "train"})
    write_embeddings(tmp_path / "wmf.h5", target)
    out = tmp_path / "reg.pt"
    invoke(toy_args(toy, out, "--objective", "regress", "--target", tmp_path / "wmf.h5", "--epochs", "6",
                    "--patience", "0", "--lr", "0.05"))
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["source"] == "wmf-regression" and ckpt["similarity"] == "dot"
    assert ckpt["model_config"]["n_users"] == 0 and ckpt["model_config"]["embed_dim"] == 8
    assert np.allclose(ckpt["user_vectors"].numpy(), target.user_vectors)
    rows = read_log(tmp_path / "reg.log.tsv")
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert max(float(r["valid_auc"]) for r in rows) > 0.6


# ---- the artist embedding ----


def _artist_map(toy, path):
    """Songs S0000..S0054 by seven artists; the last five songs have none."""
    path.write_text("".join(f"S{i:04d}\tA{i % 7}\n" for i in range(55)))
    return path


def test_artists_train_an_artist_embedding(toy, tmp_path):
    import torch

    from dcue_cli.io.splits import read_splits

    amap = _artist_map(toy, tmp_path / "artists.tsv")
    out = tmp_path / "m.pt"
    r = invoke(toy_args(toy, out, "--epochs", "1", "--artists", amap, "--artist-dropout", "0.3"))
    train = sorted(i for i, s in read_splits(toy / "splits.tsv").items() if s == "train")
    vocab = sorted({f"A{int(i[1:]) % 7}" for i in train if int(i[1:]) < 55})
    without = sum(int(i[1:]) >= 55 for i in train)
    assert f"artists: {len(vocab)} with training songs (the vocabulary)" in r.stderr
    assert f"{without} of the {len(train)} training songs have no artist in {amap}" in r.stderr
    assert f"artist {(len(vocab) + 1) * 32:,})" in r.stderr  # the parameters line
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["artist_vocab"] == vocab and ckpt["model_config"]["n_artists"] == len(vocab) + 1
    assert ckpt["train_config"]["artists"] == str(amap) and ckpt["train_config"]["artist_dropout"] == 0.3
    weights = ckpt["model"]["artist.embedding.weight"]
    assert weights.shape == (len(vocab) + 1, 32) and weights.abs().sum() > 0  # trained, from zero
    # a resumed run needs the map again; an audio-only run's resume ignores one
    r = invoke(toy_args(toy, out, "--epochs", "2", "--resume"), expect=2)
    assert r.stderr.strip().endswith(f"{out.with_name('m.last.pt')} was trained with --artists {amap}: give the "
                                     "same artist map again.")
    invoke(toy_args(toy, out, "--epochs", "2", "--resume", "--artists", amap))
    wrong = tmp_path / "wrong.tsv"
    wrong.write_text("X1\tSomeone\n")
    r = invoke(toy_args(toy, tmp_path / "w.pt", "--artists", wrong), expect=1)
    assert f"none of the {len(train)} training songs has an artist in {wrong}" in r.stderr


# ---- mistakes ----


def test_usage_errors(toy, tmp_path):
    r = invoke(["train", toy / "mels.h5", toy / "plays.tsv", "-o", tmp_path / "m.pt"], expect=2)
    assert "Missing option '--splits'" in r.stderr
    r = invoke(toy_args(toy, tmp_path / "m.pt", "--objective", "regress"), expect=2)
    assert "--objective regress needs --target wmf.h5" in r.stderr
    r = invoke(toy_args(toy, tmp_path / "m.pt", "--conv-channels", "16,32"), expect=2)
    assert "one value per layer" in r.stderr
    r = invoke(toy_args(toy, tmp_path), expect=2)
    assert "Invalid value for '-o' / '--output'" in r.stderr and "is a directory" in r.stderr


def test_input_errors(toy, tmp_path):
    r = invoke(toy_args(toy, tmp_path / "m.pt", "--resume"), expect=1)
    assert r.stderr.strip() == (f"Error: --resume: {tmp_path / 'm.last.pt'} does not exist, so there is nothing "
                                "to resume: run without --resume to start afresh.")
    other = make_toy(tmp_path / "other", n_songs=10, prefix="T")  # the same plays, other song ids
    r = invoke(["train", other / "mels.h5", toy / "plays.tsv", "--splits", toy / "splits.tsv",
                "-o", tmp_path / "m.pt"], expect=1)
    assert "none of the 36 training songs" in r.stderr and "--id-map" in r.stderr
    r = invoke(["train", toy / "plays.tsv", toy / "plays.tsv", "--splits", toy / "splits.tsv",
                "-o", tmp_path / "m.pt"], expect=1)
    assert "not a readable HDF5 file" in r.stderr
    import torch

    if not torch.cuda.is_available():
        r = invoke(toy_args(toy, tmp_path / "m.pt", "--device", "cuda"), expect=1)
        assert "CUDA is not available" in r.stderr


def test_missing_statistics_are_estimated(tmp_path):
    from pathlib import Path

    d = Path(make_toy(tmp_path / "nostats", with_stats=False))
    r = invoke(toy_args(d, tmp_path / "m.pt", "--epochs", "1", "--steps-per-epoch", "2"))
    assert "stores no mean/std" in r.stderr
    import torch

    norm = torch.load(tmp_path / "m.pt", weights_only=True)["normalisation"]
    assert abs(norm["mean"][0]) < 3 and 0.3 < norm["std"][0] < 3


# ---- several processes, GPUs ----


def test_ddp_two_processes_on_cpu(toy, tmp_path):
    """torchrun --nproc-per-node 2 -m dcue_cli train: gloo, one process writes the files."""
    out = tmp_path / "ddp.pt"
    args = [str(a) for a in toy_args(toy, out, "--epochs", "2", "--patience", "0", "--device", "cpu")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--standalone", "-m", "dcue_cli", "-q", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import torch

    ckpt = torch.load(out.with_name("ddp.last.pt"), weights_only=True)
    assert ckpt["position"]["epoch"] == 2
    # each process took every other batch: an epoch is half the single-process steps
    assert ckpt["position"]["global_step"] == 2 * math.ceil(ckpt["data"]["n_pairs"] / (2 * 16))
    rows = read_log(out.with_name("ddp.log.tsv"))
    assert len(rows) == 2 and all(r["valid_auc"] for r in rows)


@pytest.mark.gpu
def test_gpu_training_bf16_and_cache(toy, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    out = tmp_path / "gpu.pt"
    r = invoke(toy_args(toy, out, "--epochs", "2", "--device", "cuda", "--cache", "gpu", "--patience", "0"))
    assert "mels cache: gpu" in r.stderr
    rows = read_log(tmp_path / "gpu.log.tsv")
    assert max(float(x["valid_auc"]) for x in rows) > 0.6
    ckpt = torch.load(out, weights_only=True)
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())


# ---- schedules, presets and the GPU's code paths on the CPU ----


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from dcue_cli.train.config import TrainConfig
    from dcue_cli.train.schedule import learning_rate

    cfg = TrainConfig(lr=1.0, schedule="cosine", warmup_steps=4)
    rates = [learning_rate(cfg, s, 104) for s in range(104)]
    assert rates[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8]) and rates[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(rates[4:]))  # never rises after the warm-up
    assert rates[54] == pytest.approx(0.5) and rates[-1] < 1e-3
    assert learning_rate(cfg, 500, 104) == 0.0  # past the end (a resume with fewer --epochs)
    assert learning_rate(cfg, 10, 104, scale=0.2) == pytest.approx(0.2 * rates[10])
    keras = TrainConfig(lr=0.05, lr_decay=1e-3, schedule="keras")
    assert learning_rate(keras, 1000, 10) == pytest.approx(0.025)


def test_preset_paper_sets_the_papers_recipe_and_options_still_win(toy, tmp_path):
    import torch

    out = tmp_path / "paper.pt"
    invoke(toy_args(toy, out, "--epochs", "1", "--steps-per-epoch", "3", "--preset", "paper", "--negatives", "3"))
    cfg = torch.load(out, weights_only=True)["train_config"]
    assert (cfg["shared_negatives"], cfg["in_batch_negatives"], cfg["listeners_per_song"]) == (False, False, 1)
    assert (cfg["optimizer"], cfg["lr"], cfg["schedule"]) == ("sgd", 0.05, "keras")
    assert (cfg["batch_size"], cfg["negatives"]) == (16, 3)  # given on the command line: they win
    from dcue_cli.train.presets import PAPER

    assert PAPER["batch_size"] == 10 and PAPER["negatives"] == 20


def test_bf16_autocast_and_compile_train_on_the_cpu(toy, tmp_path):
    """The GPU's code paths (bfloat16 autocast, torch.compile) run here too, so only what truly
    needs a GPU is left to a GPU run."""
    import torch

    out = tmp_path / "bf16.pt"
    invoke(toy_args(toy, out, "--epochs", "2", "--cpu-bf16", "--patience", "0"))
    rows = read_log(tmp_path / "bf16.log.tsv")
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"]) and float(rows[-1]["valid_auc"]) > 0.6
    ckpt = torch.load(out, weights_only=True)
    assert all(v.dtype != torch.bfloat16 for v in ckpt["model"].values())  # weights stay float32
    out = tmp_path / "compiled.pt"
    invoke(toy_args(toy, out, "--epochs", "1", "--steps-per-epoch", "3", "--compile"))
    assert [r["step"] for r in read_log(tmp_path / "compiled.log.tsv")] == ["3"]


def test_a_frequency_stem_and_statistics_pooling_train_and_embed(toy, tmp_path):
    """--stem-channels (2-D convolutions before the Conv1D layers) and --pooling meanstd, under the
    CPU's bfloat16 autocast too; a checkpoint from before them loads as the paper's network."""
    import torch

    from dcue_cli.io.embeddings import read_embeddings
    from dcue_cli.model import ModelConfig

    out = tmp_path / "stem.pt"
    invoke(toy_args(toy, out, "--epochs", "2", "--stem-channels", "4,4", "--pooling", "meanstd", "--pool-sizes",
                    "4,2,1", "--cpu-bf16", "--patience", "0"))
    rows = read_log(tmp_path / "stem.log.tsv")
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"]) and float(rows[-1]["valid_auc"]) > 0.6
    cfg = torch.load(out, weights_only=True)["model_config"]
    assert (cfg["stem_channels"], cfg["pooling"]) == ([4, 4], "meanstd")
    invoke(["embed", out, toy / "mels.h5", "-o", tmp_path / "stem.h5"])
    assert read_embeddings(tmp_path / "stem.h5").item_vectors.shape[1] == 32
    old = {k: v for k, v in ModelConfig(n_users=3).to_dict().items() if k not in ("pooling", "stem_channels")}
    assert (ModelConfig.from_dict(old).pooling, ModelConfig.from_dict(old).stem_channels) == ("mean", ())
    r = invoke(toy_args(toy, tmp_path / "bad.pt", "--stem-channels", "4,x"), expect=2)
    assert "--stem-channels" in r.stderr

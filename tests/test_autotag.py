"""`dcue autotag`: labels, exact per-tag metrics, the tagger's sanity, inputs and their errors."""

import dataclasses
import json
import re
import sqlite3

import numpy as np
import pytest
from conftest import TAGGER, assert_absent, error_line, fails, invoke, shared_data

from dcue_cli.autotag.dataset import prepare_dataset
from dcue_cli.autotag.metrics import average_precision, per_tag_ap, per_tag_auc
from dcue_cli.autotag.report import evaluate_embeddings
from dcue_cli.autotag.tagger import TaggerConfig, train_tagger
from dcue_cli.io.embeddings import Embeddings, read_embeddings, write_embeddings
from dcue_cli.io.tags import read_hetrec_tags, read_tags
from dcue_cli.random_split import split_ids

# A small network that converges in few epochs: these tests are about the plumbing.
FAST = ["--hidden", "64,64", "--batch-size", 64, "--lr", 3e-3, "--patience", 5, "--device", "cpu"]
FAST_CONFIG = TaggerConfig(hidden=(64, 64), batch_size=64, lr=3e-3, patience=5)


def _signal_set(n=400, n_tags=8, dim=12, seed=0):
    """Items whose first 6 dimensions decide their tags (each tag on ~20% of the items)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 6))
    logits = latent @ rng.normal(size=(6, n_tags))
    labels = logits > np.quantile(logits, 0.8, axis=0)
    ids = np.array([f"SO{i:05d}" for i in range(n)], dtype=object)
    signal = np.c_[latent, rng.normal(size=(n, dim - 6))].astype(np.float32)
    noise = rng.normal(size=(n, dim)).astype(np.float32)
    return ids, labels, signal, noise


def _write_set(tmp_path, n=400, n_tags=8, seed=0, extra_tag_lines=()):
    ids, labels, signal, noise = _signal_set(n, n_tags, seed=seed)
    write_embeddings(tmp_path / "signal.h5", Embeddings(ids, signal, source="dcue"))
    write_embeddings(tmp_path / "noise.h5", Embeddings(ids, noise, source="random", attrs={"name": "random"}))
    with open(tmp_path / "tags.tsv", "w") as f:
        f.writelines(f"{ids[i]}\ttag{t}\t{50 + t}\n" for i, t in zip(*np.nonzero(labels)))
        f.writelines(line + "\n" for line in extra_tag_lines)
    return ids, labels


# ----------------------------------------------------------------------------- metrics

def test_per_tag_auc_and_ap_equal_sklearn_with_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=(60, 7)).astype(np.float32)  # many ties
    labels = rng.random((60, 7)) < 0.3
    labels[:, 5] = False  # no positive: left out
    labels[:, 6] = True  # no negative: left out
    auc, ap = per_tag_auc(scores, labels), per_tag_ap(scores, labels)
    for t in range(5):
        assert auc[t] == pytest.approx(roc_auc_score(labels[:, t], scores[:, t]), abs=1e-12)
        assert ap[t] == pytest.approx(average_precision_score(labels[:, t], scores[:, t]), abs=1e-12)
    assert np.isnan(auc[5]) and np.isnan(auc[6]) and np.isnan(ap[5])
    assert ap[6] == 1.0


def test_average_precision_without_ties_is_the_textbook_value():
    # ranking: pos, neg, pos, neg -> AP = (1/1 + 2/3) / 2
    assert average_precision(np.array([4.0, 3, 2, 1]), np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)


# ----------------------------------------------------------------------------- labels and splits

def test_prepare_dataset_counts_top_tags_and_every_exclusion():
    items = ["a", "a", "b", "b", "c", "c", "d", "e", "f", "nov", "nov", "a"]
    tags = ["rock", "pop", "rock", "jazz", "pop", "rock", "jazz", "rare", "rock", "rock", "pop", "rock"]
    data = prepare_dataset(items, tags, ["a", "b", "c", "d", "e", "f", "g"], top=3,
                              splits={"a": "train", "b": "train", "c": "valid", "d": "test", "e": "test"})
    # f has no split; 'nov' has no vector; e has only a tag outside the top 3; g has no tags
    assert data.tags == ["rock", "jazz", "pop"]  # rock on 3 items; jazz and pop on 2: by name
    assert list(data.item_ids) == ["a", "b", "c", "d"]
    assert data.labels.tolist() == [[True, False, True], [True, True, False], [True, False, True],
                                    [False, True, False]]
    assert list(data.split) == ["train", "train", "valid", "test"]
    s = data.stats
    assert (s["tag_rows_without_vector"], s["tagged_items_without_vector"]) == (2, 1)
    assert s["tagged_items_without_split"] == 1
    assert s["items_without_top_tags"] == 1
    assert s["vector_items_without_tags"] == 1
    assert (s["items"], s["train"], s["valid"], s["test"]) == (4, 2, 1, 1)


def test_top_tags_ties_break_by_name_and_counts_are_items_not_rows():
    items = ["a", "a", "a", "b", "c"]
    tags = ["zed", "zed", "zed", "alpha", "beta"]  # 'zed' has three rows but one item
    data = prepare_dataset(items, tags, ["a", "b", "c"], top=2, fractions=(0.4, 0.3, 0.3))
    assert data.tags == ["alpha", "beta"]
    assert data.stats["items_without_top_tags"] == 1


def test_random_split_is_subsets_split_of_the_labelled_items():
    # One split in the tree: without --splits, autotag splits like `dcue subset` with the same seed.
    items = [f"i{k:04d}" for k in range(1000)]
    data = prepare_dataset(items, ["rock"] * len(items), items, fractions=(0.7, 0.1, 0.2), seed=4)
    assert dict(zip(data.item_ids, data.split)) == split_ids(items, (0.7, 0.1, 0.2), seed=4)
    assert (data.stats["train"], data.stats["valid"], data.stats["test"]) == (700, 100, 200)
    assert data.stats["split_source"] == "random"


# ----------------------------------------------------------------------------- the tagger

def test_random_vectors_give_half_and_signal_vectors_far_more(tmp_path):
    ids, labels, signal, noise = _signal_set(n=600)
    data = prepare_dataset([ids[i] for i, _ in zip(*np.nonzero(labels))],
                              [f"t{t}" for _, t in zip(*np.nonzero(labels))], list(ids), seed=1)
    good = evaluate_embeddings(Embeddings(ids, signal, source="dcue"), data, FAST_CONFIG)
    bad = evaluate_embeddings(Embeddings(ids, noise, source="random"), data, FAST_CONFIG)
    assert good.auc > 0.9
    assert abs(bad.auc - 0.5) < 0.08
    assert good.mean_ap > bad.mean_ap + 0.3
    assert good.tags_left_out == [] and 1 <= good.best_epoch <= good.epochs_run


@pytest.mark.parametrize("monitor", ["loss", "auc"])
def test_early_stopping_keeps_the_best_valid_epoch(monitor):
    torch = pytest.importorskip("torch")
    _ids, labels, signal, _ = _signal_set(n=300)
    rng = np.random.default_rng(0)
    train = rng.random(300) < 0.8
    valid = ~train
    threads = torch.get_num_threads()
    config = dataclasses.replace(FAST_CONFIG, monitor=monitor, patience=3, optimizer="sgd", lr=0.05)
    tagger = train_tagger(signal[train], labels[train].astype(np.float32), signal[valid],
                             labels[valid].astype(np.float32), config)
    assert torch.get_num_threads() == threads  # --threads is restored afterwards
    watched = [h[1] if monitor == "loss" else h[2] for h in tagger.history]
    best = min(watched) if monitor == "loss" else max(watched)
    assert tagger.best_valid == best == watched[tagger.best_epoch - 1]
    assert tagger.epochs_run == min(tagger.best_epoch + 3, config.epochs)
    # the kept network is the best epoch's: its valid loss is the one recorded then
    probs = tagger.predict(signal[valid])
    bce = -np.mean(np.where(labels[valid], np.log(probs), np.log1p(-probs)))
    assert bce == pytest.approx(tagger.history[tagger.best_epoch - 1][1], rel=1e-4)


def test_same_seed_same_result(tmp_path):
    _write_set(tmp_path, n=200)
    args = ["autotag", tmp_path / "signal.h5", tmp_path / "tags.tsv", "--json", *FAST, "--epochs", 15]
    first, second = json.loads(invoke(args).stdout), json.loads(invoke(args).stdout)
    assert first["models"] == second["models"]


@pytest.mark.gpu
def test_gpu_training_matches_cpu_closely():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA here")
    ids, labels, signal, _ = _signal_set(n=400)
    data = prepare_dataset([ids[i] for i, _ in zip(*np.nonzero(labels))],
                              [f"t{t}" for _, t in zip(*np.nonzero(labels))], list(ids))
    emb = Embeddings(ids, signal, source="dcue")
    cpu = evaluate_embeddings(emb, data, FAST_CONFIG)
    gpu = evaluate_embeddings(emb, data, dataclasses.replace(FAST_CONFIG, device="cuda"))
    assert gpu.auc > 0.9 and abs(gpu.auc - cpu.auc) < 0.03


# ----------------------------------------------------------------------------- the command

def test_two_files_one_table_json_per_tag_and_exclusions(tmp_path):
    _write_set(tmp_path, extra_tag_lines=["NOVEC1\ttag0\t80", "NOVEC1\ttag1\t80", "NOVEC2\ttag0\t80"])
    result = invoke(["autotag", tmp_path / "signal.h5", tmp_path / "noise.h5", tmp_path / "tags.tsv",
                     "--json", "--per-tag", tmp_path / "per_tag.tsv", *FAST])
    out = json.loads(result.stdout)
    assert [m["name"] for m in out["models"]] == ["dcue", "random"]
    good, bad = out["models"]
    assert good["auc"] > 0.85 and abs(bad["auc"] - 0.5) < 0.1
    assert good["paper_auc"] == 0.8450 and bad["paper_auc"] is None
    assert good["tags_evaluated"] == 8 and len(good["per_tag"]) == 8
    labels = out["labels"]
    assert labels["tags"][0].startswith("tag") and len(labels["tags"]) == 8
    assert (labels["tag_rows_without_vector"], labels["tagged_items_without_vector"]) == (3, 2)
    assert labels["train"] + labels["valid"] + labels["test"] == labels["items"]
    # the table goes to stderr when stdout carries the JSON, with the exclusions reported
    assert "model" in result.stderr and "paper AUC (MSD)" in result.stderr
    assert (f"{tmp_path / 'tags.tsv'}: 3 tag rows for 2 items without a vector in every embeddings file: "
            "left out.") in result.stderr
    rows = (tmp_path / "per_tag.tsv").read_text().splitlines()
    assert rows[0] == "model\ttag\ttrain_positives\ttest_positives\tauc\tap"
    assert len(rows) == 1 + 2 * 8 and rows[1].startswith("dcue\ttag")


def test_table_on_stdout_with_splits_file_and_items_without_split(tmp_path):
    ids, _ = _write_set(tmp_path, n=300)
    splits = split_ids(list(ids[:280]), seed=2)  # the last 20 items have no split
    (tmp_path / "splits.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in splits.items()))
    result = invoke(["autotag", tmp_path / "signal.h5", tmp_path / "tags.tsv", "--splits", tmp_path / "splits.tsv",
                     *FAST])
    lines = result.stdout.splitlines()
    assert lines[0].endswith("splits file)")
    assert lines[1].split() == ["model", "dim", "AUC", "mAP", "tags", "epoch", "paper", "AUC", "(MSD)"]
    assert lines[3].split()[0] == "dcue" and float(lines[3].split()[2]) > 0.8
    tagged = {line.split("\t")[0] for line in (tmp_path / "tags.tsv").read_text().splitlines()}
    n_without = len(set(ids[280:]) & tagged)
    assert (f"Warning: {n_without} items with vectors and tags have no split in {tmp_path / 'splits.tsv'}: "
            "left out.") in result.stderr


def test_predict_writes_every_items_top_tags_as_a_tags_tsv(tmp_path):
    _ids, _ = _write_set(tmp_path, n=200)
    # a cold item: a vector, no tags, no split
    emb = read_embeddings(tmp_path / "signal.h5")
    cold = Embeddings(np.r_[emb.item_ids, ["COLD"]].astype(object),
                      np.r_[emb.item_vectors, np.zeros((1, emb.item_vectors.shape[1]), np.float32)], source="dcue")
    write_embeddings(tmp_path / "cold.h5", cold)
    result = invoke(["autotag", tmp_path / "cold.h5", tmp_path / "tags.tsv", "--predict", "-", "--predict-top", 3,
                     *FAST, "--epochs", 10])
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(rows) == 201 * 3
    assert [r[0] for r in rows[-3:]] == ["COLD"] * 3
    probs = [float(r[2]) for r in rows[:3]]
    assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
    assert "model" in result.stderr  # the table moved to stderr
    (tmp_path / "pred.tsv").write_text(result.stdout)
    items, tags, _weights = read_tags(tmp_path / "pred.tsv")
    assert len(items) == 603 and tags[0].startswith("tag")


def test_lastfm_sqlite_by_track_id_with_id_map(tmp_path):
    ids, labels = _write_set(tmp_path, n=300)
    tracks = [f"TR{i:05d}" for i in range(len(ids))]
    (tmp_path / "unique_tracks.txt").write_text(
        "".join(f"{t}<SEP>{s}<SEP>Artist {k}<SEP>Title {k}\n" for k, (t, s) in enumerate(zip(tracks, ids))))
    # the MSD lastfm_tags.db layout: tid_tag refers to tids and tags by ROWID
    con = sqlite3.connect(tmp_path / "lastfm_tags.db")
    con.execute("CREATE TABLE tids (tid TEXT)")
    con.execute("CREATE TABLE tags (tag TEXT)")
    con.execute("CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT)")
    con.executemany("INSERT INTO tids VALUES (?)", [(t,) for t in tracks])
    con.executemany("INSERT INTO tags VALUES (?)", [(f"tag{t}",) for t in range(labels.shape[1])])
    con.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)",
                    [(int(i) + 1, int(t) + 1, 100.0) for i, t in zip(*np.nonzero(labels))]
                    + [(1, 1, 0.0)])  # a weight-0 row, dropped by --min-weight 1
    con.commit()
    con.close()
    result = invoke(["autotag", tmp_path / "signal.h5", tmp_path / "lastfm_tags.db", "--id-map",
                     tmp_path / "unique_tracks.txt", "--min-weight", 1, "--json", *FAST])
    out = json.loads(result.stdout)
    assert out["models"][0]["auc"] > 0.8
    assert out["labels"]["tag_rows"] == int(labels.sum())
    assert (f"{tmp_path / 'unique_tracks.txt'}: {int(labels.sum())} of {int(labels.sum())} tag rows mapped from "
            "track ids to song ids.") in result.stderr


def test_hetrec_tags_through_the_command(tmp_path):
    ids, labels, signal, _ = _signal_set(n=300)
    artists = [str(k + 1) for k in range(len(ids))]
    write_embeddings(tmp_path / "artists.h5", Embeddings(np.array(artists, dtype=object), signal, source="wmf"))
    (tmp_path / "tags.dat").write_bytes(b"tagID\ttagValue\r\n" + b"".join(
        f"{t + 1}\tgenre {t}\r\n".encode("latin-1") for t in range(labels.shape[1])))
    lines = [f"{u}\t{artists[i]}\t{t + 1}\t1\t1\t2010\r\n" for i, t in zip(*np.nonzero(labels)) for u in (2, 3)]
    (tmp_path / "ut.dat").write_bytes(("userID\tartistID\ttagID\tday\tmonth\tyear\r\n" + "".join(lines)).encode())
    result = invoke(["autotag", tmp_path / "artists.h5", tmp_path / "ut.dat", "--tag-names", tmp_path / "tags.dat",
                     "--min-weight", 2, "--json", *FAST])
    out = json.loads(result.stdout)
    assert out["labels"]["tags"][0].startswith("genre ")
    assert out["models"][0]["auc"] > 0.8 and out["models"][0]["paper_auc"] == 0.8683


def test_synthetic_set_truth_and_wmf_vectors_beat_random_ones(tmp_path):
    """synth -> wmf -> autotag: the songs' true style and their WMF factors carry the tags."""
    pytest.importorskip("dcue_cli.commands.synth")
    pytest.importorskip("dcue_cli.commands.wmf")
    syn = tmp_path / "syn"
    invoke(["-q", "synth", syn, "--songs", 800, "--users", 300, "--seconds", 1, "--format", "wav", "-j", 1])
    invoke(["-q", "wmf", syn / "train_triplets.txt", "-o", tmp_path / "wmf.h5", "--factors", 32, "--threads", 1,
            "--device", "cpu"])
    truth = read_embeddings(syn / "truth.h5")
    noise = np.random.default_rng(0).normal(size=truth.item_vectors.shape).astype(np.float32)
    write_embeddings(tmp_path / "random.h5", Embeddings(truth.item_ids, noise, source="random"))
    out = json.loads(invoke(["-q", "autotag", syn / "truth.h5", tmp_path / "wmf.h5", tmp_path / "random.h5",
                             syn / "tags.tsv", "--top", 20, "--json", *FAST]).stdout)
    truth_auc, wmf_auc, random_auc = (m["auc"] for m in out["models"])
    assert truth_auc > 0.72
    assert wmf_auc > 0.58
    assert abs(random_auc - 0.5) < 0.08


# ----------------------------------------------------------------------------- bad input

def test_no_overlap_names_both_files(tmp_path):
    _write_set(tmp_path, n=50)
    (tmp_path / "other.tsv").write_text("TRX1\trock\t100\nTRX2\tpop\t90\n")
    result = invoke(["autotag", tmp_path / "signal.h5", tmp_path / "other.tsv"], expect=1)
    assert result.stderr.strip() == (
        f"Error: no item of {tmp_path / 'other.tsv'} has a vector in {tmp_path / 'signal.h5'}: their ids differ "
        "(e.g. 'TRX1' in the tags, 'SO00000' in the vectors); key both by the same ids "
        "(--id-map unique_tracks.txt maps MSD track ids to song ids).")


def test_splits_without_valid_items_is_an_error(tmp_path):
    ids, _ = _write_set(tmp_path, n=100)
    (tmp_path / "splits.tsv").write_text("".join(f"{i}\t{'train' if k % 2 else 'test'}\n" for k, i in enumerate(ids)))
    result = invoke(["autotag", tmp_path / "signal.h5", tmp_path / "tags.tsv", "--splits", tmp_path / "splits.tsv"],
                    expect=1)
    n_tagged = len({line.split("\t")[0] for line in (tmp_path / "tags.tsv").read_text().splitlines()})
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: no valid item among the {n_tagged} items with vectors and tags in {tmp_path / 'splits.tsv'}: "
        "every split needs items with tags and vectors (a `dcue wmf --fit-on train` file has none for valid and "
        "test songs); or leave --splits out for a random split.")


def test_nan_vectors_are_refused(tmp_path):
    ids, _, signal, _ = _signal_set(n=20)
    signal[3, 1] = np.nan
    write_embeddings(tmp_path / "nan.h5", Embeddings(ids, signal, source="dcue"))
    (tmp_path / "tags.tsv").write_text("SO00000\trock\n")
    result = invoke(["autotag", tmp_path / "nan.h5", tmp_path / "tags.tsv"], expect=1)
    assert result.stderr.strip() == (
        f"Error: {tmp_path / 'nan.h5'}: 1 item vectors hold NaN or infinity (e.g. item 'SO00003'): "
        "write the file again (a diverged run gives such vectors).")


def test_min_weight_that_drops_everything(tmp_path):
    _write_set(tmp_path, n=50)
    result = invoke(["autotag", tmp_path / "signal.h5", tmp_path / "tags.tsv", "--min-weight", 101], expect=1)
    assert result.stderr.strip() == (
        f"Error: {tmp_path / 'tags.tsv'} has no tag with weight >= 101: lower --min-weight or check the file.")


def test_bad_hidden_is_a_usage_error(tmp_path):
    _write_set(tmp_path, n=20)
    result = invoke(["autotag", tmp_path / "signal.h5", tmp_path / "tags.tsv", "--hidden", "512,x"], expect=2)
    assert ("Invalid value for '--hidden': '512,x': give positive layer widths separated by commas, "
            "e.g. 512,512.") in result.stderr


def test_bad_split_is_refused_with_subsets_message(tmp_path):
    _write_set(tmp_path, n=20)
    result = invoke(["autotag", tmp_path / "signal.h5", tmp_path / "tags.tsv", "--split", "0.8,0.2"], expect=2)
    assert result.stderr.strip() == ("Error: --split '0.8,0.2': give three positive fractions for "
                                     "train,valid,test that sum to 1, e.g. 0.7,0.1,0.2.")


def test_predict_with_two_files_and_missing_tags_are_usage_errors(tmp_path):
    _write_set(tmp_path, n=20)
    result = invoke(["autotag", tmp_path / "signal.h5", tmp_path / "noise.h5", tmp_path / "tags.tsv",
                     "--predict", tmp_path / "p.tsv"], expect=2)
    assert "Error: --predict takes one embeddings file; 2 were given: run once per file." in result.stderr
    result = invoke(["autotag", tmp_path / "signal.h5", tmp_path / "tags.tsv", "--predict", "-", "--json"], expect=2)
    assert "Error: --predict - and --json would both write to stdout: give --predict a file name." in result.stderr
    result = invoke(["autotag", tmp_path / "signal.h5"], expect=2)
    assert "Error: give one or more embeddings files and then the tags file: EMB.h5 [EMB2.h5 ...] TAGS." \
        in result.stderr
    assert not (tmp_path / "p.tsv").exists()


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    _write_set(tmp_path, n=20)
    result = invoke(["autotag", tmp_path / "signal.h5", tmp_path / "tags.tsv", "--device", "cuda"], expect=1)
    assert result.stderr.strip() == ("Error: --device cuda: CUDA is not available on this machine "
                                     "(no GPU, or a CPU-only torch): use --device cpu or auto.")


# ----------------------------------------------------------------------------- real data

def test_real_hetrec_artist_tags():
    folder = shared_data("lastfm_hetrec2k")
    items, tags, _weights = read_hetrec_tags(folder / "user_taggedartists_full.dat", folder / "tags.dat")
    assert len(items) == 109_750 and len(set(items)) == 12_523
    data = prepare_dataset(items, tags, sorted(set(items)), top=50)
    assert data.tags[:3] == ["rock", "electronic", "alternative"]
    assert int(data.labels[:, 0].sum()) == 2283
    assert "rock français" in set(tags)  # tags.dat is Latin-1


@pytest.mark.slow
def test_real_hetrec_wmf_artist_factors_carry_the_tags(tmp_path):
    """examples/lastfm_autotag.sh in small: WMF artist factors from the plays predict the tags."""
    folder = shared_data("lastfm_hetrec2k")
    pytest.importorskip("dcue_cli.commands.wmf")
    invoke(["-q", "wmf", folder / "user_artists.dat", "--header", "yes", "--confidence", "log", "--alpha", 2,
            "--device", "cpu", "-o", tmp_path / "wmf.h5"])
    out = json.loads(invoke(["-q", "autotag", tmp_path / "wmf.h5", folder / "user_taggedartists_full.dat",
                             "--tag-names", folder / "tags.dat", "--json", "--device", "cpu"]).stdout)
    assert out["labels"]["items"] == 9081 and out["labels"]["test"] == 1816
    assert out["models"][0]["auc"] > 0.84


# ----------------------------------------------------------------------------- messages that say the fix
# (second round, helper REL-TRAIN)

def test_an_empty_tags_file_says_it_holds_no_tags(world, tmp_path):
    for data in (b"", b"\n\n"):
        tags = tmp_path / "tags.tsv"
        tags.write_bytes(data)
        out = tmp_path / "pred.tsv"
        fails(["autotag", world / "emb.h5", tags, *TAGGER, "--predict", out],
              f"{tags} holds no tags: give a tags TSV of item<TAB>tag[<TAB>weight] lines, the MSD lastfm_tags.db, "
              "or HetRec's user_taggedartists with --tag-names.")
        assert_absent(out)


def test_hetrec_tags_without_tag_names_say_to_give_them(world, tmp_path):
    tags = tmp_path / "user_taggedartists.dat"
    tags.write_bytes(b"userID\tartistID\ttagID\tday\tmonth\tyear\r\n2\t52\t13\t1\t4\t2009\r\n")
    before = tags.read_bytes()
    fails(["autotag", world / "emb.h5", tags, *TAGGER],
          f"{tags} is HetRec's user_taggedartists (userID, artistID, tagID): give its tag names too, with "
          "--tag-names tags.dat.")
    assert tags.read_bytes() == before


# ----------------------------------------------------------------------------- REL-SIGNALS: divergence, settings


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_diverging_tagger_is_one_line_naming_lr(tmp_path, optimizer):
    from conftest import fails

    _write_set(tmp_path)
    fails(["autotag", tmp_path / "signal.h5", tmp_path / "tags.tsv", "--device", "cpu", "--epochs", 2,
           "--lr", "1e30", "--optimizer", optimizer],
          "the tagger diverged in epoch 1 (non-finite loss or scores): lower --lr (it is 1e+30).")


@pytest.mark.parametrize("option", ["--lr", "--weight-decay", "--min-weight"])
def test_a_non_finite_setting_is_a_misuse(tmp_path, option):
    result = invoke(["autotag", tmp_path / "x.h5", tmp_path / "tags.tsv", option, "nan"], expect=2)
    assert f"Error: Invalid value for '{option}': nan is not a finite number: give an ordinary number." \
        in result.stderr


def test_a_tagger_too_large_for_the_memory_is_one_line_before_it_is_built(world, tmp_path, monkeypatch):
    from dcue_cli import runtime

    # --hidden 100000000 was torch's allocation traceback (or, below the overcommit limit, the OOM killer)
    monkeypatch.setattr(runtime, "available_memory", lambda: 10**9)
    result = invoke(["autotag", world / "emb.h5", world / "tags.tsv", *TAGGER[:4], "--hidden", 10**8], expect=1)
    assert re.fullmatch(r"a network of [\d,]+ parameters \(with its gradients and optimiser state\) needs about "
                        r"[\d.]+ GB but 1\.0 GB is free in host memory: lower --hidden\.", error_line(result))


def test_a_folder_given_as_embeddings_is_one_line(world, tmp_path):
    # h5py's message for a folder ran over two lines (its time stamp, then the errno)
    fails(["autotag", tmp_path, world / "tags.tsv", *TAGGER],
          f"{tmp_path} is a folder, not an embeddings file: was it written by `dcue embed` or `dcue wmf`?")

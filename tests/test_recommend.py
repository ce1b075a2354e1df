"""`dcue recommend`: exact chunked top-k, exclusions and candidates, fold-in of new users, the
new-songs recipe end to end, and every bad input as a one-line error."""

import numpy as np
import pytest
from conftest import error_line, invoke

from dcue_cli.io.embeddings import Embeddings, read_embeddings, write_embeddings


def brute_force(users, items, k, cosine, candidates=None, excluded=None):
    """The reference: every score in float64, sorted by (-score, position)."""
    if cosine:
        users = users / np.linalg.norm(users, axis=1, keepdims=True)
        items = items / np.linalg.norm(items, axis=1, keepdims=True)
    s = users.astype(np.float64) @ items.astype(np.float64).T
    out = []
    for u in range(len(users)):
        allowed = set(range(len(items)) if candidates is None else candidates) - set(excluded[u] if excluded else ())
        order = sorted(allowed, key=lambda i: (-s[u, i], i))[:k]
        out.append(order)
    return out


@pytest.mark.parametrize("cosine", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
@pytest.mark.parametrize("chunk_bytes", [None, 1])  # 1: item blocks of k+1 items, merged
def test_topk_equals_brute_force_with_exclusions_candidates_and_chunks(cosine, chunk, chunk_bytes):
    from dcue_cli.recommend.topk import catalogue, exclusion_columns, iter_topk

    rng = np.random.default_rng(1)
    users, items = rng.normal(size=(17, 5)).astype(np.float32), rng.normal(size=(40, 5)).astype(np.float32)
    candidates = np.sort(rng.choice(40, 25, replace=False))
    played = [rng.choice(40, int(rng.integers(0, 30)), replace=False) for _ in range(17)]
    played[4] = candidates  # nothing left for this user
    for cand in (None, candidates):
        cat = catalogue(items, cosine, cand)
        for k in (1, 6, 40):
            got = []
            for start, ranked in iter_topk(cat, users, k, exclusion_columns(cat, played), chunk=chunk,
                                             chunk_bytes=chunk_bytes):
                assert start == len(got)
                got += [list(p) for p, _ in ranked]
            assert got == brute_force(users, items, k, cosine, cand, played)


def test_ties_are_ranked_by_position_on_every_path():
    from dcue_cli.recommend.topk import catalogue, iter_topk

    items = np.array([[1, 0], [2, 0], [2, 0], [1, 0], [2, 0], [0, 1]], np.float32)
    cat = catalogue(items, False)
    (_, ranked), = iter_topk(cat, np.array([[1, 0], [0, 1]], np.float32), 2)
    assert [list(p) for p, _ in ranked] == [[1, 2], [5, 0]]  # the cut falls inside a tie: by position
    (_, ranked), = iter_topk(cat, np.array([[1, 0]], np.float32), 4)
    assert list(ranked[0][0]) == [1, 2, 4, 0]
    (_, ranked), = iter_topk(cat, np.array([[1, 0], [0, 1]], np.float32), 2, chunk_bytes=1)  # blocks of 3 items
    assert [list(p) for p, _ in ranked] == [[1, 2], [5, 0]]


def test_wmf_fold_in_is_implicits_recalculate_user():
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    from dcue_cli.recommend.foldin import als_fold_in
    from dcue_cli.wmf import WmfConfig, confidence, fit_wmf

    counts = sp.random(50, 40, density=0.2, random_state=1, format="csr")
    counts.data = np.ceil(counts.data * 5)
    users, items, _ = fit_wmf(counts, WmfConfig(factors=8, iterations=4, threads=1), show_progress=False)
    model = AlternatingLeastSquares(factors=8, regularization=0.01, alpha=1.0, num_threads=1)
    model.item_factors, model.user_factors = items.copy(), users.copy()
    for kind in ("linear", "log"):
        conf = counts.copy()
        conf.data = confidence(conf.data, 40.0, kind)
        reference = model.recalculate_user(np.arange(6), conf[:6])
        mine = als_fold_in(items, [(counts[u].indices, counts[u].data) for u in range(6)], alpha=40.0,
                           regularization=0.01, confidence_kind=kind)
        assert np.allclose(mine, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_cosine_fold_in_mean_is_the_normalised_mean_direction():
    from dcue_cli.recommend.foldin import cosine_fold_in

    items = np.array([[3, 0], [0, 2], [1, 1]], np.float32)
    (v,) = cosine_fold_in(items, [(np.array([0, 1]), np.array([1, 9]))], "mean")
    assert np.allclose(v, [2 ** -0.5, 2 ** -0.5])
    (w,) = cosine_fold_in(items, [(np.array([0]), np.array([1]))], "logistic")
    unit_items = items / np.linalg.norm(items, axis=1, keepdims=True)
    assert np.argmax(unit_items @ w) == 0 and np.isclose(np.linalg.norm(w), 1)  # the played item first


# ---- the command ----


@pytest.fixture
def world(tmp_path):
    """A dot file of 6 users x 8 items with known scores, its plays and splits."""
    rng = np.random.default_rng(0)
    items, users = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    item_ids = np.array([f"s{i}" for i in range(8)], object)
    user_ids = np.array([f"u{i}" for i in range(6)], object)
    write_embeddings(tmp_path / "w.h5", Embeddings(item_ids, items, user_ids, users, source="wmf",
                                                  attrs={"alpha": 10.0, "regularization": 0.1}))
    (tmp_path / "plays.tsv").write_text("u0\ts1\t3\nu0\ts2\t1\nu1\ts0\t2\nnew\ts3\t4\nnew\ts5\t1\n")
    (tmp_path / "splits.tsv").write_text("".join(f"s{i}\t{'test' if i % 2 else 'train'}\n" for i in range(8)))
    (tmp_path / "users.txt").write_text("u0\nu1\n")
    return tmp_path


def rows(result):
    lines = result.stdout.splitlines()
    assert lines[0].startswith("user\trank\titem\tscore")
    return [line.split("\t") for line in lines[1:]]


def test_top_k_of_listed_users_with_exclusions_and_a_split(world):
    emb = read_embeddings(world / "w.h5")
    expected = brute_force(emb.user_vectors[:2], emb.item_vectors, 3, False,
                           candidates=[1, 3, 5, 7], excluded=[[1, 2], [0]])
    out = rows(invoke(["recommend", world / "w.h5", "--users", world / "users.txt", "-k", 3, "--exclude-played",
                       world / "plays.tsv", "--items", "test", "--splits", world / "splits.tsv"]))
    assert [r[0] for r in out] == ["u0"] * 3 + ["u1"] * 3 and [r[1] for r in out] == ["1", "2", "3"] * 2
    assert [int(r[2][1:]) for r in out] == expected[0] + expected[1]
    score = float(emb.user_vectors[0] @ emb.item_vectors[int(out[0][2][1:])])
    assert float(out[0][3]) == pytest.approx(score, rel=1e-5)


def test_users_from_stdin_every_user_by_default_ids_list_and_titles(world):
    out = rows(invoke(["recommend", world / "w.h5", "--users", "-", "-k", 2], input="u3\n"))
    assert [r[0] for r in out] == ["u3", "u3"]
    out = rows(invoke(["recommend", world / "w.h5", "-k", 1]))
    assert [r[0] for r in out] == [f"u{i}" for i in range(6)]
    (world / "new.txt").write_text("s6\ns7\n")
    (world / "ids.txt").write_text("TRA<SEP>s6<SEP>Artist<SEP>Title\n")
    result = invoke(["recommend", world / "w.h5", "--users", world / "users.txt", "--items", world / "new.txt",
                     "--id-map", world / "ids.txt", "-k", 5])
    out = rows(result)
    assert result.stdout.startswith("user\trank\titem\tscore\tartist\ttitle\n")
    assert {r[2] for r in out} == {"s6", "s7"} and len(out) == 4
    assert all(r[4:] == (["Artist", "Title"] if r[2] == "s6" else ["", ""]) for r in out)


def test_output_file_is_written_atomically_and_matches_stdout(world):
    args = ["recommend", world / "w.h5", "-k", 4, "--exclude-played", world / "plays.tsv"]
    stdout = invoke(args).stdout
    invoke([*args, "-o", world / "out.tsv"])
    assert (world / "out.tsv").read_text() == stdout
    result = invoke([*args, "-o", world / "bad.tsv", "--users", world / "absent.txt"], expect=1)
    assert not (world / "bad.tsv").exists() and result.stdout == ""


def test_new_users_are_folded_in_from_their_plays(world):
    from dcue_cli.recommend.foldin import als_fold_in

    emb = read_embeddings(world / "w.h5")
    out = rows(invoke(["recommend", world / "w.h5", "--users", "-", "--plays", world / "plays.tsv", "-k", 8],
                      input="new\nu0\n"))
    (vector,) = als_fold_in(emb.item_vectors, [(np.array([3, 5]), np.array([4, 1]))], alpha=10.0,
                            regularization=0.1)  # the file's own attributes
    expected = brute_force(vector[None], emb.item_vectors, 8, False)[0]
    assert [int(r[2][1:]) for r in out if r[0] == "new"] == expected
    assert len([r for r in out if r[0] == "u0"]) == 8  # known users keep their trained vector
    override = rows(invoke(["recommend", world / "w.h5", "--users", "-", "--plays", world / "plays.tsv", "-k", 8,
                            "--alpha", "1", "--regularization", "5"], input="new\n"))
    assert [r[3] for r in override] != [r[3] for r in out if r[0] == "new"]


def test_score_user_query_shares_the_ranking(world):
    q = invoke(["score", world / "w.h5", "--user", "u2", "-k", 4]).stdout.splitlines()[1:]
    r = rows(invoke(["recommend", world / "w.h5", "--users", "-", "-k", 4], input="u2\n"))
    assert [line.split("\t") for line in q] == [x[1:] for x in r]


@pytest.mark.parametrize("case", ["unknown user", "empty list", "bad plays", "bad fold-in plays", "nan item",
                                  "nan user", "no items", "no users in file"])
def test_bad_data_is_a_one_line_error_and_no_output(world, case):
    path, extra, input_ = world / "w.h5", [], None
    if case == "unknown user":
        extra, input_ = ["--users", "-"], "u1\nghost\n"
        expect = "user 'ghost' is not in " + str(path) + " (1 of the 2 users are unknown): give --plays"
    elif case == "empty list":
        (world / "empty.txt").write_text("\n\n")
        extra, expect = ["--users", world / "empty.txt"], f"{world / 'empty.txt'} lists no user id"
    elif case == "bad plays":
        (world / "bad.tsv").write_text("u0\ts1\t3\nu0\ts2\tmany\n")
        extra, expect = ["--exclude-played", world / "bad.tsv"], f"{world / 'bad.tsv'}:2:"
    elif case == "bad fold-in plays":
        (world / "two.tsv").write_text("new\ts1\t2\nnew\ts2\n")
        extra, expect = ["--plays", world / "two.tsv"], f"{world / 'two.tsv'}:2:"
    elif case in ("nan item", "nan user"):
        emb = read_embeddings(path)
        (emb.item_vectors if case == "nan item" else emb.user_vectors)[2, 1] = np.nan
        path = world / "nan.h5"
        write_embeddings(path, emb)
        word = case.split()[1]
        expect = f"{path}: 1 {word} vectors hold NaN or infinity (e.g. {word} '{'s2' if word == 'item' else 'u2'}')"
    elif case == "no items":
        (world / "none.txt").write_text("x1\nx2\n")
        extra, expect = ["--items", world / "none.txt"], "none of the 2 items of"
    else:
        write_embeddings(world / "items.h5", Embeddings(np.array(["a"], object), np.ones((1, 3), np.float32)))
        path, expect = world / "items.h5", "has no user vectors: give --plays"
    result = invoke(["recommend", path, *extra], input=input_, expect=1)
    assert error_line(result).startswith(expect) or expect in error_line(result), error_line(result)
    assert result.stdout == ""


def test_unknown_users_can_be_skipped_and_counted(world):
    result = invoke(["recommend", world / "w.h5", "--users", "-", "--skip-unknown", "-k", 1], input="u1\nghost\n")
    assert [r[0] for r in rows(result)] == ["u1"] and "1 unknown users skipped" in result.stderr


@pytest.mark.parametrize("args, expect", [
    (["-k", "0"], "0 is not in the range x>=1"),
    (["-k", "-3"], "-3 is not in the range x>=1"),
    (["--items", "test"], "--items test needs --splits"),
    (["--users", "-", "--plays", "-"], "--users and --plays cannot both read stdin"),
])
def test_misuse_exits_2(world, args, expect):
    result = invoke(["recommend", world / "w.h5", *args], expect=2)
    assert expect in result.stderr and result.stdout == ""


def test_cosine_file_folds_in_by_logistic_or_mean_and_refuses_als(tmp_path):
    items = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    write_embeddings(tmp_path / "c.h5", Embeddings(np.array(["a", "b", "c"], object), items,
                                                  np.array(["x"], object), np.ones((1, 2), np.float32),
                                                  similarity="cosine"))
    (tmp_path / "p.tsv").write_text("n\ta\t1\n")
    out = rows(invoke(["recommend", tmp_path / "c.h5", "--users", "-", "--plays", tmp_path / "p.tsv", "-k", 3,
                       "--fold-in", "mean"], input="n\n"))
    assert [r[2] for r in out] == ["a", "c", "b"] and float(out[0][3]) == pytest.approx(1.0)
    out = rows(invoke(["recommend", tmp_path / "c.h5", "--users", "-", "--plays", tmp_path / "p.tsv", "-k", 3],
                      input="n\n"))  # the default: logistic
    assert [r[2] for r in out] == ["a", "c", "b"] and float(out[0][3]) < 0.99
    result = invoke(["recommend", tmp_path / "c.h5", "--plays", tmp_path / "p.tsv", "--fold-in", "als"], expect=1)
    assert "--fold-in als needs a dot file" in error_line(result)


# ---- the cold-start use: new songs, end to end ----


def test_new_songs_recipe_melspec_embed_recommend(toy, tmp_path):
    """A trained model; new audio -> melspec -> embed -> recommend --items new.txt ranks only new songs."""
    import soundfile as sf
    from conftest import N_MELS, toy_args

    invoke(toy_args(toy, tmp_path / "model.pt", "--epochs", "1", "--patience", "0"))
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for name in ("NEW1", "NEW2", "NEW3"):
        sf.write(audio / f"{name}.wav", rng.normal(scale=0.1, size=22050 * 2).astype(np.float32), 22050)
    invoke(["-q", "melspec", audio, "-o", tmp_path / "new-mels.h5", "--n-mels", N_MELS, "-j", "0"])
    invoke(["-q", "embed", tmp_path / "model.pt", tmp_path / "new-mels.h5", "-o", tmp_path / "new.h5"])
    (tmp_path / "new.txt").write_text("NEW1\nNEW3\n")
    emb = read_embeddings(tmp_path / "new.h5", need_users=True)
    out = rows(invoke(["recommend", tmp_path / "new.h5", "--items", tmp_path / "new.txt", "-k", 5]))
    assert {r[2] for r in out} == {"NEW1", "NEW3"} and len(out) == 2 * len(emb.user_ids)
    u, i = emb.user_vectors[0], emb.item_vectors[list(emb.item_ids).index(out[0][2])]
    assert float(out[0][3]) == pytest.approx(float(u @ i / np.linalg.norm(u) / np.linalg.norm(i)), abs=1e-5)


@pytest.mark.gpu
def test_gpu_top_k_equals_cpu(world):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    args = ["recommend", world / "w.h5", "-k", 5, "--exclude-played", world / "plays.tsv"]
    cpu = rows(invoke([*args, "--device", "cpu"]))
    gpu = rows(invoke([*args, "--device", "cuda"]))
    assert [r[:3] for r in gpu] == [r[:3] for r in cpu]
    assert np.allclose([float(r[3]) for r in gpu], [float(r[3]) for r in cpu], rtol=1e-5)


# ----------------------------------------------------------------------------- a third round of hostile inputs


@pytest.mark.parametrize("option", ["--users", "--items"])
def test_a_binary_file_as_an_id_list_is_named(world, option):
    # an HDF5 file given as --users was read as ids: "user '\\udc89HDF' is not in w.h5 (15,329 of ... unknown)"
    result = invoke(["recommend", world / "w.h5", option, world / "w.h5"], expect=1)
    assert error_line(result) == (f"{option} {world / 'w.h5'} is an HDF5 file (mels or embeddings?), not a text "
                                  "file of ids, one a line: check the path.")


def test_a_new_user_whose_plays_are_all_of_unknown_items_is_said_so(world):
    (world / "other.tsv").write_text("new\tx1\t3\r\nnew\tx2\t1\r\n")  # other songs, Windows line ends
    result = invoke(["recommend", world / "w.h5", "--users", "-", "--plays", world / "other.tsv"], input="new\n",
                    expect=1)
    assert error_line(result) == (  # was "user 'new' is not in w.h5 nor in --plays"
        f"user 'new' is not in {world / 'w.h5'}, and none of its plays in --plays is of an item of "
        f"{world / 'w.h5'} (1 of the 1 users cannot be folded in): are the plays and the embeddings of the same "
        "songs? (--skip-unknown leaves such users out).")

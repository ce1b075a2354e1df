"""`dcue subset` on real MSD lines and on hand-made files, with independently computed answers."""

import collections
import gzip

import pytest
from conftest import error_line, invoke, shared_data

from dcue_cli.errors import DcueError
from dcue_cli.random_split import parse_fractions, split_ids


def read_tsv(path):
    return [line.rstrip("\n").split("\t") for line in open(path, encoding="utf-8") if line.strip()]


def expected_subset(rows, n_songs, n_users):
    """The paper's selection, written plainly: top songs by plays, then top users by distinct songs."""
    totals = collections.Counter()
    for _user, song, count in rows:
        totals[song] += count
    songs = set(sorted(totals, key=lambda s: (-totals[s], s))[:n_songs])
    summed = collections.Counter()
    for user, song, count in rows:
        if song in songs:
            summed[user, song] += count
    distinct = collections.Counter(user for user, _ in summed)
    users = set(sorted(distinct, key=lambda u: (-distinct[u], u))[:n_users])
    return {(u, s): c for (u, s), c in summed.items() if u in users}


def test_subset_real_msd_lines(tmp_path):
    path = shared_data("msd_taste_profile_head5000", "train_triplets_small.txt")
    rows = [(u, s, int(c)) for u, s, c in (line.split("\t") for line in path.read_text().splitlines())]
    result = invoke(["subset", path, "-o", tmp_path, "--songs", 500, "--users", 40, "--seed", 7])
    expected = expected_subset(rows, 500, 40)
    got = {(u, s): int(c) for u, s, c in read_tsv(tmp_path / "plays.tsv")}
    assert got == expected
    splits = dict(read_tsv(tmp_path / "splits.tsv"))
    assert set(splits) == {s for _, s in expected}
    counts = collections.Counter(splits.values())
    n = len(splits)
    assert counts["train"] == round(0.7 * n) and counts["valid"] == round(0.1 * n)
    assert "split" in result.stderr and "interactions" in result.stderr
    assert result.stdout == ""


def test_subset_is_seeded_and_deterministic(tmp_path):
    path = shared_data("msd_taste_profile_head5000", "train_triplets_small.txt")
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        invoke(["-q", "subset", path, "-o", tmp_path / name, "--seed", seed, "--songs", 300, "--users", 30])
    a, b, c = ((tmp_path / n / "splits.tsv").read_bytes() for n in "abc")
    assert a == b and a != c
    assert (tmp_path / "a" / "plays.tsv").read_bytes() == (tmp_path / "c" / "plays.tsv").read_bytes()


def test_duplicates_summed_gz_and_stdin(tmp_path):
    text = "u1\ts1\t2\nu1\ts1\t3\nu2\ts1\t1\nu2\ts2\t4\n"
    gz = tmp_path / "p.tsv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    invoke(["-q", "subset", gz, "-o", tmp_path / "gz", "--songs", 0, "--users", 0])
    invoke(["-q", "subset", "-", "-o", tmp_path / "stdin", "--songs", 0, "--users", 0], input=text)
    for out in ("gz", "stdin"):
        assert read_tsv(tmp_path / out / "plays.tsv") == [["u1", "s1", "5"], ["u2", "s1", "1"], ["u2", "s2", "4"]]


def test_hetrec_header_crlf_read_through_same_reader(tmp_path):
    path = shared_data("lastfm_hetrec2k", "user_artists.dat")
    invoke(["-q", "subset", path, "-o", tmp_path, "--songs", 0, "--users", 0, "--holdout-interactions", 0.2])
    plays = read_tsv(tmp_path / "plays.tsv")
    assert len(plays) == 92834  # every HetRec row; header skipped, CRLF stripped
    assert all(not c.endswith("\r") for _, _, c in plays)
    train, test = read_tsv(tmp_path / "plays.train.tsv"), read_tsv(tmp_path / "plays.test.tsv")
    assert len(train) + len(test) == len(plays)
    assert 0.18 < len(test) / len(plays) < 0.22
    per_user_train = {u for u, _, _ in train}
    assert {u for u, _, _ in test} <= per_user_train  # nobody loses all their training plays


def test_columns_pick_fields(tmp_path):
    (tmp_path / "p.tsv").write_text("x\tu1\ts1\t3\nx\tu2\ts1\t1\n")
    invoke(["-q", "subset", tmp_path / "p.tsv", "-o", tmp_path / "o", "--columns", "1,2,3",
            "--songs", 0, "--users", 0])
    assert read_tsv(tmp_path / "o" / "plays.tsv") == [["u1", "s1", "3"], ["u2", "s1", "1"]]


@pytest.mark.parametrize("text, message", [
    ("u1\ts1\t1\nu2\ts2\n", "p.tsv:2: expected 3 tab-separated fields, found 2: 'u2\\ts2'"),
    ("u1\ts1\t1\nu2\ts2\tmany\n", "p.tsv:2: count 'many' is not a positive integer: 'u2\\ts2\\tmany'"),
    ("u1\ts1\t1\n\nu2\ts2\t-3\n", "p.tsv:3: count '-3' is not a positive integer"),
    ("u1\ts1\t1.5\n", "p.tsv:1: count '1.5' is not a positive integer"),
    ("u1\ts1\t1\tx\n", "p.tsv:1: expected 3 tab-separated fields, found 4"),
])
def test_malformed_line_names_file_and_line(tmp_path, text, message):
    (tmp_path / "p.tsv").write_text(text)
    result = invoke(["subset", tmp_path / "p.tsv", "-o", tmp_path / "o"], expect=1)
    assert result.stderr.startswith("Error: " + str(tmp_path / message)), result.stderr
    assert "--skip-bad" in result.stderr
    assert not (tmp_path / "o" / "plays.tsv").exists()


def test_skip_bad_counts(tmp_path):
    (tmp_path / "p.tsv").write_text("u1\ts1\t1\nu2\ts2\nu3\ts3\tx\nu4\ts1\t2\n")
    result = invoke(["subset", tmp_path / "p.tsv", "-o", tmp_path / "o", "--skip-bad", "--songs", 0, "--users", 0])
    assert "skipped 2 bad lines (--skip-bad)" in result.stderr
    assert len(read_tsv(tmp_path / "o" / "plays.tsv")) == 2


def test_empty_input_and_fewer_songs_than_asked(tmp_path):
    (tmp_path / "empty.tsv").write_text("")
    result = invoke(["subset", tmp_path / "empty.tsv", "-o", tmp_path / "o"], expect=1)
    assert result.stderr == (f"Error: {tmp_path / 'empty.tsv'} has no plays: expected lines of "
                             "user_id<TAB>item_id<TAB>count.\n")
    (tmp_path / "p.tsv").write_text("u1\ts1\t1\nu2\ts2\t1\n")
    result = invoke(["subset", tmp_path / "p.tsv", "-o", tmp_path / "o"])
    assert "only 2 songs available, fewer than --songs 10000: keeping all of them" in result.stderr


def test_missing_file_and_bad_split(tmp_path):
    result = invoke(["subset", tmp_path / "nope.tsv", "-o", tmp_path / "o"], expect=1)
    assert result.stderr == f"Error: {tmp_path / 'nope.tsv'} does not exist: check the path.\n"
    (tmp_path / "p.tsv").write_text("u1\ts1\t1\n")
    result = invoke(["subset", tmp_path / "p.tsv", "-o", tmp_path / "o", "--split", "0.5,0.5"], expect=2)  # misuse
    assert result.stderr == ("Error: --split '0.5,0.5': give three non-negative fractions for train,valid,test "
                             "that sum to 1, e.g. 0.7,0.1,0.2.\n")
    result = invoke(["subset", tmp_path / "p.tsv", "-o", tmp_path / "o", "--id-map", tmp_path / "p.tsv"], expect=2)
    assert "--id-map only applies to --songs-with" in result.stderr


def test_songs_with_id_map_and_exclude(tmp_path):
    (tmp_path / "p.tsv").write_text("u1\tSOAAAAAAAAAAAAAAA1\t5\nu1\tSOAAAAAAAAAAAAAAA2\t4\n"
                                    "u2\tSOAAAAAAAAAAAAAAA3\t3\nu2\tSOAAAAAAAAAAAAAAA1\t1\n")
    (tmp_path / "ids.txt").write_text("TRAAAAAAAAAAAAAAA1\nTRAAAAAAAAAAAAAAA2\nTRAAAAAAAAAAAAAAA3\n")
    (tmp_path / "unique_tracks.txt").write_text(
        "TRAAAAAAAAAAAAAAA1<SEP>SOAAAAAAAAAAAAAAA1<SEP>A<SEP>x\n"
        "TRAAAAAAAAAAAAAAA2<SEP>SOAAAAAAAAAAAAAAA2<SEP>B<SEP>y\n"
        "TRAAAAAAAAAAAAAAA3<SEP>SOAAAAAAAAAAAAAAA3<SEP>C<SEP>z\n")
    (tmp_path / "mismatch.txt").write_text(
        "ERROR: <SOAAAAAAAAAAAAAAA2 TRAAAAAAAAAAAAAAA2> Artist  -  Song   !=   Other  -  Thing\n")
    result = invoke(["subset", tmp_path / "p.tsv", "-o", tmp_path / "o", "--songs-with", tmp_path / "ids.txt",
                     "--id-map", tmp_path / "unique_tracks.txt", "--exclude", tmp_path / "mismatch.txt"])
    assert "excluded (--exclude): 1" in result.stderr
    songs = {s for _, s, _ in read_tsv(tmp_path / "o" / "plays.tsv")}
    assert songs == {"SOAAAAAAAAAAAAAAA1", "SOAAAAAAAAAAAAAAA3"}


def test_duplicated_rows_are_summed_and_counted(tmp_path):
    (tmp_path / "plays.tsv").write_text("u1\ti1\t3\nu1\ti2\t1\nu2\ti1\t2\nu2\ti3\t5\n" + "u1\ti1\t3\nu1\ti1\t1\n")
    result = invoke(["subset", tmp_path / "plays.tsv", "-o", tmp_path / "out", "--songs", 0, "--users", 0])
    assert "duplicate (user, song) rows summed: 2" in result.stderr
    assert (tmp_path / "out" / "plays.tsv").read_text().splitlines()[0] == "u1\ti1\t7"


def test_holdout_fraction_is_checked_before_any_work(tmp_path):
    (tmp_path / "p.tsv").write_text("u1\ts1\t1\n")
    result = invoke(["subset", tmp_path / "p.tsv", "-o", tmp_path / "o", "--holdout-interactions", 1], expect=2)
    assert result.stderr == "Error: --holdout-interactions 1.0: give a fraction between 0 and 1, e.g. 0.2.\n"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text", ["0.5,0.5", "0.7,0.1,0.2,0", "a,b,c", "0.8,0.4,-0.2", "0.7,0.1,0.3", "nan,0.5,0.5",
                                  "inf,0,0"])
def test_fractions_are_three_finite_non_negative_numbers_summing_to_one(text):
    with pytest.raises(DcueError) as err:
        parse_fractions(text)
    assert err.value.message == (f"--split {text!r}: give three non-negative fractions for train,valid,test that "
                                 "sum to 1, e.g. 0.7,0.1,0.2.")
    assert parse_fractions("0,0,1") == (0.0, 0.0, 1.0)
    with pytest.raises(DcueError, match="give three positive fractions"):
        parse_fractions("0,0,1", allow_zero=False)
    assert parse_fractions("0.34,0.33,0.33", allow_zero=False) == (0.34, 0.33, 0.33)


def test_split_depends_only_on_the_set_of_ids_and_the_seed():
    ids = [f"s{i:03d}" for i in range(101)]
    split = split_ids(ids, (0.7, 0.1, 0.2), seed=4)
    assert list(split) == sorted(ids)  # in sorted id order, whatever order they came in
    assert split == split_ids(reversed(ids), (0.7, 0.1, 0.2), seed=4)
    assert split != split_ids(ids, (0.7, 0.1, 0.2), seed=5)
    sizes = collections.Counter(split.values())
    assert (sizes["train"], sizes["valid"], sizes["test"]) == (round(0.7 * 101), round(0.1 * 101), 101 - 71 - 10)


def test_summed_counts_past_the_int32_maximum_are_capped_and_said(tmp_path):
    """They were capped at 2^31-1 without a word."""
    (tmp_path / "p.tsv").write_text("u1\ts1\t2147483647\nu1\ts1\t5\nu2\ts1\t1\n"
                                    "u2\ts2\t2000000000\nu2\ts2\t2000000000\n")
    result = invoke(["subset", tmp_path / "p.tsv", "-o", tmp_path / "o", "--songs", 0, "--users", 0])
    assert ("Warning: 2 (user, song) pairs summed over duplicate rows exceed 2147483647 plays: capped at "
            "2147483647") in result.stderr
    assert read_tsv(tmp_path / "o" / "plays.tsv") == [["u1", "s1", "2147483647"], ["u2", "s1", "1"],
                                                      ["u2", "s2", "2147483647"]]
    (tmp_path / "q.tsv").write_text("u1\ts1\t3\nu1\ts1\t4\n")
    assert "capped" not in invoke(["subset", tmp_path / "q.tsv", "-o", tmp_path / "o2"]).stderr


@pytest.mark.parametrize("command", ["subset", "wmf", "score", "recommend", "train"])
@pytest.mark.parametrize("option, value, message", [
    ("--columns", "0,1", "--columns '0,1': give 3 distinct zero-based positions, e.g. 0,1,2."),
    ("--columns", "0,0,2", "--columns '0,0,2': give 3 distinct zero-based positions, e.g. 0,1,2."),
    ("--header", "maybe", "Invalid value for '--header': 'maybe' is not one of 'auto', 'yes', 'no'."),
])
def test_a_bad_plays_option_is_a_usage_error_exit_2(tmp_path, command, option, value, message):
    """--columns exited 1, as for bad data; a misuse of an option is exit 2, the same line."""
    (tmp_path / "p.tsv").write_text("u1\ts1\t1\n")
    p = tmp_path / "p.tsv"
    args = {"subset": ["subset", p, "-o", tmp_path / "o"], "wmf": ["wmf", p, "-o", tmp_path / "w.h5"],
            "score": ["score", p, "--plays", p, "--splits", p], "recommend": ["recommend", p, "--plays", p],
            "train": ["train", p, p, "--splits", p, "-o", tmp_path / "m.pt"]}[command]
    result = invoke([*args, option, value], expect=2)
    assert error_line(result) == message
    assert (tmp_path / "p.tsv").read_text() == "u1\ts1\t1\n" and sorted(tmp_path.iterdir()) == [p]


# ----------------------------------------------------------------------------- --songs-with that is no id list
# (second round, helper REL-TRAIN)

def test_songs_with_a_checkpoint_or_binary_file_is_named(toy, tmp_path):
    import torch
    from conftest import assert_absent, fails

    model = tmp_path / "model.pt"
    torch.save({"format": "dcue-model"}, model)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\x01\x02binary\x00")
    for path, what in ((model, "a torch file (a model checkpoint?)"), (blob, "a binary file")):
        fails(["subset", toy / "plays.tsv", "-o", tmp_path / "sub", "--songs-with", path],
              f"--songs-with {path} is {what}, not a mels HDF5 or a list of song ids: give the mels.h5 of "
              "`dcue melspec` or a file of one id a line.")
        assert_absent(tmp_path / "sub" / "plays.tsv")


def test_songs_with_ids_that_match_no_song_says_so(toy, tmp_path):
    from conftest import fails

    fails(["subset", toy / "plays.tsv", "-o", tmp_path / "sub", "--songs-with", toy / "plays.tsv"],
          "none of the 60 songs of the plays is among the 40 ids of --songs-with (e.g. 'U000'): do the ids match? "
          "(melspec names items by track id: give --id-map unique_tracks.txt to map them to song ids).")
    assert not (tmp_path / "sub").exists()


@pytest.mark.parametrize("option", ["--songs-with", "--exclude", "--id-map"])
def test_a_missing_option_file_exits_1_like_a_missing_argument(toy, tmp_path, option):
    from conftest import fails

    extra = ["--songs-with", toy / "mels.h5"] if option == "--id-map" else []
    fails(["subset", toy / "plays.tsv", "-o", tmp_path / "sub", option, tmp_path / "nope.txt", *extra],
          f"{tmp_path / 'nope.txt'} does not exist: check the path.")
    assert not (tmp_path / "sub").exists()

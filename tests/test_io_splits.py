"""dcue_cli.io.splits: the splits TSV read and written, and every bad splits file named by every
command that reads one (wmf, score, autotag)."""

import pytest
from conftest import TAGGER, assert_absent, cold, fails, invoke, tsv_ids
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcue_cli.errors import DcueError
from dcue_cli.io.splits import read_splits, write_splits

# Each example writes a file under tmp_path: the function-scoped fixture is shared on purpose.
FILES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])




def test_splits_reader(tmp_path):
    (tmp_path / "s.tsv").write_text("item_id\tsplit\na\ttrain\nb\tTEST\n")
    assert read_splits(tmp_path / "s.tsv") == {"a": "train", "b": "test"}
    (tmp_path / "bad.tsv").write_text("a\ttrain\nb\tdev\n")
    with pytest.raises(DcueError, match=r"bad.tsv:2: split 'dev' for item 'b' is not one of train, valid, test"):
        read_splits(tmp_path / "bad.tsv")
    (tmp_path / "twice.tsv").write_text("a\ttrain\na\ttest\n")
    with pytest.raises(DcueError, match=r"twice.tsv:2: item 'a' is in both 'train' and 'test'"):
        read_splits(tmp_path / "twice.tsv")


@FILES
@given(splits=st.dictionaries(tsv_ids(), st.sampled_from(["train", "valid", "test"]), min_size=1, max_size=30))
def test_splits_written_then_read_are_the_same(tmp_path, splits):
    path = tmp_path / "splits.tsv"
    write_splits(path, splits)
    assert read_splits(path) == splits


# ----------------------------------------------------------------------------- hostile splits files, through the commands

GOOD_SPLITS = "".join(f"s{i:02d}\t{'train' if i < 20 else 'valid' if i < 24 else 'test'}\n" for i in range(30))

BAD_SPLITS = {
    "three fields": (GOOD_SPLITS + "s99\ttest\textra\n",
                     ("31: expected 2 '\\t'-separated fields in a splits TSV (item_id<TAB>split), found 3: "
                     "'s99\\ttest\\textra'")),
    "one field": (GOOD_SPLITS + "s98\n",
                  "31: expected 2 '\\t'-separated fields in a splits TSV (item_id<TAB>split), found 1: 's98'"),
    "one field first": ("s98\n" + GOOD_SPLITS,
                        "1: expected 2 '\\t'-separated fields in a splits TSV (item_id<TAB>split), found 1: 's98'"),
    "unknown split": (GOOD_SPLITS + "s97\ttset\n", ("31: split 'tset' for item 's97' is not one of train, valid, "
                                                   "test: fix the line or rewrite the file with `dcue subset`.")),
    "two splits": (GOOD_SPLITS + "s00\ttest\n",
                   "31: item 's00' is in both 'train' and 'test': each item belongs to exactly one split."),
}


@pytest.mark.parametrize("command", ["wmf", "score", "autotag"])
@pytest.mark.parametrize("case", sorted(BAD_SPLITS))
def test_bad_splits_line_is_named_by_every_command(world, tmp_path, command, case):
    text, message = BAD_SPLITS[case]
    path = tmp_path / "splits.tsv"
    path.write_text(text)
    out = tmp_path / "w.h5"
    args = {"wmf": ["wmf", world / "plays.tsv", "--splits", path, "--fit-on", "train", "-o", out],
            "score": ["score", world / "emb.h5", "--plays", world / "plays.tsv", "--splits", path],
            "autotag": ["autotag", world / "emb.h5", world / "tags.tsv", "--splits", path, *TAGGER]}[command]
    fails(args, f"{path}:{message}")
    assert_absent(out)


def test_splits_variations(world, tmp_path):
    reference = invoke(["score", world / "emb.h5", *cold(world), "--json"]).stdout
    for name, data in {"bom": b"\xef\xbb\xbf" + GOOD_SPLITS.encode(),
                       "crlf blank": ("\n" + GOOD_SPLITS.replace("\n", "\r\n\r\n")).encode(),
                       "duplicates": (GOOD_SPLITS * 2).encode(),
                       "header": b"item\tsplit\n" + GOOD_SPLITS.encode()}.items():
        path = tmp_path / f"{name}.tsv"
        path.write_bytes(data)
        result = invoke(["score", world / "emb.h5", *cold(world)[:2], "--splits", path, "--bootstrap", 100, "--json"])
        assert result.stdout.replace(str(path), "S") == reference.replace(str(world / "splits.tsv"), "S"), name
        if name == "header":
            assert f"{path}:1: skipped as a header line: 'item\\tsplit'" in result.stderr
    (tmp_path / "empty.tsv").write_text("\n\n")
    fails(["score", world / "emb.h5", *cold(world)[:2], "--splits", tmp_path / "empty.tsv"],
          f"{tmp_path / 'empty.tsv'} has no splits: expected lines of item_id<TAB>train|valid|test.")

"""The I/O layer: TSV readers (plays, splits) and the embeddings HDF5 contract (tags, id maps: test_io_tags)."""

import numpy as np
import pytest

from dcue_cli.errors import DcueError
from dcue_cli.io.embeddings import Embeddings, read_embeddings, write_embeddings
from dcue_cli.io.plays import read_plays
from dcue_cli.io.tsv import read_splits


def test_plays_bom_crlf_header_and_latin1(tmp_path):
    p = tmp_path / "p.tsv"
    p.write_bytes("\ufeffuser\titem\tcount\r\nu1\ts\xe9\t2\r\n".encode("utf-8") + b"u\xe92\ts1\t1\r\n")
    plays = read_plays(p)
    assert list(plays.user_ids) == ["u1", "u\udce92"]  # Latin-1 byte kept, not fatal
    assert list(plays.item_ids) == ["sé", "s1"]
    assert plays.counts.tolist() == [2, 1]


def test_plays_fast_and_checked_paths_agree(tmp_path):
    rng = np.random.default_rng(0)
    lines = [f"u{rng.integers(50)}\ts{rng.integers(80)}\t{rng.integers(1, 9)}" for _ in range(3000)]
    (tmp_path / "good.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "bad.tsv").write_text("\n".join(lines) + "\nbroken line\n")
    fast = read_plays(tmp_path / "good.tsv", chunk_rows=700)
    checked = read_plays(tmp_path / "bad.tsv", skip_bad=True)
    for attr in ("user_ids", "item_ids", "users", "items", "counts"):
        assert np.array_equal(getattr(fast, attr), getattr(checked, attr)), attr
    assert checked.skipped == 1


def test_plays_to_csr_and_deduplicate(tmp_path):
    (tmp_path / "p.tsv").write_text("a\tx\t1\na\tx\t2\nb\ty\t5\n")
    plays = read_plays(tmp_path / "p.tsv")
    assert plays.deduplicate().counts.tolist() == [3, 5]
    assert plays.to_csr().toarray().tolist() == [[3, 0], [0, 5]]
    assert plays.to_csr(binary=True).toarray().tolist() == [[1, 0], [0, 1]]


def test_splits_reader(tmp_path):
    (tmp_path / "s.tsv").write_text("item_id\tsplit\na\ttrain\nb\tTEST\n")
    assert read_splits(tmp_path / "s.tsv") == {"a": "train", "b": "test"}
    (tmp_path / "bad.tsv").write_text("a\ttrain\nb\tdev\n")
    with pytest.raises(DcueError, match=r"bad.tsv:2: split 'dev' for item 'b' is not one of train, valid, test"):
        read_splits(tmp_path / "bad.tsv")
    (tmp_path / "twice.tsv").write_text("a\ttrain\na\ttest\n")
    with pytest.raises(DcueError, match=r"twice.tsv:2: item 'a' is in both 'train' and 'test'"):
        read_splits(tmp_path / "twice.tsv")


def test_embeddings_roundtrip_atomic_and_schema_errors(tmp_path):
    import h5py

    emb = Embeddings(np.array(["s1", "sé"], object), np.eye(2, 3, dtype=np.float32),
                     np.array(["u1"], object), np.ones((1, 3), np.float32), source="wmf", similarity="dot",
                     attrs={"factors": 3})
    path = tmp_path / "e.h5"
    write_embeddings(path, emb)
    back = read_embeddings(path, need_users=True)
    assert list(back.item_ids) == ["s1", "sé"] and back.attrs["factors"] == 3 and back.similarity == "dot"
    assert np.array_equal(back.item_vectors, emb.item_vectors)
    assert [p.name for p in tmp_path.iterdir()] == ["e.h5"]  # no temporary file left

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["items/ids"] = np.array([b"a"])
    with pytest.raises(DcueError) as err:
        read_embeddings(tmp_path / "other.h5")
    assert str(err.value.message) == (f"{tmp_path / 'other.h5'} has no /items/vectors: "
                                      "was it written by `dcue embed` or `dcue wmf`?")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(DcueError, match="is not a readable HDF5 file"):
        read_embeddings(tmp_path / "junk.h5")


def test_failed_write_leaves_nothing(tmp_path):
    emb = Embeddings(np.array(["a"], object), np.ones((2, 2), np.float32))  # wrong shape
    with pytest.raises(ValueError):
        write_embeddings(tmp_path / "e.h5", emb)
    assert list(tmp_path.iterdir()) == []


def test_fixed_width_fast_path_matches_general_reader(tmp_path):
    from dcue_cli.io import plays as reader

    rng = np.random.default_rng(1)
    users = [f"{rng.integers(16**8):08x}" * 5 for _ in range(30)]  # 40-hex, Taste Profile style
    songs = [f"SO{rng.integers(10**9):016d}" for _ in range(60)]
    lines = [f"{users[rng.integers(30)]}\t{songs[rng.integers(60)]}\t{rng.integers(1, 300)}" for _ in range(2000)]
    path = tmp_path / "p.tsv"
    path.write_text("\n".join(sorted(lines)))  # grouped by user, no final newline
    fixed = reader._read_fixed_width(path, False, block_bytes=4096)
    general = reader._read_fast(path, (0, 1, 2), False, 500, False)
    for attr in ("user_ids", "item_ids", "users", "items", "counts"):
        assert np.array_equal(getattr(fixed, attr), getattr(general, attr)), attr
    assert np.array_equal(read_plays(path).counts, general.counts)


def test_atomic_output_follows_umask(tmp_path):
    import os

    from dcue_cli.io.atomic import open_text_output

    old = os.umask(0o022)
    try:
        with open_text_output(tmp_path / "x.tsv") as out:
            out.write("a\n")
    finally:
        os.umask(old)
    assert (tmp_path / "x.tsv").stat().st_mode & 0o777 == 0o644

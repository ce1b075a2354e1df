"""The embeddings HDF5 contract: written and read back, checked on read (other formats: test_io_<format>.py)."""

import numpy as np
import pytest

from dcue_cli.errors import DcueError
from dcue_cli.io.embeddings import Embeddings, read_embeddings, write_embeddings


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

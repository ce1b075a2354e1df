"""The mels HDF5 format (dcue_cli.io.mels*): the reader's API and schema errors, what training
reads, and the writer's crash safety at the library level (kill during finish, an interrupted
--overwrite). The command's resume after kill -9 and its shards: test_melspec.py."""

import filecmp
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from audio_files import make_folder
from conftest import invoke

from dcue_cli.audio.logmel import FeatureConfig
from dcue_cli.errors import DcueError
from dcue_cli.io.mels import MelsFile, is_hdf5, item_stats, mean_std, plain
from dcue_cli.io.mels_writer import MelsWriter

# --- the reader ---------------------------------------------------------------------------------

def test_mels_file_api(tmp_path):
    make_folder(tmp_path / "audio", 3)
    out = tmp_path / "m.h5"
    invoke(["melspec", tmp_path / "audio", "-o", out, "-j", "0"])
    with MelsFile(out) as m:
        assert len(m) == 3 and m.n_mels == 128 and m.dtype == np.float16
        assert m.ids.dtype == object and isinstance(m.ids[0], str)
        assert m.offsets.dtype == np.int64 and len(m.offsets) == 4 and m.offsets[-1] == m.total_frames
        assert m.index() == {"TR0000": 0, "TR0001": 1, "TR0002": 2}
        assert m.item(1).dtype == np.float32 and m.item(1).shape == (m.lengths[1], 128)
        assert np.array_equal(m.item(-1), m.read_all()[m.offsets[2]:].astype(np.float32))
        copy = pickle.loads(pickle.dumps(m))  # e.g. into a DataLoader worker
        assert np.array_equal(copy.item(0), m.item(0))
        copy.close()

def test_mels_file_schema_errors(tmp_path):
    bad = tmp_path / "x.h5"
    with h5py.File(bad, "w") as f:
        f["ids"] = np.array([b"a"])
        f["mel"] = np.zeros((3, 4), np.float16)
    with pytest.raises(DcueError) as info:
        MelsFile(bad)
    assert info.value.message == f"{bad} has no /offsets: was it written by `dcue melspec`?"
    with h5py.File(bad, "a") as f:
        f["offsets"] = np.array([0, 2], np.int64)
    with pytest.raises(DcueError, match=r"/offsets does not index /mel"):
        MelsFile(bad)
    text = tmp_path / "y.h5"
    text.write_text("not hdf5")
    with pytest.raises(DcueError, match=r"is not a readable HDF5 file .*: give a mels file written by"):
        MelsFile(text)
    with pytest.raises(DcueError, match=r"does not exist: check the path"):
        MelsFile(tmp_path / "nope.h5")

def test_what_training_and_embedding_read(tmp_path):
    """frames, item_sums, normalisation, model_features, reopen_if_forked: what data.py's reader wrapper did."""
    out = tmp_path / "m.h5"
    mels = {"a": np.full((3, 4), 1.0, np.float16), "b": np.arange(8, dtype=np.float16).reshape(2, 4)}
    with MelsWriter(out, FeatureConfig(n_mels=4).to_attrs()) as writer:
        for item, mel in mels.items():
            writer.append(item, mel)
        summary = writer.finish()
    with MelsFile(out) as m:
        assert np.array_equal(m.frames(2, 5), np.concatenate([mels["a"], mels["b"]])[2:5])
        assert m.frames(0, 5).dtype == np.float16 and list(m.lengths) == [3, 2]
        sums = np.array([item_stats(mels["b"]), item_stats(mels["a"])])
        assert np.array_equal(m.item_sums([1, 0]), sums)
        mean, std = m.normalisation()
        assert mean.dtype == std.dtype == np.float32 and mean.shape == std.shape == (1,)
        assert mean[0] == np.float32(summary["mean"]) and std[0] == np.float32(summary["std"])
        assert mean_std(m.item_sums([0, 1]), 20) == (summary["mean"], summary["std"])
        assert m.model_features() == {"sr": 22050, "n_fft": 1024, "hop_length": 512, "n_mels": 4, "fmin": 0.0,
                                      "fmax": 0.0, "compression": "log10(1+10*mel)", "window": "hann"}
        assert all(type(v) in (int, float, str) for v in m.model_features().values())
        handle = m.mel
        m.reopen_if_forked()  # same process: nothing to do
        assert m.mel is handle
        m._pid = -1  # as in a forked child
        m.reopen_if_forked()
        assert m.mel is not handle and np.array_equal(m.frames(0, 5), np.concatenate(list(mels.values())))
        handle.file.close()  # the "parent's" handle, left open by the child
    with h5py.File(out, "a") as f:  # an older file: no /item_stats, a std of 0 (no usable statistics)
        del f["item_stats"]
        f.attrs["std"] = 0.0
    with MelsFile(out) as m:
        assert m.item_stats is None and np.array_equal(m.item_sums([1, 0]), sums)
        assert m.normalisation() is None
    assert mean_std(np.zeros((0, 2)), 0)[0] != mean_std(np.zeros((0, 2)), 0)[0]  # NaN: no values
    assert mean_std(np.array([[4.0, 8.0]]), 2, min_var=1e-12) == (2.0, 1e-6)


def test_plain_and_is_hdf5(tmp_path):
    assert plain(b"caf\xc3\xa9") == "café" and plain(np.float32(0.5)) == 0.5 and type(plain(np.int64(3))) is int
    assert plain(np.array([b"a", b"b"])) == ["a", "b"] and plain(np.array(2.0)) == 2.0
    (tmp_path / "t.h5").write_text("not hdf5")
    assert not is_hdf5(tmp_path / "t.h5") and not is_hdf5(tmp_path / "absent") and not is_hdf5(tmp_path)
    with h5py.File(tmp_path / "x.h5", "w"):
        pass
    assert is_hdf5(tmp_path / "x.h5")

# --- the writer ---------------------------------------------------------------------------------

def test_kill_during_finish_is_recovered(tmp_path):
    config = FeatureConfig()
    mels = {f"id{k}": np.full((3 + k, 128), k, np.float16) for k in range(6)}
    out = tmp_path / "m.h5"

    def run(ids):
        with MelsWriter(out, config.to_attrs()) as writer:
            for item in ids:
                if item not in writer.present:
                    writer.append(item, mels[item])
                    writer.commit()
            return writer.finish()

    run(["id0", "id1"])
    reference = tmp_path / "ref.h5"
    with MelsWriter(reference, config.to_attrs()) as writer:
        for item in sorted(mels):
            writer.append(item, mels[item])
        writer.finish()

    # killed after the new output was renamed into place, before the partial folder went away
    partial = Path(f"{out}.partial")
    with MelsWriter(out, config.to_attrs()) as writer:
        for item in ("id2", "id3"):
            writer.append(item, mels[item])
        writer.commit()
        shutil.copytree(partial, tmp_path / "saved")
        writer.finish()
    shutil.copytree(tmp_path / "saved", partial)
    (partial / "output.h5.tmp").write_bytes(b"half a file")  # and a killed final write's leftover
    (partial / "seg-000099.h5.tmp").write_bytes(b"half a segment")
    summary = run(sorted(mels))
    assert summary["n_items"] == 6
    assert filecmp.cmp(out, reference, shallow=False)
    assert not partial.exists()

def test_interrupted_overwrite_still_replaces_when_resumed(tmp_path):
    attrs = FeatureConfig().to_attrs()
    out = tmp_path / "m.h5"
    with MelsWriter(out, attrs) as writer:
        writer.append("old", np.ones((4, 128), np.float16))
        writer.finish()
    with pytest.raises(KeyboardInterrupt), MelsWriter(out, attrs, overwrite=True) as writer:
        writer.append("new1", np.ones((5, 128), np.float16))
        raise KeyboardInterrupt
    with MelsFile(out) as m:  # the old output is untouched until the new one is complete
        assert list(m.ids) == ["old"]
    with MelsWriter(out, attrs) as writer:  # a plain rerun finishes the --overwrite run
        assert writer.present == {"new1"}
        writer.append("new2", np.ones((6, 128), np.float16))
        writer.finish()
    with MelsFile(out) as m:
        assert list(m.ids) == ["new1", "new2"] and m.attrs["mean"] == 1.0 and m.attrs["std"] == 0.0

"""Foreign, older, truncated, damaged and read-only HDF5 inputs (mels, embeddings, checkpoints), and
vectors that give no score, through every command that reads them: one-line errors, nothing written."""

import filecmp
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import TAGGER, assert_absent, cold, error_line, fails, invoke, invoke_any

from dcue_cli.io.embeddings import Embeddings, read_embeddings, write_embeddings
from dcue_cli.io.mels import MelsFile

EMB_HINT = "was it written by `dcue embed` or `dcue wmf`?"


def ids_of(path) -> list:
    with MelsFile(path) as m:
        return m.ids.tolist()


def _foreign(path):
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros((3, 3))
        f.attrs["creator"] = "another tool"
    return path


def _truncated(source, path):
    data = Path(source).read_bytes()
    Path(path).write_bytes(data[:len(data) // 2])
    return path




def test_hdf5_from_another_tool(world, three_mels, tmp_path):
    other = _foreign(tmp_path / "other.h5")
    for args in (["score", other, *cold(world)], ["score", other, "--user", "u01"],
                 ["autotag", other, world / "tags.tsv", *TAGGER]):
        fails(args, f"{other} has no /items/ids: {EMB_HINT}")
    fails(["score", three_mels, *cold(world)], f"{three_mels} has no /items/ids: {EMB_HINT}")  # a mels file is not embeddings
    fails(["melspec", "--merge", three_mels, other, "-o", tmp_path / "all.h5"],
          f"{other} has no /ids: was it written by `dcue melspec`?")
    fails(["melspec", "--merge", three_mels, world / "emb.h5", "-o", tmp_path / "all.h5"],
          f"{world / 'emb.h5'} has no /ids: was it written by `dcue melspec`?")
    fails(["subset", world / "plays.tsv", "-o", tmp_path / "sub", "--songs-with", other],
          f"{other} has no /ids list: was it written by `dcue melspec`?")
    assert_absent(tmp_path / "all.h5", tmp_path / "sub" / "plays.tsv")


def test_an_existing_output_from_another_tool_is_never_touched(three_mels, hostile_audio, tmp_path):
    out = _foreign(tmp_path / "m.h5")
    before = out.read_bytes()
    fails(["melspec", hostile_audio / "audio" / "ch1.wav", "-o", out, "-j", "0"],
          f"{out} exists but is not a complete mels file ({out} has no /ids: was it written by `dcue melspec`?); "
          f"add --overwrite to replace it.")
    assert out.read_bytes() == before and not Path(f"{out}.partial").exists()
    invoke(["melspec", hostile_audio / "audio" / "ch1.wav", "-o", out, "-j", "0", "--overwrite"])
    with MelsFile(out) as m:
        assert list(m.ids) == ["ch1"]


def test_older_or_foreign_layouts(world, three_mels, hostile_audio, tmp_path):
    # A mels file without the settings attributes (an older writer): not mixed with new items.
    old = tmp_path / "old.h5"
    with h5py.File(old, "w") as f:
        f["ids"] = np.array([b"a0", b"a1"])
        f["offsets"] = np.array([0, 2, 4])
        f["mel"] = np.zeros((4, 128), np.float32)
    with MelsFile(old) as m:  # still readable
        assert list(m.ids) == ["a0", "a1"] and m.item_stats is None
    fails(["melspec", hostile_audio / "audio" / "ch1.wav", "-o", old, "-j", "0"],
          f"{old} was made with other feature settings (center=<unset> vs True, file vs now): give the same "
          f"options to add to it, or --overwrite to replace it.")
    fails(["melspec", "--merge", three_mels, old, "-o", tmp_path / "all.h5"],
          f"{old} was made with other feature settings than {three_mels} (center=<unset> vs True): merge only shards "
          f"made with the same options.")
    # Embeddings with fixed-length byte ids and float64 vectors: read as they are.
    src = read_embeddings(world / "emb.h5", need_users=True)
    legacy = tmp_path / "legacy.h5"
    with h5py.File(legacy, "w") as f:
        f["items/ids"] = np.array(src.item_ids.astype(str), dtype="S")
        f["items/vectors"] = src.item_vectors.astype(np.float64)
        f["users/ids"] = np.array(src.user_ids.astype(str), dtype="S")
        f["users/vectors"] = src.user_vectors.astype(np.float64)
    import json

    a = json.loads(invoke(["score", legacy, *cold(world), "--json"]).stdout)["models"][0]["metrics"]
    b = json.loads(invoke(["score", world / "emb.h5", *cold(world), "--json"]).stdout)["models"][0]["metrics"]
    assert a == b
    # Layouts that cannot be embeddings.
    cases = {
        "transposed": ({"items/vectors": src.item_vectors.T.copy()},
                       ("{p}: /items/vectors has shape (4, 30) but there are 30 /items/ids: the file is damaged; "
                       "write it again.")),
        "ids as a group": ({"items/ids/x": src.item_ids.astype(str).astype("S")},
                           "{p} has no /items/ids: " + EMB_HINT),
        "complex vectors": ({"items/vectors": src.item_vectors.astype(np.complex64)},
                            "{p}: /items/vectors holds complex64 values, not real numbers: " + EMB_HINT),
        "text vectors": ({"items/vectors": src.item_ids.astype(str).astype("S")},
                         "{p}: /items/vectors holds |S3 values, not real numbers: " + EMB_HINT),
        "no items": ({"items/ids": np.array([], "S1"), "items/vectors": np.zeros((0, 4), np.float32)},
                     "{p} holds no item vectors: write it again (" + EMB_HINT + ")"),
        "user dimension": ({"users/vectors": src.user_vectors[:, :2]},
                           ("{p}: /users/vectors has shape (40, 2), which does not fit 40 users of dimension 4: "
                           "write it again.")),
    }
    for name, (override, message) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.h5"
        with h5py.File(path, "w") as f:
            data = {"items/ids": src.item_ids.astype(str).astype("S"), "items/vectors": src.item_vectors,
                    "users/ids": src.user_ids.astype(str).astype("S"), "users/vectors": src.user_vectors}
            if "items/ids/x" in override:
                del data["items/ids"]
            data.update(override)
            for key, value in data.items():
                f[key] = value
        fails(["score", path, *cold(world)], message.format(p=path))
        fails(["autotag", path, world / "tags.tsv", *TAGGER], message.format(p=path))


def test_truncated_hdf5_files(world, three_mels, tmp_path):
    emb = _truncated(world / "emb.h5", tmp_path / "emb.h5")
    m = _truncated(three_mels, tmp_path / "mels.h5")
    for args in (["score", emb, *cold(world)], ["autotag", emb, world / "tags.tsv", *TAGGER]):
        text = error_line(invoke(args, expect=1))
        assert text.startswith(f"{emb} is not a readable HDF5 file (Unable to synchronously open file (truncated "
                               f"file: eof = ") and text.endswith(f"): {EMB_HINT}")
    text = error_line(invoke(["melspec", "--merge", m, "-o", tmp_path / "all.h5"], expect=1))
    assert text.startswith(f"{m} is not a readable HDF5 file (") and text.endswith(
        "give a mels file written by `dcue melspec`.")
    text = error_line(invoke(["subset", world / "plays.tsv", "-o", tmp_path / "sub", "--songs-with", m], expect=1))
    assert text.startswith(f"{m} is not a readable HDF5 file (") and text.endswith(
        "give the mels file written by `dcue melspec` (or an id list) to --songs-with.")
    before = m.read_bytes()  # a truncated existing output: refused, kept, replaced only on request
    text = error_line(invoke(["melspec", three_mels.parent / "audio" / "ch1.wav", "-o", m, "-j", "0"], expect=1))
    assert text.startswith(f"{m} exists but is not a complete mels file (") and text.endswith(
        "add --overwrite to replace it.")
    assert m.read_bytes() == before
    assert_absent(tmp_path / "all.h5", tmp_path / "sub" / "plays.tsv")


def _damaged_copies(source, tmp_path, n=24):
    """Copies of `source` with 48 bytes flipped at offsets spread over its first 2 KB (HDF5 metadata)."""
    data = Path(source).read_bytes()
    out = []
    for k, offset in enumerate(np.linspace(96, min(2048, len(data) - 48), n).astype(int)):
        damaged = bytearray(data)
        for j in range(offset, offset + 48):
            damaged[j] ^= 0xA5
        path = tmp_path / f"damaged{k}_{Path(source).name}"
        path.write_bytes(bytes(damaged))
        out.append(path)
    return out


def test_damaged_hdf5_metadata_is_a_one_line_error_never_a_traceback(world, three_mels, tmp_path):
    outcomes = {"ok": 0, "error": 0}
    for path in _damaged_copies(world / "emb.h5", tmp_path):
        result = invoke_any(["score", path, *cold(world)])
        if result.exit_code == 0:
            outcomes["ok"] += 1
        else:
            assert result.exit_code == 1
            text = error_line(result)
            assert text.startswith(str(path)), text
            outcomes["error"] += 1
    for path in _damaged_copies(three_mels, tmp_path):
        out = tmp_path / f"merged_{path.name}"
        result = invoke_any(["melspec", "--merge", path, "-o", out])
        if result.exit_code == 0:
            outcomes["ok"] += 1
        else:
            assert result.exit_code == 1 and error_line(result).startswith(str(path))
            assert_absent(out)
            outcomes["error"] += 1
    assert outcomes["error"] >= 4, outcomes  # the sweep did hit the metadata


def test_read_only_inputs_are_read(world, three_mels, tmp_path):
    for source in (world / "emb.h5", three_mels, world / "plays.tsv", world / "splits.tsv"):
        shutil.copy(source, tmp_path / source.name)
        os.chmod(tmp_path / source.name, 0o444)
    invoke(["score", tmp_path / "emb.h5", "--plays", tmp_path / "plays.tsv", "--splits", tmp_path / "splits.tsv",
            "--bootstrap", 100])
    invoke(["melspec", "--merge", tmp_path / three_mels.name, "-o", tmp_path / "copy.h5"])
    assert filecmp.cmp(tmp_path / "copy.h5", three_mels, shallow=False)
    invoke(["subset", tmp_path / "plays.tsv", "-o", tmp_path / "sub", "--songs", 0, "--users", 0])
    # a read-only output that melspec adds to is replaced whole, never modified in place
    shutil.copy(three_mels, tmp_path / "grow.h5")
    os.chmod(tmp_path / "grow.h5", 0o444)
    invoke(["melspec", three_mels.parent / "audio" / "ch3.wav", "-o", tmp_path / "grow.h5", "-j", "0"])
    with MelsFile(tmp_path / "grow.h5") as m:
        assert len(m) == 4


@pytest.mark.parametrize("bad", ["nan item", "inf user", "huge"])
def test_nan_infinite_or_overflowing_vectors_are_refused(world, tmp_path, bad):
    emb = read_embeddings(world / "emb.h5", need_users=True)
    items, users = emb.item_vectors.copy(), emb.user_vectors.copy()
    if bad == "nan item":
        items[25, 1] = np.nan
    elif bad == "inf user":
        users[3, 0] = np.inf
    else:
        items[25], users[3] = 3e19, 3e19
    path = tmp_path / "bad.h5"
    write_embeddings(path, Embeddings(emb.item_ids, items, emb.user_ids, users, source="wmf"))
    message = {"nan item": f"{path}: 1 item vectors hold NaN or infinity (e.g. item 's25'): write the file again "
                           "(a diverged run gives such vectors).",
               "inf user": f"{path}: 1 user vectors hold NaN or infinity (e.g. user 'u03'): write the file again "
                           "(a diverged run gives such vectors).",
               "huge": f"{path}: vector values as large as 3.0e+19 make the scores overflow float32: write the file "
                       "again (a diverged run gives such vectors)."}[bad]
    fails(["score", path, *cold(world)], message)
    query = ["score", path, "--user", "u03"] if bad != "nan item" else ["score", path, "--item", "s00"]
    text = error_line(invoke(query, expect=1))
    assert text.startswith(f"{path}: ") and "scores are NaN or infinite" in text
    if bad == "nan item":  # autotag reads item vectors only, and standardises them
        assert error_line(invoke(["autotag", path, world / "tags.tsv", *TAGGER], expect=1)).startswith(f"{path}: ")


@pytest.mark.parametrize("word", ["item", "user"])
def test_duplicate_ids_in_an_embeddings_file_are_refused(world, tmp_path, word):
    emb = read_embeddings(world / "emb.h5", need_users=True)
    items, users = emb.item_ids.copy(), emb.user_ids.copy()
    if word == "item":
        items[7] = items[3]
    else:
        users[20] = users[5]
    path = tmp_path / "dup.h5"
    write_embeddings(path, Embeddings(items, emb.item_vectors, users, emb.user_vectors, source="wmf"))
    before = path.read_bytes()
    value, row = (items[3], 7) if word == "item" else (users[5], 20)
    message = (f"{path}: {word} {value!r} appears twice in /{word}s/ids (again at row {row}): "
               f"each {word} needs one vector; write the file again.")
    fails(["score", path, *cold(world)], message)
    if word == "item":
        out = tmp_path / "pred.tsv"
        fails(["autotag", path, world / "tags.tsv", *TAGGER, "--predict", out], message)
        assert_absent(out)
    assert path.read_bytes() == before

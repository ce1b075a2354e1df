"""examples/msd.sh and examples/msd_melspec.slurm against a tiny fake Million Song Dataset.

The real MSD cannot be here, so `dcue synth` output is laid out as the MSD's files are (7digital
previews in nested folders named by track id, the Taste Profile triplets, unique_tracks.txt,
sid_mismatches.txt, the Last.fm SQLite tag database) and the recipe runs on it end to end, so that
it cannot rot as the commands change. The Slurm script's shard arithmetic is checked with a stand-in
`dcue` that records its arguments.
"""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, invoke

MSD_SH = REPO / "examples" / "msd.sh"
SLURM = REPO / "examples" / "msd_melspec.slurm"
BIN = Path(sys.executable).parent
DCUE = f"{sys.executable} -m dcue_cli -q"
TINY_TRAINING = {"EPOCHS": "1", "BATCH_SIZE": "8", "TRAIN_ARGS": "--steps-per-epoch 2",
                 "DCUE_ARGS": "--listeners-per-song 4", "AUTOTAG_ARGS": "--epochs 3"}
MISMATCHED = 2  # songs listed in the fake sid_mismatches.txt
# Songs with a second track (re-releases, as unique_tracks.txt has): (song index, the extra track's
# id before or after the first one's, whether its preview decodes).
RERELEASES = ((2, "before", False), (3, "after", True), (4, "before", True))


def make_fake_msd(root: Path, synth_dir: Path) -> dict:
    """Lay `dcue synth` output out as the MSD's files; returns facts the tests check against."""
    tracks = [line.rstrip("\n").split("<SEP>") for line in (synth_dir / "unique_tracks.txt").open()]
    previews = root / "7digital"
    for path in sorted((synth_dir / "audio").rglob("*.mp3")):
        track = path.stem  # the MSD's own nesting: TRABC... lies in A/B/C/
        folder = previews / track[2] / track[3] / track[4]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)
    shutil.copy(synth_dir / "train_triplets.txt", root / "train_triplets.txt")
    with (root / "unique_tracks.txt").open("w") as out:
        out.write((synth_dir / "unique_tracks.txt").read_text())
        for index, where, decodes in RERELEASES:
            track, song, artist, title = tracks[index]
            extra = ("TRAAA" if where == "before" else "TRZZZ") + track[5:]
            folder = previews / extra[2] / extra[3] / extra[4]
            folder.mkdir(parents=True, exist_ok=True)
            original = next((synth_dir / "audio").rglob(f"{track}.mp3"))
            (folder / f"{extra}.mp3").write_bytes(original.read_bytes() if decodes else b"")
            out.write(f"{extra}<SEP>{song}<SEP>{artist}<SEP>{title} (Remastered)\n")
    # The Taste Profile's list of songs matched to the wrong track, in its own format.
    with (root / "sid_mismatches.txt").open("w") as out:
        for track, song, artist, title in tracks[:MISMATCHED]:
            out.write(f"ERROR: <{song} {track}> {artist}  -  {title}  !=  Someone Else  -  Another Song\n")
    # lastfm_tags.db: tables tids, tags, tid_tag(tid, tag, val) joined on ROWID, keyed by track id.
    track_of = {song: track for track, song, *_ in tracks}
    con = sqlite3.connect(root / "lastfm_tags.db")
    con.executescript("CREATE TABLE tids (tid TEXT); CREATE TABLE tags (tag TEXT);"
                      "CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT);")
    tid_rows, tag_rows, tagged = {}, {}, []
    for line in (synth_dir / "tags.tsv").open():
        song, tag, weight = line.rstrip("\n").split("\t")
        tagged.append(song)
        tid = track_of[song]
        if tid not in tid_rows:
            tid_rows[tid] = con.execute("INSERT INTO tids VALUES (?)", (tid,)).lastrowid
        if tag not in tag_rows:
            tag_rows[tag] = con.execute("INSERT INTO tags VALUES (?)", (tag,)).lastrowid
        con.execute("INSERT INTO tid_tag VALUES (?, ?, ?)", (tid_rows[tid], tag_rows[tag], float(weight)))
    con.commit()
    con.close()
    return {"songs": {song for _, song, *_ in tracks}, "mismatched": {song for _, song, *_ in tracks[:MISMATCHED]},
            "rereleased": {tracks[index][1] for index, *_ in RERELEASES},
            "rereleased_usable": {tracks[index][1] for index, _, decodes in RERELEASES if decodes},
            "tag_rows": len(tagged), "tagged_songs": set(tagged), "tags": set(tag_rows)}


@pytest.fixture(scope="module")
def fake_msd(tmp_path_factory):
    base = tmp_path_factory.mktemp("msd")
    invoke(["-q", "synth", base / "synth", "--songs", 40, "--users", 80, "--seconds", 4, "--seed", 3])
    facts = make_fake_msd(base / "msd", base / "synth")
    return base / "msd", facts


def script_variables(script: Path) -> list:
    """The NAME=${NAME...} settings at the top of a script."""
    return re.findall(r"^([A-Z_]+)=\$\{\1[:-]", script.read_text(), re.MULTILINE)


def run_script(script, env_vars: dict, cwd, expect=0):
    # Only what the test sets: not a variable the script reads from the caller's shell, nor
    # Slurm's (a test run inside an array job would otherwise take the array-task path).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLURM_") and k not in script_variables(MSD_SH) + script_variables(SLURM)}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "DCUE": DCUE, "PYTHON": sys.executable,
                "TORCHRUN": str(BIN / "torchrun")})
    env.update({k: str(v) for k, v in env_vars.items()})
    result = subprocess.run(["bash", str(script)], env=env, cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == expect, (
        f"{script.name} exited {result.returncode}, not {expect}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def splits_of(out: Path) -> dict:
    return dict(line.rstrip("\n").split("\t") for line in (out / "subset" / "splits.tsv").open())


def mels_ids(path: Path) -> set:
    import h5py

    with h5py.File(path, "r") as f:
        return {v.decode() if isinstance(v, bytes) else str(v) for v in f["ids"][()]}


# ----------------------------------------------------------------------------- the recipe

def test_msd_recipe_without_training(fake_msd, tmp_path):
    msd, facts = fake_msd
    out = tmp_path / "out"
    run_script(MSD_SH, {"MSD": msd, "OUT": out, "TRAIN": 0}, cwd=tmp_path)

    for name in ("previews.txt", "melspec.list", "mels.h5", "subset/plays.tsv", "subset/splits.tsv",
                 "wmf_all.h5", "wmf_train.h5", "recommendation.json", "recommendation.per_user.tsv",
                 "autotagging.json", "autotagging.per_tag.tsv"):
        assert (out / name).is_file(), f"msd.sh did not write {name}"
    # mels keyed by song id; the mismatched songs never reach the subset
    kept = set(splits_of(out))
    assert kept <= mels_ids(out / "mels.h5") <= facts["songs"]
    assert not kept & facts["mismatched"]
    assert len(kept) == len(facts["songs"]) - MISMATCHED
    # several tracks of one song: one kept (the next when the first does not decode), the rest listed
    assert facts["rereleased"] <= mels_ids(out / "mels.h5")
    listed = sorted(line.split("\t")[1].split(" (")[0]
                    for line in (out / "mels.h5.failures.tsv").read_text().splitlines())
    used_elsewhere = sorted(facts["rereleased_usable"])
    assert listed == [f"another track of song {song} is used" for song in used_elsewhere] + ["empty file"]
    assert set(splits_of(out).values()) == {"train", "valid", "test"}
    if has_matplotlib():
        assert (out / "recommendation.png").is_file()
    report = json.loads((out / "recommendation.json").read_text())
    assert [m["name"] for m in report["models"]] == ["Popularity", "WMF"]
    assert report["protocol"] == "cold-start" and report["users"] > 0
    labels = json.loads((out / "autotagging.json").read_text())["labels"]
    # every row of the Last.fm SQLite was read, and its track ids mapped to the vectors' song ids
    assert (labels["tag_rows"], labels["tagged_items"]) == (facts["tag_rows"], len(facts["tagged_songs"]))
    assert labels["items"] > 0 and set(labels["tags"]) <= facts["tags"] and labels["split_source"] == "file"

    # A rerun redoes nothing that is up to date.
    again = run_script(MSD_SH, {"MSD": msd, "OUT": out, "TRAIN": 0, "STOP_AFTER": "wmf"}, cwd=tmp_path)
    for name in ("melspec.list", "mels.h5", "subset", "wmf_all.h5", "wmf_train.h5"):
        assert f"cached: {out / name}" in again.stderr


def test_msd_recipe_stops_at_candidates_and_lists_the_previews_of_the_most_played_songs(fake_msd, tmp_path):
    msd, _facts = fake_msd
    out = tmp_path / "out"
    run_script(MSD_SH, {"MSD": msd, "OUT": out, "STOP_AFTER": "candidates", "SONGS": 10}, cwd=tmp_path)
    listed = (out / "melspec.list").read_text().split()
    song_of = {line.split("<SEP>")[0]: line.split("<SEP>")[1] for line in (msd / "unique_tracks.txt").open()}
    assert len({song_of[Path(p).stem] for p in listed}) == 11  # SONGS + 10%: a margin for previews that fail
    assert all(Path(p).is_file() and Path(p).parent.parent.parent.parent.name == "7digital" for p in listed)
    assert not (out / "mels.h5").exists()


def test_msd_recipe_names_a_missing_input(tmp_path):
    result = run_script(MSD_SH, {"MSD": tmp_path / "nowhere", "OUT": tmp_path / "out"}, cwd=tmp_path, expect=1)
    assert result.stderr.strip() == (f"msd.sh: {tmp_path}/nowhere/train_triplets.txt does not exist: "
                                     "set TRIPLETS (or MSD) to your copy")


def test_every_input_and_size_is_a_variable():
    names = script_variables(MSD_SH)
    for name in ("TRIPLETS", "UNIQUE_TRACKS", "SID_MISMATCHES", "PREVIEWS", "LASTFM_TAGS", "OUT", "SONGS",
                 "USERS", "EPOCHS", "BATCH_SIZE", "NGPUS"):
        assert name in names
    assert {"MSD", "UNIQUE_TRACKS", "OUT"} <= set(script_variables(SLURM))


@pytest.mark.slow
def test_msd_recipe_sharded_and_trained(fake_msd, tmp_path):
    """The cluster recipe: candidates, a 3-task array job, its merge, then training and both tables."""
    msd, _facts = fake_msd
    out = tmp_path / "out"
    env = {"MSD": msd, "OUT": out}
    run_script(MSD_SH, {**env, "STOP_AFTER": "candidates"}, cwd=tmp_path)
    for task in range(3):
        run_script(SLURM, {**env, "SLURM_ARRAY_TASK_ID": task, "SLURM_ARRAY_TASK_COUNT": 3}, cwd=tmp_path)
    run_script(SLURM, env, cwd=tmp_path)
    parts = [mels_ids(out / "mels.parts" / f"part-{k}-of-3.h5") for k in (1, 2, 3)]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == len(mels_ids(out / "mels.h5"))

    result = run_script(MSD_SH, {**env, **TINY_TRAINING, "NGPUS": 0}, cwd=tmp_path)
    assert f"cached: {out / 'mels.h5'}" in result.stderr  # the merged file is used as it is
    for name in ("regress.pt", "dcue.pt", "dcue.h5", "wmf_regression.h5", "wmf_all.h5", "recommendation.json",
                 "autotagging.json"):
        assert (out / name).is_file(), f"msd.sh did not write {name}"
    report = json.loads((out / "recommendation.json").read_text())
    assert [m["name"] for m in report["models"]] == ["Popularity", "dcue", "wmf-regression", "WMF"]
    assert all(m["metrics"]["auc"]["mean"] is not None for m in report["models"])
    by_artist = json.loads((out / "artists.json").read_text())
    assert [m["name"] for m in by_artist["models"]] == [
        "dcue", "Popularity", "Artist mean", "dcue+artist", "wmf-regression", "WMF"]


@pytest.mark.slow
def test_msd_recipe_trains_under_torchrun(fake_msd, tmp_path):
    """NGPUS=2 launches `torchrun -m dcue_cli train` (two gloo processes on a CPU-only machine)."""
    msd, _ = fake_msd
    out = tmp_path / "out"
    result = run_script(MSD_SH, {"MSD": msd, "OUT": out, "NGPUS": 2, **TINY_TRAINING}, cwd=tmp_path)
    assert "torchrun --standalone --nproc-per-node 2 -m dcue_cli train" in result.stderr
    report = json.loads((out / "recommendation.json").read_text())
    assert [m["name"] for m in report["models"]] == ["Popularity", "dcue", "wmf-regression", "WMF"]


# ----------------------------------------------------------------------------- Slurm shards

RECORDER = """#!/usr/bin/env bash
# a stand-in for dcue: records its arguments and creates its -o file
printf '%s\\n' "$*" >> "$RECORD"
prev=
for arg in "$@"; do
  if [ "$prev" = -o ]; then mkdir -p "$(dirname "$arg")"; : > "$arg"; fi
  prev=$arg
done
"""


@pytest.fixture
def recorder(tmp_path):
    script = tmp_path / "fake-dcue"
    script.write_text(RECORDER)
    script.chmod(0o755)
    record = tmp_path / "calls.txt"
    out = tmp_path / "out"
    out.mkdir()
    (out / "melspec.list").write_text("previews/A/B/C/TRABC.mp3\n")
    env = {"DCUE": script, "RECORD": record, "OUT": out, "UNIQUE_TRACKS": tmp_path / "unique_tracks.txt"}

    def calls():
        lines = record.read_text().splitlines() if record.exists() else []
        record.unlink(missing_ok=True)
        return lines

    return env, calls


def _option(call: str, name: str) -> str:
    words = call.split()
    return words[words.index(name) + 1]


@pytest.mark.parametrize("script", [SLURM, MSD_SH], ids=["slurm", "msd.sh"])
def test_scripts_are_valid_bash(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.parametrize("script", [SLURM, MSD_SH], ids=["slurm", "msd.sh"])
@pytest.mark.parametrize("n", [1, 3, 8])
def test_array_tasks_cover_every_shard_once(script, n, recorder, tmp_path):
    env, calls = recorder
    for name in ("train_triplets.txt", "unique_tracks.txt", "sid_mismatches.txt"):
        (tmp_path / name).touch()
    env = {**env, "MSD": tmp_path}
    outputs = []
    for task in range(n):
        run_script(script, {**env, "SLURM_ARRAY_TASK_ID": task, "SLURM_ARRAY_TASK_COUNT": n}, cwd=tmp_path)
        [call] = calls()
        assert call.startswith("melspec ")
        assert _option(call, "--shard") == f"{task + 1}/{n}"
        outputs.append(_option(call, "-o"))
    assert sorted(outputs) == sorted(f"{env['OUT']}/mels.parts/part-{k}-of-{n}.h5" for k in range(1, n + 1))


@pytest.mark.parametrize("script", [SLURM, MSD_SH], ids=["slurm", "msd.sh"])
def test_merge_joins_every_part_in_order(script, recorder, tmp_path):
    env, calls = recorder
    for task in range(12):
        run_script(SLURM, {**env, "SLURM_ARRAY_TASK_ID": task, "SLURM_ARRAY_TASK_COUNT": 12}, cwd=tmp_path)
    calls()
    for name in ("train_triplets.txt", "unique_tracks.txt", "sid_mismatches.txt"):
        (tmp_path / name).touch()
    run_script(script, {**env, "MSD": tmp_path, "STOP_AFTER": "melspec"}, cwd=tmp_path)
    [merge] = calls()
    parts = [f"{env['OUT']}/mels.parts/part-{k}-of-12.h5" for k in range(1, 13)]
    assert merge == f"melspec --merge {' '.join(parts)} -o {env['OUT']}/mels.h5"


def test_slurm_merge_names_the_missing_tasks(recorder, tmp_path):
    env, calls = recorder
    for task in (0, 2, 3):
        run_script(SLURM, {**env, "SLURM_ARRAY_TASK_ID": task, "SLURM_ARRAY_TASK_COUNT": 5}, cwd=tmp_path)
    calls()
    result = run_script(SLURM, env, cwd=tmp_path, expect=1)
    assert "the shards of array tasks 1 4 (of 0..4) are missing" in result.stderr
    assert "SHARDS=5 sbatch --array=1,4 examples/msd_melspec.slurm" in result.stderr
    assert calls() == []
    # rerunning one task alone (an array of one) keeps its place among the 5 with SHARDS
    run_script(SLURM, {**env, "SLURM_ARRAY_TASK_ID": 4, "SLURM_ARRAY_TASK_COUNT": 1, "SHARDS": 5}, cwd=tmp_path)
    assert _option(calls()[0], "--shard") == "5/5"


def test_slurm_array_numbered_from_one_is_refused(recorder, tmp_path):
    env, calls = recorder
    result = run_script(SLURM, {**env, "SLURM_ARRAY_TASK_ID": 4, "SLURM_ARRAY_TASK_COUNT": 4}, cwd=tmp_path,
                        expect=1)
    assert "array task 4 but 4 shards: number the tasks 0..3 (sbatch --array=0-3)" in result.stderr
    assert calls() == []


# ----------------------------------------------------------------------------- the demo

DEMO_SH = REPO / "examples" / "demo.sh"
TINY_TRAIN = ("--epochs 2 --steps-per-epoch 3 --batch-size 16 --negatives 4 --conv-channels 16,16 "
              "--conv-kernels 4,4 --pool-sizes 4,4 --embed-dim 16 --user-embed-dim 16 --user-hidden 16")


def test_demo_runs_the_whole_chain_and_caches_every_step(tmp_path):
    """examples/demo.sh at a tiny size: synth -> melspec -> subset -> wmf -> train x2 -> embed ->
    score -> autotag, the paper's tables at the end; a rerun redoes none of the cached steps."""
    out = tmp_path / "demo"
    env = {"OUT": out, "SONGS": 30, "USERS": 60, "CLIP_SECONDS": 3, "TRAIN_ARGS": TINY_TRAIN,
           "REGRESS_ARGS": TINY_TRAIN, "PAPER_ARGS": TINY_TRAIN, "ARTIST_ARGS": "",
           "DCUE": f"{sys.executable} -m dcue_cli"}  # not quiet: the tables are the point
    result = run_script(DEMO_SH, env, cwd=tmp_path)
    for name in ("data/truth.h5", "mels.h5", "subset/plays.tsv", "wmf.h5", "wmf_train.h5", "regress.pt",
                 "dcue.pt", "dcue.log.tsv", "wmf_regression.h5", "dcue.h5", "dcue_paper.h5",
                 "fitted_ceiling.h5", "dcue_refit.h5", "recommendation.json", "autotagging.json", "dcue_artist.pt",
                 "dcue_artist.h5", "artists.json"):
        assert (out / name).is_file(), f"demo.sh did not write {name}"
    if has_matplotlib():
        assert (out / "recommendation.png").is_file() and (out / "dcue.curves.png").is_file()
    report = json.loads((out / "recommendation.json").read_text())
    assert [m["name"] for m in report["models"]] == [
        "Popularity", "dcue (dcue.h5)", "dcue (dcue_paper.h5)", "wmf-regression", "dcue + refit users", "WMF",
        "truth (audible style)", "reachable ceiling (true style, fitted tastes)"]
    assert "paper (Lee et al. 2018, Table 1" in result.stderr and "Lee et al. 2018, Table 2" in result.stderr
    by_artist = json.loads((out / "artists.json").read_text())
    assert [m["name"] for m in by_artist["models"]] == [
        "dcue", "Popularity", "Artist mean", "dcue+artist", "wmf-regression", "WMF"]  # --against dcue.h5
    assert set(by_artist["artist_groups"]) >= {"semi-cold", "fully-cold"}
    # AUC, E_fit, E, G
    number = r"(-?[0-9.]+|-?nan|-?inf)"
    efficiency = re.search(rf"^dcue \(dcue\.h5\) +{number} +{number} +{number} +{number}$", result.stderr,
                           re.MULTILINE)
    auc = {m["name"]: m["metrics"]["auc"]["mean"] for m in report["models"]}
    gain = auc["dcue (dcue.h5)"] - auc["Popularity"]
    e_fit = gain / (auc["reachable ceiling (true style, fitted tastes)"] - auc["Popularity"])
    e = gain / (auc["truth (audible style)"] - auc["Popularity"])
    assert efficiency, result.stderr[-2000:]
    assert float(efficiency.group(2)) == pytest.approx(e_fit, abs=0.006)
    assert float(efficiency.group(3)) == pytest.approx(e, abs=0.006)
    again = run_script(DEMO_SH, env, cwd=tmp_path)
    for name in ("data", "mels.h5", "subset"):
        assert f"cached: {out / name}" in again.stderr
    assert "parameters (audio" not in again.stderr  # no training ran again

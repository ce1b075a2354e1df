"""`dcue synth`: determinism, the MSD-like layout and formats, audible structure, errors."""

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke

from dcue_cli.evaluate.metrics import auc_per_user
from dcue_cli.io.embeddings import read_embeddings
from dcue_cli.io.idmap import read_id_map
from dcue_cli.io.plays import read_plays
from dcue_cli.io.tags import read_tags
from dcue_cli.synth.render import render_song
from dcue_cli.synth.tags import TAG_VOCABULARY, sample_tags
from dcue_cli.synth.world import (
    STYLE_DIMS,
    SynthConfig,
    make_world,
    sample_plays,
    style_logits,
)

TINY = ["--songs", 30, "--users", 60, "--seconds", 3]


def _files(root: Path) -> dict:
    """Every file under root (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The same tiny dataset written with one and with two worker processes."""
    base = tmp_path_factory.mktemp("synth")
    one, two = base / "j1", base / "j2"
    result = invoke(["synth", one, *TINY, "--seed", 5, "-j", 1])
    invoke(["synth", two, *TINY, "--seed", 5, "-j", 2])
    return one, two, result


# ----------------------------------------------------------------------------- determinism

def test_same_seed_same_bytes_whatever_the_job_count(tiny):
    one, two, _ = tiny
    a, b = _files(one), _files(two)
    assert len(a) == 30 + 4
    assert a.keys() == b.keys()
    different = [name for name in a if a[name] != b[name]]
    assert different == []


def test_another_seed_gives_another_dataset(tiny, tmp_path):
    one, _, _ = tiny
    invoke(["synth", tmp_path / "s6", *TINY, "--seed", 6, "-j", 1])
    a, b = _files(one), _files(tmp_path / "s6")
    for name in ("unique_tracks.txt", "train_triplets.txt", "tags.tsv"):
        assert a[name] != b[name]
    assert not set(a) & {k for k in b if k.startswith("audio/")}  # new track ids


@pytest.mark.parametrize("fmt", ["ogg", "flac", "wav"])
def test_other_formats_are_deterministic_too(tmp_path, fmt):
    # libsndfile draws a random Ogg stream serial: synth sets it, so OGG bytes repeat too.
    args = ["--songs", 2, "--users", 3, "--seconds", 1, "--format", fmt, "-j", 1]
    invoke(["synth", tmp_path / "a", *args])
    invoke(["synth", tmp_path / "b", *args])
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b
    assert sum(name.endswith("." + fmt) for name in a) == 2


# ----------------------------------------------------------------------------- layout and formats

def test_layout_and_every_file_parses_with_the_project_readers(tiny):
    out, _, _ = tiny
    id_map = read_id_map(out / "unique_tracks.txt")
    assert len(id_map) == 30
    song_ids = {song for song, _, _ in id_map.values()}
    assert len(song_ids) == 30
    for track, (song, artist, title) in id_map.items():
        assert re.fullmatch(r"TR[A-Z0-9]{16}", track)
        assert re.fullmatch(r"SO[A-Z0-9]{16}", song)
        assert artist and title and "\t" not in artist + title
        assert (out / "audio" / track[2] / track[3] / f"{track}.mp3").is_file()
    audio = sorted(p.relative_to(out).as_posix() for p in (out / "audio").rglob("*") if p.is_file())
    assert len(audio) == 30 and all(re.fullmatch(r"audio/[A-Z]/[A-Z]/TR\w{16}\.mp3", p) for p in audio)

    plays = read_plays(out / "train_triplets.txt", header=False, show_progress=False)
    assert plays.n_users == 60
    assert all(re.fullmatch(r"[0-9a-f]{40}", u) for u in plays.user_ids)
    assert set(plays.item_ids) <= song_ids
    assert plays.counts.min() >= 1
    assert len(plays.deduplicate()) == len(plays)  # one row per (user, song)
    first = (out / "train_triplets.txt").read_text().splitlines()[0].split("\t")
    assert len(first) == 3 and first[2].isdigit()  # no header line

    items, tags, weights = read_tags(out / "tags.tsv")
    assert set(items) <= song_ids and len(items) > 10
    assert all(w == int(w) and 0 <= w <= 100 for w in weights)
    assert set(tags) <= {name for name, _ in TAG_VOCABULARY}
    assert all(len(line.split("\t")) == 3 for line in (out / "tags.tsv").read_text().splitlines())

    truth = read_embeddings(out / "truth.h5", need_users=True)
    assert truth.source == "synth-truth" and truth.similarity == "dot"
    assert set(truth.item_ids) == song_ids and set(truth.user_ids) == set(plays.user_ids)
    assert truth.item_vectors.shape == (30, len(STYLE_DIMS))
    assert truth.user_vectors.shape == (60, len(STYLE_DIMS))
    assert truth.attrs["popularity_exponent"] == SynthConfig().popularity_exponent
    assert truth.attrs["style_dims"] == ",".join(STYLE_DIMS)
    assert truth.attrs["seed"] == 5


def test_audio_decodes_at_the_asked_rate_and_length(tiny, tmp_path):
    import soundfile as sf

    out, _, _ = tiny
    path = next((out / "audio").rglob("*.mp3"))
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.frames) == (22050, 1, 3 * 22050)
    for fmt in ("ogg", "flac", "wav"):
        invoke(["synth", tmp_path / fmt, "--songs", 1, "--users", 2, "--seconds", 1.5, "--format", fmt,
                "--sample-rate", 44100, "-j", 1])
        (path,) = (tmp_path / fmt / "audio").rglob(f"*.{fmt}")
        signal, sr = sf.read(str(path), dtype="float32")
        assert sr == 44100 and signal.ndim == 1 and len(signal) == int(1.5 * 44100)
        assert 0.02 < np.sqrt(np.mean(signal ** 2)) and np.abs(signal).max() <= 1.0


def test_summary_on_stderr_and_nothing_on_stdout(tiny):
    _, _, result = tiny
    assert result.stdout == ""
    assert re.search(r"30 songs \(1\.5 audio minutes, .* MiB\), 60 users, [\d,]+ plays "
                     r"\([\d,]+ listens, density [\d.]+%\), [\d,]+ tags on \d+ songs, in [\d.]+ s", result.stderr)


# ----------------------------------------------------------------------------- structure

@pytest.fixture(scope="module")
def world_and_plays():
    world = make_world(SynthConfig(songs=400, users=500, seed=3))
    return world, sample_plays(world)


def test_plays_follow_taste_and_popularity(world_and_plays):
    world, (users, songs, _counts) = world_and_plays
    played = np.zeros((500, 400), bool)
    played[users, songs] = True
    style = style_logits(world)
    assert style[played].mean() > style[~played].mean() + 1.0
    truth_auc = np.nanmean(auc_per_user(style, played))
    popularity = np.broadcast_to(played.sum(axis=0), played.shape)
    popularity_auc = np.nanmean(auc_per_user(popularity, played))
    # The audible style predicts listeners better than popularity does, but not perfectly;
    # popularity itself is a real baseline.
    assert 0.6 < popularity_auc < truth_auc - 0.05
    assert truth_auc < 0.97


def test_popularity_activity_and_counts_are_long_tailed(world_and_plays):
    _world, (users, songs, counts) = world_and_plays
    listeners = np.sort(np.bincount(songs, minlength=400))[::-1]
    assert listeners[:40].sum() > 0.2 * listeners.sum()  # top 10% of songs: over 20% of listeners
    assert listeners[0] > 4 * np.median(listeners)
    activity = np.bincount(users, minlength=500)
    assert activity.min() >= 5 and activity.max() > 4 * np.median(activity)
    assert np.median(counts) <= 2 and counts.max() >= 20 and counts.min() == 1


def test_tags_follow_the_style(world_and_plays):
    world, _ = world_and_plays
    rows = sample_tags(world)
    tagged = {s for s, _, _ in rows}
    assert 0.5 * 400 < len(tagged) < 0.95 * 400  # sparse: some songs have no tag
    by_tag = {}
    for s, tag, _ in rows:
        by_tag.setdefault(tag, []).append(s)
    vectors = dict(TAG_VOCABULARY)
    for tag in ("rock", "pop", "alternative"):
        direction = vectors[tag] / np.linalg.norm(vectors[tag])
        fit = world.style @ direction
        assert fit[by_tag[tag]].mean() > fit.mean() + 0.5, tag
    counts = sorted((len(v) for v in by_tag.values()), reverse=True)
    assert counts[0] > 5 * counts[len(counts) // 2]  # a long tail of tag use


@pytest.mark.parametrize("dim, feature", [
    ("brightness", "centroid"), ("register", "centroid"), ("percussiveness", "highs"),
    ("tempo", "flux"), ("density", "tonal flux"), ("modulation", "tonal flux"),
])
def test_the_style_is_audible(dim, feature):
    """Raising one style dimension of a song (all else equal) raises a simple spectral feature."""
    sr = 22050
    k = STYLE_DIMS.index(dim)
    for base in np.random.default_rng(1).standard_normal((4, len(STYLE_DIMS))) * 0.5:
        values = []
        for z in (-1.5, 1.5):
            style = base.copy()
            style[k] = z
            signal = render_song(style, sr, 3.0, np.random.default_rng(7))
            values.append(_feature(signal, sr, feature))
        assert values[1] > values[0] * 1.1, (dim, base, values)


def _feature(signal, sr, name):
    frames = np.lib.stride_tricks.sliding_window_view(signal, 1024)[::512] * np.hanning(1024)
    mag = np.abs(np.fft.rfft(frames, axis=1))
    freqs = np.fft.rfftfreq(1024, 1 / sr)
    if name == "centroid":  # power-weighted, so the tonal part outweighs the drums' noise
        return float((mag ** 2 * freqs).sum() / (mag ** 2).sum())
    if name == "highs":
        return float(mag[:, freqs > 4000].sum() / mag.sum())
    if name == "tonal flux":  # onsets and pitch motion below 2 kHz
        mag = 10 * mag[:, (freqs > 80) & (freqs < 2000)]
    logmag = np.log1p(10 * mag)
    return float(np.maximum(np.diff(logmag, axis=0), 0).sum(axis=1).mean())  # spectral flux


# ----------------------------------------------------------------------------- errors and --overwrite

def test_existing_dataset_needs_overwrite(tmp_path):
    out = tmp_path / "d"
    invoke(["synth", out, "--songs", 5, "--users", 4, "--seconds", 1, "-j", 1])
    result = invoke(["synth", out, "--songs", 5, "--users", 4, "--seconds", 1, "-j", 1], expect=1)
    assert result.stderr == (
        f"Error: {out} already holds a synthetic dataset (unique_tracks.txt, train_triplets.txt, tags.tsv, "
        "truth.h5, audio/): give --overwrite to replace it, or choose another folder.\n")
    # --overwrite replaces it, and drops the audio files of the earlier run.
    invoke(["synth", out, "--songs", 3, "--users", 4, "--seconds", 1, "--format", "wav", "--seed", 1,
            "--overwrite", "-j", 1])
    audio = [p.name for p in (out / "audio").rglob("*") if p.is_file()]
    assert len(audio) == 3 and all(name.endswith(".wav") for name in audio)
    assert len(read_id_map(out / "unique_tracks.txt")) == 3
    assert not [p for p in (out / "audio").rglob("*") if p.is_dir() and not any(p.iterdir())]


def test_folder_with_other_files_is_fine(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    invoke(["synth", tmp_path, "--songs", 2, "--users", 2, "--seconds", 1, "-j", 1])
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_out_dir_that_is_a_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    result = invoke(["synth", target, "--songs", 2, "--users", 2], expect=2)
    assert f"Directory '{target}' is a file." in result.stderr


def test_bad_format_and_rate_are_usage_errors(tmp_path):
    result = invoke(["synth", tmp_path / "x", "--format", "aac"], expect=2)
    assert "Error: Invalid value for '--format': 'aac' is not one of 'mp3', 'ogg', 'flac', 'wav'." in result.stderr
    result = invoke(["synth", tmp_path / "x", "--sample-rate", "16000"], expect=2)
    assert "Error: Invalid value for '--sample-rate': '16000' is not one of '22050', '44100'." in result.stderr
    assert not (tmp_path / "x").exists()


def test_help_has_example():
    out = invoke(["synth", "--help"]).stdout
    assert "Example:" in out and "--songs 10000 --users 20000" in out


# ----------------------------------------------------------------------------- REL-SIGNALS: signals and resume

STOPPED = ["--songs", 40, "--users", 30, "--seconds", 3]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_ref") / "d"
    invoke(["synth", out, *STOPPED, "--seed", 3, "-j", 2])
    return out


def _stop_synth(out, jobs, signals):
    """`dcue synth` in a subprocess, sent `signals` once 4 audio files exist: (exit code, stderr)."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO, popen_with_sigint

    command = [sys.executable, "-m", "dcue_cli", "synth", str(out), *map(str, STOPPED), "--seed", "3", "-j", str(jobs)]
    proc = popen_with_sigint(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("audio/*/*/TR*.mp3"))) < 4:
        time.sleep(0.05)
    for name in signals:
        proc.send_signal(getattr(signal, name))
        time.sleep(0.02)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


# Two signals: the second may land after the run has stopped, as the process shuts down; it is
# ignored there (interrupts.ignore_late_signals), so the exit is 130, not the signal's -2.
@pytest.mark.parametrize("jobs,signals", [(1, ["SIGINT"]), (2, ["SIGTERM"]), (1, ["SIGINT", "SIGINT"]),
                                          (2, ["SIGINT", "SIGINT"])])
def test_a_stopped_synth_keeps_whole_files_and_the_same_command_finishes_it(uninterrupted, tmp_path, jobs,
                                                                             signals):
    out = tmp_path / "d"
    code, stderr = _stop_synth(out, jobs, signals)
    assert code == 130, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert "rerun the same command to finish the dataset" in stderr
    reference = _files(uninterrupted)
    written = {name: data for name, data in _files(out).items() if name.startswith("audio/")}
    assert written and all(data == reference[name] for name, data in written.items())  # none half-written
    assert not [p for p in out.rglob(".*.tmp")] and not (out / "train_triplets.txt").exists()
    result = invoke(["synth", out, *STOPPED, "--seed", 3, "-j", jobs])
    # a second signal may land between a song's file and its line in synth.partial: that whole
    # file is then redone (same bytes), so at most one song per worker is kept unrecorded
    kept = re.search(r"resuming: (\d+) of 40 songs kept", result.stderr)
    assert len(written) == 0 or (kept and len(written) - int(jobs) <= int(kept.group(1)) <= len(written))
    assert _files(out) == reference  # byte for byte an uninterrupted run, synth.partial gone


def test_an_unfinished_dataset_of_other_settings_is_named(tmp_path, monkeypatch):
    from conftest import error_line

    from dcue_cli.synth import generate

    out = tmp_path / "d"
    real, calls = generate.song_bytes, []

    def stop_after_two(task):  # what a Ctrl-C during the third song does
        calls.append(task)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real(task)

    args = ["--songs", 5, "--users", 4, "--seconds", 1, "--format", "wav"]
    monkeypatch.setattr(generate, "song_bytes", stop_after_two)
    result = invoke(["synth", out, *args, "--seed", 1, "-j", 1], expect=130)
    assert "the 2 songs written are kept" in result.stderr
    monkeypatch.setattr(generate, "song_bytes", real)

    result = invoke(["synth", out, *args, "--seed", 2, "-j", 1], expect=1)
    assert error_line(result) == (
        f"{out} holds an unfinished synthetic dataset made with other settings (songs 5, users 4, seconds 1.0, "
        "format wav, sample-rate 22050, seed 1): rerun that command to finish it, or give --overwrite to "
        "replace it.")
    invoke(["synth", out, *args, "--seed", 1, "-j", 1])  # the same settings finish it
    assert not (out / "synth.partial").exists() and len(list(out.glob("audio/*/*/TR*.wav"))) == 5
    invoke(["synth", out, *args, "--seed", 2, "-j", 1, "--overwrite"])
    assert len(read_id_map(out / "unique_tracks.txt")) == 5 and not (out / "synth.partial").exists()

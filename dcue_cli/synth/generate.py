"""`run_synth`: the whole synthetic dataset under one folder, written through `dcue_cli.io`.

audio/<X>/<Y>/<track_id>.<ext> (rendered in worker processes; the bytes do not depend on
their number), unique_tracks.txt, train_triplets.txt, tags.tsv and truth.h5.
"""

import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.interrupts import StopSignals
from dcue_cli.synth import FORMATS, SAMPLE_RATES
from dcue_cli.synth.encode import encode_audio
from dcue_cli.synth.progress import (
    Progress,
    describe_settings,
    read_progress,
    settings_of,
)
from dcue_cli.synth.render import render_song
from dcue_cli.synth.tags import sample_tags
from dcue_cli.synth.world import (
    STREAM_AUDIO,
    STYLE_DIMS,
    SynthConfig,
    World,
    make_world,
    random_stream,
    sample_plays,
)

OUTPUT_FILES = ("unique_tracks.txt", "train_triplets.txt", "tags.tsv", "truth.h5")


@dataclass
class SynthSummary:
    songs: int = 0
    users: int = 0
    plays: int = 0
    play_count_total: int = 0
    tags: int = 0
    tagged_songs: int = 0
    audio_seconds: float = 0.0
    audio_bytes: int = 0
    wall_seconds: float = 0.0

    @property
    def density(self) -> float:
        return self.plays / max(1, self.songs * self.users)


def audio_path(out_dir, track_id: str, audio_format: str) -> Path:
    return Path(out_dir) / "audio" / track_id[2] / track_id[3] / f"{track_id}.{audio_format}"


_STOP = None  # in a worker process: the main process's stop request (a multiprocessing Event)


def song_bytes(task) -> bytes:
    """One song's file bytes: a function of (settings, index) alone."""
    index, style_row, path, sample_rate, seconds, audio_format, seed = task
    signal = render_song(style_row, sample_rate, seconds, random_stream(seed, STREAM_AUDIO, index))
    return encode_audio(signal, sample_rate, audio_format, serial=zlib.crc32(Path(path).stem.encode()))


def _worker_init(stop_event) -> None:
    """Ctrl-C reaches the whole process group: the main process alone decides when to stop."""
    import signal

    global _STOP
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STOP = stop_event


def render_task(task) -> tuple:
    """Worker: render, encode and atomically write one song: (index, bytes written), or
    (index, None) when a stop was requested before it began."""
    from dcue_cli.io.atomic import write_bytes_atomically

    if _STOP is not None and _STOP.is_set():
        return task[0], None
    data = song_bytes(task)
    write_bytes_atomically(task[2], data)
    return task[0], len(data)


def existing_outputs(out_dir) -> list:
    """What a previous synth run left in `out_dir` (names), empty when nothing."""
    out = Path(out_dir)
    found = [name for name in OUTPUT_FILES if (out / name).exists()]
    audio = out / "audio"
    if audio.is_dir() and any(audio.iterdir()):
        found.append("audio/")
    return found


def _remove_temporary_audio(out_dir) -> None:
    """Temporary files of audio writes cut short by a forced stop (never a complete file)."""
    for path in sorted((Path(out_dir) / "audio").glob("*/*/.TR*.tmp")):
        path.unlink(missing_ok=True)


def _prune_stale_audio(out_dir, keep: set) -> int:
    """After --overwrite: remove track files of an earlier run that this run did not write."""
    audio = Path(out_dir) / "audio"
    removed = 0
    for path in sorted(audio.glob("*/*/TR*.*")):
        if path.suffix.lstrip(".") in FORMATS and path not in keep:
            path.unlink()
            removed += 1
    for folder in sorted(audio.glob("*/*"), reverse=True) + sorted(audio.glob("*"), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def check_request(out_dir, config: SynthConfig, overwrite: bool) -> dict | None:
    """Refuse an unknown format or rate, a file as the folder, or a previous dataset without
    `overwrite`; the songs done ({index: bytes}) of an unfinished run with these settings, else None."""
    if config.audio_format not in FORMATS:
        raise DcueError(f"audio format {config.audio_format!r} is not one of {', '.join(FORMATS)}.")
    if config.sample_rate not in SAMPLE_RATES:
        raise DcueError(f"sample rate {config.sample_rate} is not one of {', '.join(map(str, SAMPLE_RATES))}.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DcueError(f"{out_dir} is a file, not a folder: give a folder for the dataset.")
    settings, done = read_progress(out)
    if settings == settings_of(config):
        return done  # an interrupted run of the same command: finish it
    if settings is not None and not overwrite:
        raise DcueError(f"{out_dir} holds an unfinished synthetic dataset made with other settings "
                        f"({describe_settings(settings)}): rerun that command to finish it, or give "
                        "--overwrite to replace it.")
    found = existing_outputs(out)
    if found and not overwrite:
        raise DcueError(f"{out_dir} already holds a synthetic dataset ({', '.join(found)}): "
                        "give --overwrite to replace it, or choose another folder.")
    return None


def render_audio(out: Path, world: World, jobs: int, progress: Progress, stop: StopSignals) -> list:
    """Render, encode and write every song's audio file not done yet; its paths.

    A stop request (Ctrl-C, SIGTERM) lets the songs in flight finish, then KeyboardInterrupt."""
    config = world.config
    paths = [audio_path(out, tid, config.audio_format) for tid in world.track_ids]
    for folder in sorted({p.parent for p in paths}):
        folder.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(config.songs) if not _is_done(progress, i, paths[i])]
    tasks = [(i, world.style[i], str(paths[i]), config.sample_rate, config.seconds, config.audio_format,
              config.seed) for i in todo]
    bar = log.progress(total=config.songs, initial=config.songs - len(tasks), desc="rendering audio",
                       unit=" songs")
    try:
        if jobs <= 1 or len(tasks) <= 1:
            _render_here(tasks, progress, stop, bar)
        else:
            _render_in_workers(tasks, jobs, progress, stop, bar)
    finally:
        bar.close()
    stop.check()
    return paths


def _is_done(progress: Progress, index: int, path: Path) -> bool:
    size = progress.done.get(index)
    return size is not None and path.is_file() and path.stat().st_size == size


def _render_here(tasks, progress, stop, bar) -> None:
    from dcue_cli.io.atomic import write_bytes_atomically

    for task in tasks:
        stop.check()
        with stop.deferred():  # the encoder's callbacks swallow exceptions: a 2nd signal waits for it
            data = song_bytes(task)
        write_bytes_atomically(task[2], data)
        progress.add(task[0], len(data))
        bar.update(1)


def _render_in_workers(tasks, jobs, progress, stop, bar) -> None:
    import multiprocessing

    # spawn: no fork of a process that may hold threads (tqdm's monitor, BLAS pools).
    ctx = multiprocessing.get_context("spawn")
    stop_event = ctx.Event()
    stop.on_request = stop_event.set  # the workers start no song after a stop request
    chunk = max(1, min(8, len(tasks) // (jobs * 16)))
    with ctx.Pool(min(jobs, len(tasks)), initializer=_worker_init, initargs=(stop_event,)) as pool:
        for index, size in pool.imap_unordered(render_task, tasks, chunksize=chunk):
            if size is not None:
                progress.add(index, size)
                bar.update(1)


def write_tables(out: Path, world: World, plays: tuple, tags: list) -> None:
    """unique_tracks.txt, train_triplets.txt and tags.tsv, through the io/ writers."""
    from dcue_cli.io.idmap import write_id_map
    from dcue_cli.io.plays import Plays, write_plays
    from dcue_cli.io.tags import write_tags

    users, songs, counts = plays
    write_id_map(out / "unique_tracks.txt", zip(world.track_ids, world.song_ids, world.artists, world.titles))
    write_plays(out / "train_triplets.txt", Plays(
        user_ids=np.array(world.user_ids, dtype=object), item_ids=np.array(world.song_ids, dtype=object),
        users=users.astype(np.int32), items=songs.astype(np.int32), counts=counts.astype(np.int32)))
    write_tags(out / "tags.tsv", ((world.song_ids[s], tag, w) for s, tag, w in tags))


def write_truth(path: Path, world: World) -> None:
    """truth.h5: the drawn latents in the embeddings contract (diagnostics only)."""
    from dcue_cli.io.embeddings import Embeddings, write_embeddings

    config = world.config
    write_embeddings(path, Embeddings(
        item_ids=np.array(world.song_ids, dtype=object), item_vectors=world.style.astype(np.float32),
        user_ids=np.array(world.user_ids, dtype=object), user_vectors=world.taste.astype(np.float32),
        source="synth-truth", similarity="dot",
        attrs={
            "name": "truth (audible style)",
            "description": "dcue synth's ground-truth latents, for diagnostics only: item vectors are the "
                           "songs' audible style, user vectors the users' tastes; their dot product is the "
                           "style part of the play logit, so scoring it gives the content ceiling.",
            "style_dims": ",".join(STYLE_DIMS),
            "seed": config.seed, "songs": config.songs, "users": config.users,
            "seconds": float(config.seconds), "audio_format": config.audio_format,
            "sample_rate": config.sample_rate, "style_weight": config.style_weight,
            "hidden_dims": config.hidden_dims, "hidden_weight": config.hidden_weight,
            "popularity_exponent": config.popularity_exponent, "artist_share": config.artist_share,
            "activity_median": config.activity_median, "activity_sigma": config.activity_sigma,
            "tags_per_song": config.tags_per_song,
            "play_logit": "taste.style + hidden_taste.hidden - popularity_exponent*log(popularity_rank)",
        }))


def run_synth(out_dir, config: SynthConfig, *, jobs: int = 1, overwrite: bool = False) -> SynthSummary:
    """Write the whole dataset under `out_dir`; refuse to replace a previous one unless `overwrite`.

    Ctrl-C or SIGTERM: the songs written are kept (synth.partial lists them), then
    KeyboardInterrupt; the same call again finishes the dataset, with the same bytes."""
    from dcue_cli.io.atomic import make_folder

    started = time.perf_counter()
    done = check_request(out_dir, config, overwrite)
    out = Path(out_dir)
    make_folder(out)
    progress = Progress(out, config, done or {})
    with StopSignals() as stop:
        progress.start(fresh=done is None)
        try:
            _remove_temporary_audio(out)
            if done:
                log.info("resuming: %d of %d songs kept from an interrupted run (%s)", len(progress.done),
                         config.songs, progress.path)
            world = make_world(config)
            users, songs, counts = sample_plays(world)
            tags = sample_tags(world)
            paths = render_audio(out, world, jobs, progress, stop)
            write_tables(out, world, (users, songs, counts), tags)
            write_truth(out / "truth.h5", world)
        except KeyboardInterrupt:
            progress.close()
            log.warning("interrupted: the %d songs written are kept in %s; rerun the same command to finish "
                        "the dataset.", len(progress.done), out_dir)
            raise
        progress.finish()
    if overwrite:
        removed = _prune_stale_audio(out, set(paths))
        if removed:
            log.info("removed %d audio file%s of the earlier dataset", removed, "" if removed == 1 else "s")

    return SynthSummary(
        songs=config.songs, users=config.users, plays=len(users), play_count_total=int(counts.sum()),
        tags=len(tags), tagged_songs=len({s for s, _, _ in tags}),
        audio_seconds=config.songs * float(config.seconds),
        audio_bytes=sum(path.stat().st_size for path in paths),
        wall_seconds=time.perf_counter() - started,
    )


def describe(summary: SynthSummary, out_dir) -> str:
    """The one-line report `dcue synth` prints."""
    return (f"wrote {out_dir}: {summary.songs:,} songs ({summary.audio_seconds / 60:,.1f} audio minutes, "
            f"{summary.audio_bytes / 2**20:,.1f} MiB), {summary.users:,} users, {summary.plays:,} plays "
            f"({summary.play_count_total:,} listens, density {100 * summary.density:.2f}%), "
            f"{summary.tags:,} tags on {summary.tagged_songs:,} songs, in {summary.wall_seconds:.1f} s")

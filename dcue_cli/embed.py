"""A trained model and a mels file -> item and user vectors (the embeddings contract).

Item vectors: for every item of the mels file, seen in training or not (the cold-start
use), the mean of the audio network's outputs over its non-overlapping crops (a clip
shorter than a crop is tiled into one), as the authors' encoder does.

User vectors:
- DCUE (hinge/softmax objectives): the user network's output for every user of the model;
  similarity cosine, the relevance the model was trained with.
- WMF+Regression (`--objective regress`): the WMF user factors the targets came from, stored
  in the checkpoint; similarity dot. The audio network predicts a song's WMF item factors,
  and WMF scores a (user, song) pair by the dot product of their factors, so the predicted
  factors are scored the same way (van den Oord et al. 2013: "reconstructing the user-item
  matrix"). Cosine would discard the predicted norm, which carries how strongly a song
  draws plays.

A model trained with `--artists` adds each item's artist vector to its audio's (the item
tower's artist embedding): `artists` must then be the artist map (unique_tracks.txt or
item<TAB>artist); an item whose artist had no training songs, or has none in the map, gets the
unknown artist's vector, which artist dropout trained to go with the audio alone.
"""

from dataclasses import dataclass

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError, OptionError

FEATURE_KEYS_THAT_MATTER = ("sr", "n_fft", "hop_length", "n_mels")


def check_features(model_features: dict, mels_attrs: dict, mels_name: str, allow_mismatch: bool) -> None:
    """The mels must be computed as the training mels were, or the vectors mean nothing."""
    problems = []
    for key in FEATURE_KEYS_THAT_MATTER:
        a, b = model_features.get(key), mels_attrs.get(key)
        if a is not None and b is not None and _differ(a, b):
            problems.append(f"{key}={b} (the model was trained on {key}={a})")
    if not problems:
        return
    message = f"{mels_name} has {', '.join(problems)}"
    if allow_mismatch:
        log.warning("%s: embedding anyway (--allow-feature-mismatch)", message)
        return
    raise DcueError(f"{message}: compute the mels with the same settings as the training mels, "
                    "or pass --allow-feature-mismatch.")


def _differ(a, b) -> bool:
    try:
        return float(a) != float(b)
    except (TypeError, ValueError):
        return str(a) != str(b)


@dataclass
class EmbedReport:
    output: str
    n_items: int
    n_users: int
    dims: int
    source: str
    similarity: str


def run_embed(model_path, mels_path, output, **options) -> EmbedReport:
    """Embed and write OUTPUT (atomically); what `dcue embed` calls. Options as `embed`'s."""
    from dcue_cli.io.atomic import (
        check_output_path,
        refuse_inputs_as_outputs,
        refuse_replacing_other_kind,
    )
    from dcue_cli.io.embeddings import is_embeddings_file, write_embeddings

    check_output_path(output, "embeddings")
    refuse_inputs_as_outputs({"-o": output}, {"MODEL": model_path, "MELS": mels_path,
                                              "--artists": options.get("artists")})
    refuse_replacing_other_kind(output, "an embeddings file", is_embeddings_file)
    from dcue_cli.interrupts import StopSignals

    # Ctrl-C or SIGTERM: KeyboardInterrupt at the next batch of crops, before anything is written
    # (the output is written whole at the end; a second signal stops at once, even in the write).
    with StopSignals() as stop:
        emb = embed(model_path, mels_path, stop=stop, **options)
        stop.check()
        write_embeddings(output, emb)
    n_users = 0 if emb.user_ids is None else len(emb.user_ids)
    return EmbedReport(str(output), len(emb.item_ids), n_users, emb.item_vectors.shape[1], emb.source,
                       emb.similarity)


def embed(model_path, mels_path, *, device: str = "auto", batch_crops: int = 1024, amp: bool = True,
          allow_feature_mismatch: bool = False, chunk_bytes: int = 256 << 20, stop=None, artists=None):
    """Compute the embeddings; returns a `dcue_cli.io.embeddings.Embeddings` (not yet written).
    `stop`: a StopSignals, checked between batches of crops."""
    from dcue_cli.crops import Normaliser
    from dcue_cli.io.checkpoints import load_checkpoint, model_from_checkpoint
    from dcue_cli.io.embeddings import Embeddings
    from dcue_cli.io.mels import MelsFile
    from dcue_cli.model import all_user_vectors
    from dcue_cli.runtime import autocast_factory, configure_backends, torch_device

    dev = torch_device(device)
    configure_backends(dev)
    ckpt = load_checkpoint(model_path)
    model = model_from_checkpoint(ckpt, model_path).to(dev).eval()
    cfg = model.config
    artist_map = _artist_map(model, artists, model_path)  # before the work: a missing map is a misuse
    autocast = autocast_factory(dev, amp)
    norm = ckpt["normalisation"]

    with MelsFile(mels_path) as reader:
        if reader.n_mels != cfg.n_mels:
            raise DcueError(f"{mels_path} has {reader.n_mels} mel bins but the model {model_path} takes "
                            f"{cfg.n_mels}: compute the mels with --n-mels {cfg.n_mels}.")
        check_features(ckpt.get("feature_config", {}), reader.attrs, str(mels_path), allow_feature_mismatch)
        lengths = reader.lengths
        have = np.flatnonzero(lengths > 0)
        if len(have) < len(lengths):
            log.warning("%d items of %s have no frames: they get no vector", len(lengths) - len(have), mels_path)
        if len(have) == 0:
            raise DcueError(f"{mels_path} has no item with frames: nothing to embed.")
        normaliser = Normaliser(norm["mean"], norm["std"], device=dev)
        vectors = _item_vectors_in_chunks(model, reader, have, normaliser, dev, chunk_bytes=chunk_bytes,
                                          batch_crops=batch_crops, autocast=autocast, stop=stop)
        item_ids = reader.ids[have]
    vectors *= float(ckpt.get("target_scale", 1.0))  # WMF+Regression: back to the factors' units
    if artist_map is not None:
        vectors = _add_artists(model, ckpt, vectors, item_ids, artist_map, dev)

    user_ids = np.asarray(ckpt["user_ids"], dtype=object)
    if "user_vectors" in ckpt:  # WMF+Regression: the WMF users the targets came with
        users = np.asarray(ckpt["user_vectors"].float().numpy(), np.float32)
    elif model.user is not None:
        users = all_user_vectors(model, len(user_ids), dev).cpu().numpy()
    else:
        users, user_ids = None, None
    best = ckpt.get("best", {})
    attrs = {
        "model": str(model_path),
        "mels": str(mels_path),
        "objective": ckpt.get("objective", ""),
        "epochs_trained": int(ckpt.get("position", {}).get("epoch", 0)),
        "best_epoch": int(best.get("epoch", -1)) + 1,
        "valid_auc": best.get("auc") if best.get("auc") is not None else "",
        "crop_frames": int(cfg.crop_frames),
    }
    if artist_map is not None:
        attrs.update(name="dcue+artist", artists=str(artists), artist_vocabulary=len(ckpt["artist_vocab"]))
    return Embeddings(item_ids, vectors, user_ids, users, source=ckpt.get("source", "dcue"),
                      similarity=ckpt.get("similarity", "cosine"), attrs=attrs)


def _artist_map(model, artists, model_path):
    """The artist map an artist model needs (None for an audio-only model, which ignores one)."""
    if model.artist is None:
        if artists:
            log.warning("--artists ignored: %s has no artist embedding (it was trained without --artists)",
                        model_path)
        return None
    if not artists:
        raise OptionError(f"{model_path} was trained with --artists: give embed --artists MAP, the artist map it "
                          "was trained with (e.g. unique_tracks.txt).")
    from dcue_cli.io.artists import read_artist_map

    return read_artist_map(artists)


def _add_artists(model, ckpt, vectors, item_ids, artist_map, dev):
    """Every item's vector plus its artist's (the unknown artist's where it has none in the vocabulary)."""
    import torch

    from dcue_cli.io.artists import artist_indices

    index, counts = artist_indices(item_ids, artist_map, ckpt["artist_vocab"])
    log.info("artists: %s items by an artist with training songs, %s by another artist and %s with none in %s "
             "(both placed by their audio and the unknown artist)", f"{counts['known']:,}",
             f"{counts['unseen']:,}", f"{counts['none']:,}", artist_map.path)
    if counts["known"] == 0:
        log.warning("no item of the mels is by an artist of the model's vocabulary: is %s the map it was "
                    "trained with?", artist_map.path)
    with torch.no_grad():
        added = model.add_artists(torch.as_tensor(vectors, device=dev), torch.as_tensor(index, device=dev))
    return added.float().cpu().numpy()


def _item_vectors_in_chunks(model, reader, have, normaliser, dev, *, chunk_bytes, batch_crops, autocast,
                            stop=None):
    """Item vectors of mel rows `have`, cached on the device a run of items at a time."""
    from dcue_cli.crops import MelCache, item_vectors

    cfg, lengths = model.config, reader.lengths
    frame_bytes = reader.n_mels * reader.mel.dtype.itemsize
    budget = max(1, chunk_bytes // frame_bytes)
    vectors = np.zeros((len(have), cfg.embed_dim), np.float32)
    bar = log.progress(total=len(have), desc="embedding items", unit=" items", unit_scale=True)
    cum = np.cumsum(lengths[have])
    a = 0
    while a < len(have):
        # a run of items within the frame budget (at least one), cached on the device
        before = cum[a - 1] if a else 0
        b = max(a + 1, int(np.searchsorted(cum, before + budget, side="right")))
        chunk = have[a:b]
        if stop is not None:
            stop.check()
        cache = MelCache.load(reader, chunk, normaliser, cfg.crop_frames, dev, desc=None)
        vecs = item_vectors(model.audio, cache, np.arange(len(chunk)), lengths[chunk],
                            batch_crops=batch_crops, autocast=autocast, stop=stop)
        vectors[a:b] = vecs.cpu().numpy()
        bar.update(len(chunk))
        a = b
    bar.close()
    return vectors

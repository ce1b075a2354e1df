"""`dcue embed`: item vectors from audio (cold songs included) and user vectors from a model."""

import click

from dcue_cli import log
from dcue_cli.options import device_option, output_option


@click.command("embed")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("mels", type=click.Path(dir_okay=False))
@output_option("Embeddings HDF5 (the contract `score` and `autotag` read), written atomically.")
@device_option()
@click.option("--batch-crops", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Crops per forward pass (more is faster on a GPU, within its memory).")
@click.option("--no-amp", is_flag=True, help="Compute in float32 on CUDA instead of bfloat16 autocast.")
@click.option("--artists", type=click.Path(dir_okay=False),
              help="The artist map a model trained with --artists needs (unique_tracks.txt or item<TAB>artist): "
                   "each item's artist vector is added to its audio's; an artist without training songs, or "
                   "none, is the unknown artist.")
@click.option("--allow-feature-mismatch", is_flag=True,
              help="Embed even if MELS was computed with other settings (sr, n_fft, hop) than the training mels.")
@click.pass_context
def cli(ctx, model, mels, output, device, batch_crops, no_amp, artists, allow_feature_mismatch):
    """Embed every item of MELS and every user of MODEL (a checkpoint from `dcue train`).

    An item's vector is the mean of the audio network's outputs over its non-overlapping
    3-second crops (a shorter clip is tiled), for every item of MELS whether the model saw
    it in training or not: this is how cold songs get vectors. User vectors come from the
    user network (similarity cosine, source dcue); for a WMF+Regression model (trained with
    --objective regress) they are the WMF user factors it was trained against (similarity
    dot, source wmf-regression), as WMF scores. The output is read by `score` and `autotag`
    like the output of `wmf`. A model trained with --artists adds each song's artist vector
    (the unknown artist's for an artist without training songs) and needs the same --artists.
    Ctrl-C or SIGTERM stops after the batch of crops in flight, writing nothing (exit 130).

    \b
    Example:
      dcue embed model.pt mels.h5 -o dcue.h5
      dcue embed artist.pt mels.h5 -o artist.h5 --artists unique_tracks.txt
      dcue score dcue.h5 --plays sub/plays.tsv --splits sub/splits.tsv
    """
    from dcue_cli.embed import run_embed

    try:
        r = run_embed(model, mels, output, device=device, batch_crops=batch_crops, amp=not no_amp,
                      allow_feature_mismatch=allow_feature_mismatch, artists=artists)
    except KeyboardInterrupt:
        log.warning("interrupted: nothing was written (%s is as it was).", output)
        ctx.exit(130)  # 128 + SIGINT, as every command
    log.info("wrote %s: %s items and %s users, %d dimensions (source %s, similarity %s)", r.output,
             f"{r.n_items:,}", f"{r.n_users:,}", r.dims, r.source, r.similarity)

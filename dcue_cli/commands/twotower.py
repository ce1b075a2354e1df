"""`dcue twotower`: the paper's index ablation, DCUE with song indices for audio (dcue_cli/twotower.py)."""

import click

from dcue_cli import log
from dcue_cli.options import (
    check_fit_on,
    device_option,
    finite,
    fit_on_options,
    output_option,
    plays_input_options,
    positive_list,
    seed_option,
)


@click.command("twotower")
@click.argument("plays", type=click.Path(dir_okay=False, allow_dash=True))
@fit_on_options("the paper's row, scored like `wmf --fit-on all`: it has seen the test songs' plays")
@output_option("Embeddings HDF5 to write (users and items; similarity cosine).")
@click.option("--objective", type=click.Choice(["hinge", "softmax"]), default="hinge", show_default=True,
              help="hinge: the paper's max-margin loss; softmax: sampled softmax at --temperature.")
@click.option("--margin", type=finite(), default=0.2, show_default=True, help="Hinge margin Δ.")
@click.option("--temperature", type=finite(min=0, min_open=True), default=0.1, show_default=True,
              help="Softmax temperature.")
@click.option("--negatives", type=click.IntRange(min=1), default=20, show_default=True,
              help="The batch's shared pool of negative songs (the batch's other songs are negatives too).")
@click.option("--batch-size", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Positive pairs per step: 64 songs of 32 listeners, as `dcue train`.")
@click.option("--lr", type=finite(min=0, min_open=True), default=0.002, show_default=True,
              help="AdamW's peak learning rate (warm-up, then a cosine decay to 0).")
@click.option("--weight-decay", type=finite(min=0), default=1e-4, show_default=True, help="AdamW's weight decay.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=100, show_default=True,
              help="Steps of linear warm-up.")
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True, help="Epochs to train.")
@click.option("--steps-per-epoch", type=click.IntRange(min=0), default=100, show_default=True,
              help="Steps per epoch; 0: one pass over the plays.")
@click.option("--embed-dim", type=click.IntRange(min=1), default=256, show_default=True,
              help="Dimensions of the user and item vectors.")
@click.option("--user-embed-dim", type=click.IntRange(min=1), default=300, show_default=True,
              help="Width of both lookups (users and songs).")
@click.option("--hidden", default="300", show_default=True,
              help="Hidden layer widths of both towers' MLPs (comma-separated).")
@seed_option()
@device_option()
@plays_input_options
@click.pass_context
def cli(ctx, plays, splits, fit_on, output, objective, margin, temperature, negatives, batch_size, lr,
        weight_decay, warmup_steps, epochs, steps_per_epoch, embed_dim, user_embed_dim, hidden, seed, device,
        columns, header, skip_bad):
    """Train DCUE with the item side built like the user side, over song indices.

    The paper's ablation (section 5.1, its 0.7832 against DCUE's 0.7914): both towers are a
    lookup and the user side's MLP, trained with `dcue train`'s defaults (hinge loss, cosine
    relevance, song-grouped batches with a shared pool and in-batch negatives, AdamW with a
    cosine schedule). It knows a song by its plays, as WMF does, so it cannot score a new song:
    fitted on every song (--fit-on all) its row beside DCUE says how much hearing the audio
    costs against knowing the song's index; without --splits it fits every item of PLAYS, for
    the warm protocol (`score --train-plays/--test-plays`). Writes the embeddings contract
    (similarity cosine, source dcue-index). Seconds on a CPU; Ctrl-C or SIGTERM stops after the
    step in flight, writing nothing (exit 130).

    \b
    Example:
      dcue twotower sub/plays.tsv --splits sub/splits.tsv --fit-on all -o index.h5
      dcue score dcue.h5 index.h5 wmf.h5 --popularity --plays sub/plays.tsv --splits sub/splits.tsv
    """
    from dcue_cli.io.rows import parse_columns, parse_header_option
    from dcue_cli.model import ModelConfig
    from dcue_cli.train.config import TrainConfig
    from dcue_cli.twotower import run_twotower

    check_fit_on(splits, fit_on, "the paper's row: every song, like `wmf --fit-on all`")
    cfg = TrainConfig(objective=objective, margin=margin, temperature=temperature, negatives=negatives,
                      batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
                      epochs=epochs, steps_per_epoch=steps_per_epoch, seed=seed)
    model_cfg = ModelConfig(embed_dim=embed_dim, user_embed_dim=user_embed_dim,
                            user_hidden=positive_list(hidden, "--hidden", int, "300"))
    try:
        r = run_twotower(plays, output, cfg, model_cfg, splits=splits, fit_on=fit_on, device=device,
                         columns=parse_columns(columns, 3), header=parse_header_option(header), skip_bad=skip_bad,
                         show_progress=not log.is_quiet())
    except KeyboardInterrupt:
        log.warning("interrupted: nothing was written (%s is as it was).", output)
        ctx.exit(130)  # 128 + SIGINT, as every command
    log.info("trained %d steps in %.1f s (last epoch's loss %.4f); wrote %s (%s users, %s items, %d dimensions)",
             r.steps, r.seconds, r.final_loss, r.output, f"{r.n_users:,}", f"{r.n_items:,}", r.dims)

"""`dcue train`: fit the deep content-user embedding model (or the WMF+Regression baseline)."""

import click

from dcue_cli import log
from dcue_cli.options import (
    device_option,
    finite,
    output_option,
    plays_input_options,
    positive_list,
    seed_option,
)

# click parameter -> TrainConfig / ModelConfig field, where the names differ
PARAM_TO_KEY = {"jobs": "workers", "compile_": "compile", "no_amp": "amp", "no_centre_init": "centre_init"}


def _apply_preset(ctx, _param, name):
    """--preset NAME: its settings become the defaults (an option on the command line still wins)."""
    from dcue_cli.train.presets import PRESETS

    key_to_param = {v: k for k, v in PARAM_TO_KEY.items()}
    preset = {key_to_param.get(k, k): ",".join(map(str, v)) if isinstance(v, tuple) else v
              for k, v in PRESETS[name].items()}
    ctx.default_map = {**(ctx.default_map or {}), **preset}
    return name


@click.command("train")
@click.argument("mels", type=click.Path(dir_okay=False))
@click.argument("plays", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--splits", required=True, type=click.Path(dir_okay=False),
              help="Song splits (item_id<TAB>train|valid|test) from `dcue subset`: trains on the train "
                   "songs, validates on the valid songs, never looks at the test songs.")
@output_option("The best checkpoint (by validation AUC). MODEL.last.pt (latest, for --resume) and "
               "MODEL.log.tsv (the training log) and MODEL.curves.png (its curves) are written beside it.")
@click.option("--preset", type=click.Choice(["default", "paper"]), default="default", show_default=True,
              is_eager=True, expose_value=False, callback=_apply_preset,
              help="Start from a named recipe; options given still win. default: the defaults shown here; "
                   "paper: Lee et al. (2018) exactly: --batch-size 10 --per-user-negatives "
                   "--no-in-batch-negatives --optimizer sgd --lr 0.05 --schedule keras and the paper's CNN.")
@click.option("--objective", type=click.Choice(["hinge", "softmax", "regress"]), default="hinge", show_default=True,
              help="hinge: the paper's max-margin loss on cosine relevance; softmax: sampled softmax "
                   "(InfoNCE) over the negatives and the batch's other positives; regress: WMF+Regression, "
                   "the audio network regresses the --target WMF item factors (MSE).")
@click.option("--target", type=click.Path(dir_okay=False),
              help="For --objective regress: WMF factors from `dcue wmf --fit-on train` (so no test "
                   "interaction reaches them).")
@click.option("--artists", type=click.Path(dir_okay=False),
              help="An artist map (the MSD unique_tracks.txt, or item<TAB>artist lines): the item tower adds "
                   "a learned vector of the song's artist to what it hears (artists with training songs; any "
                   "other is the unknown artist). `embed` then needs the same map.")
@click.option("--artist-dropout", type=finite(min=0, max=1, max_open=True), default=0.5, show_default=True,
              help="With --artists: the chance that a training crop's artist is replaced by the unknown "
                   "artist, so a song by an artist with no training songs still gets a vector from its audio.")
@click.option("--artist-scale", type=finite(min=0, min_open=True), default=10.0, show_default=True,
              help="With --artists: the artist vector is its lookup times this, so that SGD moves it as fast as "
                   "the audio's (at 1 it stays ~200x shorter and is never heard).")
@click.option("--margin", type=finite(), default=0.2, show_default=True, help="Hinge margin Δ.")
@click.option("--negatives", type=click.IntRange(min=1), default=20, show_default=True,
              help="Negative songs per positive pair (with --shared-negatives: the size of the batch's pool).")
@click.option("--negative-sampling", type=click.Choice(["uniform", "popularity"]), default="uniform",
              show_default=True, help="Draw negatives uniformly from the training songs the user has not "
                                      "played, or in proportion to their plays.")
@click.option("--shared-negatives/--per-user-negatives", default=True, show_default=True,
              help="Shared: one pool of --negatives songs per batch serves every user in it (each user's own "
                   "songs masked), 1 + negatives/batch crops per pair; per-user: the paper's own --negatives "
                   "songs for every pair, 1 + negatives crops per pair.")
@click.option("--in-batch-negatives/--no-in-batch-negatives", default=True, show_default=True,
              help="The batch's other positives serve as negatives too (no extra crops; the hinge sum is scaled "
                   "to --negatives terms). The paper: --per-user-negatives --no-in-batch-negatives.")
@click.option("--listeners-per-song", type=click.IntRange(min=0), default=0, show_default=True,
              help="Song-grouped batches: --batch-size pairs on batch/L songs, L listeners sharing each "
                   "song's crop (L times the pairs per crop through the audio network; every pair stays "
                   "equally likely). Needs --shared-negatives. 0: batch/64, from 1 to 32 (the default "
                   "batch: 64 songs of 32 listeners); 1 with --per-user-negatives.")
@click.option("--temperature", type=finite(), default=0.1, show_default=True, help="Softmax temperature.")
@click.option("--weighting", type=click.Choice(["binary", "log"]), default="binary", show_default=True,
              help="binary: plays binarised (the paper); log: positives weighted by 1 + log(count).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Positive pairs per step (per process under torchrun); default 2048 (64 songs of 32 listeners), "
                   "128 crops with --objective regress. The paper's 10 leaves a GPU idle.")
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default="adamw", show_default=True,
              help="SGD with Nesterov momentum (the paper), Adam, or AdamW (Adam with decoupled weight decay).")
@click.option("--lr", type=finite(), default=0.002, show_default=True,
              help="Learning rate (the loss is the mean over pairs of the sum over --negatives negatives).")
@click.option("--momentum", type=finite(), default=0.9, show_default=True, help="SGD (Nesterov) momentum.")
@click.option("--lr-decay", type=finite(), default=1e-6, show_default=True,
              help="lr / (1 + decay × step), as the authors' Keras SGD (--schedule keras).")
@click.option("--schedule", type=click.Choice(["keras", "cosine"]), default="cosine", show_default=True,
              help="keras: lr / (1 + --lr-decay × step), the authors'; cosine: a linear warm-up over "
                   "--warmup-steps, then a cosine decay to 0 at the last step of --epochs.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=100, show_default=True,
              help="Steps of linear learning-rate warm-up (--schedule cosine).")
@click.option("--plateau-factor", type=finite(min=0, max=1, min_open=True), default=1.0, show_default=True,
              help="Multiply the learning rate by this after --plateau-patience epochs without a better "
                   "validation AUC (1: never).")
@click.option("--plateau-patience", type=click.IntRange(min=1), default=2, show_default=True,
              help="Epochs without progress before the learning rate drops.")
@click.option("--curves/--no-curves", default=True, show_default=True,
              help="Draw the loss and validation-AUC curves to MODEL.curves.png beside the log after every "
                   "epoch (needs matplotlib: pip install 'dcue[plot]').")
@click.option("--weight-decay", type=finite(), default=1e-4, show_default=True,
              help="Weight decay (AdamW: decoupled; SGD and Adam: L2).")
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True, help="Most epochs to train.")
@click.option("--steps-per-epoch", type=click.IntRange(min=0), default=100, show_default=True,
              help="Steps between validations (0: one pass over the training plays).")
@click.option("--patience", type=click.IntRange(min=0), default=5, show_default=True,
              help="Stop after this many epochs without a better validation AUC (0: never).")
@click.option("--conv-channels", default="128,256,256,256,256", show_default=True,
              help="Filters of each Conv1D layer of the audio network.")
@click.option("--conv-kernels", default="4,4,4,2,1", show_default=True, help="Kernel size of each Conv1D layer.")
@click.option("--pool-sizes", default="4,4,4,2,1", show_default=True,
              help="Max-pool size after each Conv1D layer (1: none).")
@click.option("--pooling", type=click.Choice(["mean", "meanstd"]), default="mean", show_default=True,
              help="How the audio network pools its last features over time: mean (the paper's global average) "
                   "or meanstd (mean and standard deviation: how much each feature varies within the crop).")
@click.option("--stem-channels", default="", show_default=True,
              help="A 2-D front end before the Conv1D layers: one 3x3 convolution per value (that many filters), "
                   "each max-pooled by 2 over frequency, so a learned pattern holds at every pitch (e.g. 16,16; "
                   "about 10x the cost per crop on a CPU, meant for a GPU). Empty: none, the paper's network.")
@click.option("--embed-dim", type=click.IntRange(min=1), default=256, show_default=True,
              help="Size of the item and user vectors.")
@click.option("--user-embed-dim", type=click.IntRange(min=1), default=300, show_default=True,
              help="Size of the user embedding lookup.")
@click.option("--user-hidden", default="300", show_default=True,
              help="Hidden layer sizes of the user network (comma-separated).")
@click.option("--crop-frames", type=click.IntRange(min=1), default=130, show_default=True,
              help="Frames per crop (130 = 3 s at 22050 Hz, hop 512).")
@click.option("--batch-norm/--no-batch-norm", default=True, show_default=True,
              help="Batch norm after each convolution (the authors' released code has none: "
                   "--no-batch-norm; without it the cosine training stalls, see the README).")
@click.option("--no-centre-init", is_flag=True,
              help="Keep the initial output biases at zero instead of centring the first item and user "
                   "vectors on data.")
@device_option()
@click.option("--cache", type=click.Choice(["auto", "gpu", "cpu", "none"]), default="auto", show_default=True,
              help="Where the mels are held: GPU memory, host memory, or none (read from the HDF5 file by "
                   "worker processes). auto: the GPU when they fit, else host memory, else none.")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=None,
              help="Worker processes reading crops with --cache none (default: up to 4).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model (faster on a GPU after warm-up).")
@click.option("--no-amp", is_flag=True, help="Train in float32 on CUDA instead of bfloat16 autocast.")
@click.option("--cpu-bf16", "cpu_amp", is_flag=True,
              help="bfloat16 autocast on the CPU too: the GPU's mixed-precision code path where there is no "
                   "GPU (for tests; slower than float32 on most CPUs).")
@seed_option()
@click.option("--resume", is_flag=True,
              help="Continue MODEL.last.pt where it stopped (same settings and random state); --epochs, "
                   "--patience, --cache, --jobs, --log-every, --compile and --no-amp may change (a new --epochs "
                   "moves --schedule cosine's last step with it).")
@click.option("--fresh", is_flag=True,
              help="Start afresh over an unfinished run's MODEL.last.pt, replacing it. Without --resume or "
                   "--fresh, train refuses to discard an interrupted run (a finished run's MODEL.last.pt is "
                   "replaced).")
@click.option("--log-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also log the running loss every N steps (0: once per epoch).")
@plays_input_options
@click.pass_context
def cli(ctx, mels, plays, splits, output, objective, target, artists, artist_dropout, artist_scale, margin, negatives, negative_sampling,
        shared_negatives, in_batch_negatives, listeners_per_song, temperature, weighting, batch_size, optimizer, lr, momentum,
        lr_decay, schedule, warmup_steps, plateau_factor, plateau_patience, curves, weight_decay, epochs, steps_per_epoch, patience,
        conv_channels, conv_kernels, pool_sizes, pooling, stem_channels, embed_dim, user_embed_dim, user_hidden, crop_frames, batch_norm,
        no_centre_init, device, cache, jobs, compile_, no_amp, cpu_amp, seed, resume, fresh, log_every, columns, header, skip_bad):
    """Train the deep content-user embedding model on MELS (from `dcue melspec`) and PLAYS.

    Users are embedded by a lookup and an MLP, songs by a 1-D CNN over random 3-second crops
    of their log-mel spectrograms; the two towers are trained so that a user's cosine with a
    song they played beats its cosine with songs they did not (the paper's hinge, margin 0.2).
    The defaults are the recipe measured best on 2 CPU cores (docs/results.md): batches of 2048
    pairs on 64 songs, 32 listeners sharing each song's crop, one pool of 20 negatives plus the
    batch's songs, AdamW with warm-up and cosine decay, 12 epochs of 100 steps (each of 700
    training songs seen about 110 times). With more songs (the full MSD) raise --steps-per-epoch
    and --epochs with them: on the demo's 700, twice the steps overfit. On a GPU add the 2-D
    front end (--stem-channels 16,16: better hearing, 5x the cost on a CPU). --preset paper is
    the published recipe (batches of 10, 20 negatives per pair, Nesterov SGD). Every epoch the cold-start AUC on
    the validation songs (through the metric code of `dcue score`) picks the best
    checkpoint; early stopping ends the run. `--objective regress --target wmf.h5` trains
    the same audio network as the WMF+Regression baseline instead. `--artists unique_tracks.txt`
    adds the song's artist to the item tower (a multi-view model: a new song by a known artist
    is placed by its sound and its artist; artist dropout keeps the audio alone able to place
    one by a new artist). Several GPUs:
    `torchrun --nproc-per-node N -m dcue_cli train ...` (one process saves and logs).
    Ctrl-C or SIGTERM finishes the step in flight and saves MODEL.last.pt (exit 130; a second
    signal stops at once); `--resume` continues it.

    \b
    Example:
      dcue train mels.h5 sub/plays.tsv --splits sub/splits.tsv -o model.pt
      dcue train mels.h5 sub/plays.tsv --splits sub/splits.tsv -o model.pt \\
          --batch-size 256 --compile                                  # on a GPU
      dcue train mels.h5 sub/plays.tsv --splits sub/splits.tsv -o wmfreg.pt \\
          --objective regress --target wmf.h5
      dcue train mels.h5 sub/plays.tsv --splits sub/splits.tsv -o artist.pt \\
          --artists unique_tracks.txt                 # audio plus the artist
      torchrun --nproc-per-node 4 -m dcue_cli train mels.h5 sub/plays.tsv \\
          --splits sub/splits.tsv -o model.pt --batch-size 256
    """
    from dcue_cli.io.rows import parse_columns, parse_header_option
    from dcue_cli.train.config import TrainConfig
    from dcue_cli.train.run import run_train

    if resume and fresh:
        raise click.UsageError("--resume continues MODEL.last.pt and --fresh replaces it: give one of them.")
    if objective == "regress" and not target:
        raise click.UsageError("--objective regress needs --target wmf.h5 (from `dcue wmf --fit-on train`).")
    if target and objective != "regress":
        raise click.UsageError("--target only applies to --objective regress.")
    if temperature <= 0:
        raise click.BadParameter("must be positive", param_hint="--temperature")
    if lr <= 0:
        raise click.BadParameter("must be positive", param_hint="--lr")
    if listeners_per_song > 1 and not shared_negatives:
        raise click.UsageError("--listeners-per-song above 1 needs --shared-negatives: with --per-user-negatives "
                               "every pair has its own crops anyway.")
    layers = (positive_list(conv_channels, "--conv-channels"), positive_list(conv_kernels, "--conv-kernels"),
              positive_list(pool_sizes, "--pool-sizes"))
    model_overrides = {
        "conv_channels": layers[0], "conv_kernels": layers[1], "pool_sizes": layers[2], "embed_dim": embed_dim,
        "user_embed_dim": user_embed_dim, "user_hidden": positive_list(user_hidden, "--user-hidden"), "crop_frames": crop_frames,
        "batch_norm": batch_norm, "artist_scale": artist_scale, "pooling": pooling,
        "stem_channels": positive_list(stem_channels, "--stem-channels", int, "16,16") if stem_channels else ()}
    if len({len(v) for v in layers}) != 1:
        raise click.UsageError("--conv-channels, --conv-kernels and --pool-sizes need one value per layer each.")
    workers = jobs if jobs is not None else 4
    cfg = TrainConfig(objective=objective, margin=margin, negatives=negatives, negative_sampling=negative_sampling,
                      shared_negatives=shared_negatives, listeners_per_song=listeners_per_song,
                      in_batch_negatives=in_batch_negatives, temperature=temperature, weighting=weighting,
                      batch_size=batch_size or 0, optimizer=optimizer, lr=lr, momentum=momentum, lr_decay=lr_decay,
                      schedule=schedule, warmup_steps=warmup_steps,
                      plateau_factor=plateau_factor, plateau_patience=plateau_patience,
                      weight_decay=weight_decay, epochs=epochs, steps_per_epoch=steps_per_epoch, patience=patience,
                      seed=seed, compile=compile_, amp=not no_amp, cpu_amp=cpu_amp, cache=cache, workers=workers,
                      log_every=log_every, centre_init=not no_centre_init, curves=curves,
                      artists=str(artists or ""), artist_dropout=artist_dropout)

    # the settings given on the command line: a resumed run takes the resumable ones and
    # names any other that differs from the saved run (it continues with the saved value)
    source = click.core.ParameterSource
    explicit = {PARAM_TO_KEY.get(name, name) for name in ctx.params
                if ctx.get_parameter_source(name) == source.COMMANDLINE}

    report = run_train(mels, plays, splits, output, cfg, model_overrides, device=device, target=target,
                       resume=resume, fresh=fresh, explicit=explicit, columns=parse_columns(columns, 3),
                       header=parse_header_option(header), skip_bad=skip_bad, artists=artists)
    if report.interrupted:
        ctx.exit(130)
    if report.master:
        auc = "-" if report.best_auc != report.best_auc else f"{report.best_auc:.4f}"
        log.info("wrote %s (best validation AUC %s at epoch %d of %d%s); log: %s", output, auc, report.best_epoch,
                 report.epochs_run, ", stopped early" if report.stopped_early else "", report.log_file)

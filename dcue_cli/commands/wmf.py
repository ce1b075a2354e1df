"""`dcue wmf`: the weighted matrix factorisation baseline, written as an embeddings file."""

import click

from dcue_cli import log
from dcue_cli.options import (
    check_fit_on,
    device_option,
    finite,
    fit_on_options,
    output_option,
    plays_input_options,
    seed_option,
)


@click.command("wmf")
@click.argument("plays", type=click.Path(dir_okay=False, allow_dash=True))
@fit_on_options("the paper's WMF row: an upper bound, not a cold-start method")
@output_option("Embeddings HDF5 to write (users and items; similarity dot).")
@click.option("--factors", type=click.IntRange(min=1), default=100, show_default=True,
              help="Latent dimensions.")
@click.option("--regularization", type=finite(min=0), default=0.01, show_default=True,
              help="L2 weight on the factors (lambda).")
@click.option("--iterations", type=click.IntRange(min=1), default=15, show_default=True,
              help="ALS sweeps (users then items).")
@click.option("--alpha", type=finite(min=0, min_open=True), default=40.0, show_default=True,
              help="Confidence scale: how much more a play counts than a non-play.")
@click.option("--confidence", type=click.Choice(["linear", "log"]), default="linear", show_default=True,
              help="linear: 1 + alpha*c; log: 1 + alpha*log(1 + c/epsilon) (for heavy-tailed counts).")
@click.option("--epsilon", type=finite(min=0, min_open=True), default=1.0, show_default=True,
              help="The epsilon of --confidence log.")
@seed_option()
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for ALS (default: all usable cores).")
@device_option()
@plays_input_options
def cli(plays, splits, fit_on, output, factors, regularization, iterations, alpha, confidence, epsilon, seed,
        threads, device, columns, header, skip_bad):
    """Fit weighted matrix factorisation (Hu, Koren & Volinsky 2008) to play counts.

    ALS through the `implicit` library, on the GPU when implicit has CUDA there (--device),
    else on the CPU; the log says which. A play count c gives confidence 1 + alpha*c (or the
    log form), a non-play confidence 1. Without --splits every item of PLAYS is fitted: the
    warm protocol's training plays. With --splits, --fit-on says which songs. Writes the
    embeddings contract (users and items, similarity dot, source wmf) with every
    hyperparameter as an attribute, for `dcue score`, `dcue train --objective regress` and
    `dcue autotag`.

    \b
    Example:
      dcue wmf sub/plays.tsv --splits sub/splits.tsv --fit-on all -o wmf.h5
      dcue wmf lastfm/plays.train.tsv --confidence log --alpha 2 -o wmf-warm.h5
    """
    from dcue_cli.io.rows import parse_columns, parse_header_option
    from dcue_cli.wmf import WmfConfig, run_wmf

    check_fit_on(splits, fit_on, "the paper's WMF row, fitted on every song: an upper bound")
    config = WmfConfig(factors, regularization, iterations, alpha, confidence, epsilon, seed, threads, device)
    run = run_wmf(plays, output, config, splits=splits, fit_on=fit_on, columns=parse_columns(columns, 3),
                  header=parse_header_option(header), skip_bad=skip_bad)
    log.info("fitted in %.1f s; wrote %s (%s users, %s items, %d factors)", run.seconds, run.output,
             f"{run.n_users:,}", f"{run.n_items:,}", run.factors)

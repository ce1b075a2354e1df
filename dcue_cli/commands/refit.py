"""`dcue refit`: users fitted again on a model's fixed item vectors (dcue_cli/refit.py)."""

import click

from dcue_cli import log
from dcue_cli.options import (
    output_option,
    plays_input_options,
    positive_int_ranges,
    positive_list,
)


@click.command("refit")
@click.argument("embeddings", type=click.Path(dir_okay=False))
@click.argument("plays", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--splits", required=True, type=click.Path(dir_okay=False),
              help="The song splits the model was trained with: users are fitted on the train songs, "
                   "k and C chosen on the valid songs, the test songs never looked at.")
@output_option("The refitted embeddings HDF5 (similarity dot), written atomically.")
@click.option("--dims", default="2-16,24,32", show_default=True,
              help="Numbers k of principal directions of the item vectors to try (comma-separated integers "
                   "and low-high ranges).")
@click.option("--strengths", default="0.3,1,3", show_default=True,
              help="Inverse L2 strengths C of the users' logistic regressions to try (at the chosen k).")
@plays_input_options
def cli(embeddings, plays, splits, output, dims, strengths, columns, header, skip_bad):
    """Fit every user's vector again on the fixed item vectors of EMBEDDINGS, from PLAYS.

    The item vectors (a cosine model's unit-normalised) are reduced to their top k principal
    directions over the training songs; each user's taste is then an L2 logistic regression of
    played or not over all training songs on those coordinates, the reachable ceiling's user
    model (benchmarks/reachable_ceiling.py). k is chosen by the cold-start AUC on the valid
    songs at the middle C (trying --dims in increasing order, stopping three values past the
    best), then C at that k. Every item keeps a vector (cold songs too); every user with a
    training play gets one, also a user the model never saw. On the demo set this raised
    DCUE's cold-start AUC on the test songs (docs/results.md). Works on any embeddings file
    (dcue, wmf-regression).

    \b
    Example:
      dcue refit dcue.h5 sub/plays.tsv --splits sub/splits.tsv -o dcue_refit.h5
      dcue score dcue_refit.h5 dcue.h5 --popularity --plays sub/plays.tsv --splits sub/splits.tsv
    """
    from dcue_cli.io.rows import parse_columns, parse_header_option
    from dcue_cli.refit import run_refit

    r = run_refit(embeddings, plays, splits, output, dims=positive_int_ranges(dims, "--dims"),
                  strengths=positive_list(strengths, "--strengths", float, "0.3,1,3"), show_progress=not log.is_quiet(),
                  columns=parse_columns(columns, 3), header=parse_header_option(header), skip_bad=skip_bad)
    tried = ", ".join(f"k {k} C {c:g}: {a:.4f}" for (k, c), a in r.valid_auc.items())
    log.info("valid AUC by (k, C): %s", tried)
    log.info("wrote %s: %s items and %s users, k %d, C %g", r.output, f"{r.n_items:,}", f"{r.n_users:,}",
             r.dims, r.strength)

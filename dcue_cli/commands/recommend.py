"""`dcue recommend`: the top -k items for every user of a list, as streaming TSV."""

import click

from dcue_cli import log
from dcue_cli.options import device_option, plays_input_options


@click.command("recommend")
@click.argument("embeddings", type=click.Path(dir_okay=False))
@click.option("--users", "users", type=click.Path(dir_okay=False, allow_dash=True),
              help="The user ids, one a line ('-': stdin); default: every user of EMBEDDINGS (and of --plays).")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Items per user.")
@click.option("--exclude-played", type=click.Path(dir_okay=False, allow_dash=True),
              help="Leave out the items each user played in this plays file.")
@click.option("--items", "items", metavar="SPLIT|FILE",
              help="Rank only these items: train, valid or test (a split of --splits), or a file of item ids, "
                   "one a line (e.g. this week's new songs). Default: every item of EMBEDDINGS.")
@click.option("--splits", type=click.Path(dir_okay=False),
              help="The song splits, for --items SPLIT.")
@click.option("--plays", type=click.Path(dir_okay=False, allow_dash=True),
              help="Plays of users the model does not know: they are folded in from the items they played, "
                   "without retraining.")
@click.option("--fold-in", "fold_method", type=click.Choice(["als", "mean", "logistic"]), default=None,
              help="How new users get a vector: als (dot files: the WMF user step), mean or logistic (cosine "
                   "files) [default: als for dot, logistic for cosine].")
@click.option("--alpha", type=float, default=None,
              help="Fold-in als: confidence weight (default: the file's, else 40).")
@click.option("--regularization", type=float, default=None,
              help="Fold-in als: L2 weight (default: the file's, else 0.01).")
@click.option("--confidence", "confidence_kind", type=click.Choice(["linear", "log"]), default=None,
              help="Fold-in als: confidence form (default: the file's, else linear).")
@click.option("--epsilon", type=float, default=None,
              help="Fold-in als, log confidence: epsilon (default: the file's, else 1).")
@click.option("--skip-unknown", is_flag=True,
              help="Leave out (and count) users neither in the file nor in --plays.")
@click.option("--id-map", type=click.Path(dir_okay=False),
              help="MSD unique_tracks.txt, to print artist and title beside each item.")
@click.option("-o", "--output", default="-", show_default=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Output TSV ('-': stdout, streamed; a file is written atomically).")
@click.option("--batch-users", type=click.IntRange(min=1), default=None,
              help="Users scored at once (default: as many as fit in 256 MB of scores, 2 GB on a GPU).")
@device_option()
@plays_input_options
def cli(embeddings, users, k, exclude_played, items, splits, plays, fold_method, alpha, regularization,
        confidence_kind, epsilon, skip_unknown, id_map, output, batch_users, device, columns, header, skip_bad):
    """Recommend the top -k items to every user of a list, as TSV (user, rank, item, score).

    Scores are the file's similarity (cosine for `dcue embed`, dot for `dcue wmf`), exact, in
    chunks of users (bounded memory), on the GPU when present. Users the model does not know
    are folded in from their --plays (dot: the WMF ALS user step; cosine: a logistic fit of
    the played items against the others, or their mean direction). New songs (the cold-start
    use): embed their audio with an existing model and rank only them with --items.

    \b
    Example:
      dcue recommend wmf.h5 --users users.txt -k 50 --exclude-played sub/plays.tsv > recs.tsv
      dcue recommend wmf.h5 --users - --plays new-plays.tsv < new-users.txt
      dcue embed model.pt new-mels.h5 -o new.h5 && dcue recommend new.h5 --items new.txt
    """
    from dcue_cli.io.atomic import (
        check_output_path,
        open_text_output,
        refuse_inputs_as_outputs,
    )
    from dcue_cli.io.rows import parse_columns, parse_header_option
    from dcue_cli.recommend.run import SPLIT_NAMES, run_recommend

    if items in SPLIT_NAMES and not splits:
        raise click.UsageError(f"--items {items} needs --splits (or give a file of item ids).")
    if splits and items not in SPLIT_NAMES:
        raise click.UsageError("--splits applies to --items train|valid|test.")
    stdin = [flag for flag, v in (("--users", users), ("--plays", plays), ("--exclude-played", exclude_played))
             if v == "-"]
    if len(stdin) > 1 and not (stdin == ["--plays", "--exclude-played"]):
        raise click.UsageError(f"{' and '.join(stdin)} cannot both read stdin: give one of them a file.")
    if output != "-":
        check_output_path(output, "recommendations TSV")
    refuse_inputs_as_outputs({"-o": output}, {"EMBEDDINGS": embeddings, "--users": users, "--plays": plays,
                                              "--exclude-played": exclude_played, "--items": items,
                                              "--splits": splits, "--id-map": id_map})
    options = {"alpha": alpha, "regularization": regularization, "kind": confidence_kind, "epsilon": epsilon}
    read_opts = {"columns": parse_columns(columns, 3), "header": parse_header_option(header), "skip_bad": skip_bad}
    with open_text_output(output) as out:
        report = run_recommend(embeddings, out, users=users, k=k, exclude_played=exclude_played, items=items,
                               splits=splits, plays=plays, id_map=id_map, fold_method=fold_method,
                               wmf_options=options, read_opts=read_opts, device=device,
                               skip_unknown=skip_unknown, chunk=batch_users)
    log.info("%s rows for %s users (%s known, %s folded in, %s skipped) over %s candidate items in %.1f s on %s",
             f"{report['rows']:,}", f"{report['users']:,}", f"{report['known']:,}", f"{report['folded_in']:,}",
             f"{report['skipped']:,}", f"{report['candidates']:,}", report["seconds"], report["device"])

"""`dcue score`: evaluate embeddings (and popularity) on the cold-start or warm protocol, or query them."""

import json
import sys

import click

from dcue_cli import log
from dcue_cli.options import json_option, plays_input_options, seed_option

PROTOCOLS_HINT = ("give --plays and --splits (the cold-start protocol) or --train-plays and --test-plays "
                  "(the warm protocol)")


def _parse_ks(text: str) -> tuple:
    try:
        ks = tuple(int(x) for x in text.split(","))
    except ValueError:
        ks = ()
    if not ks or any(k < 1 for k in ks):
        raise click.BadParameter(f"{text!r}: give positive integers separated by commas, e.g. 10,50,100.",
                                 param_hint="-k")
    return tuple(dict.fromkeys(ks))


def _one_stdin(inputs: dict) -> None:
    """stdin can feed one input only."""
    stdin = [flag for flag, value in inputs.items() if value == "-"]
    if len(stdin) > 1:
        raise click.UsageError(f"{' and '.join(stdin)} cannot both read stdin: give all but one of them a file.")


@click.command("score")
@click.argument("embeddings", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--plays", type=click.Path(dir_okay=False, allow_dash=True),
              help="Cold-start protocol: the plays of the subset (plays.tsv from `dcue subset`).")
@click.option("--splits", type=click.Path(dir_okay=False, allow_dash=True),
              help="Cold-start protocol: the song splits (splits.tsv, '-': stdin); also --items for queries.")
@click.option("--on", "on_split", type=click.Choice(["test", "valid", "train"]), default="test", show_default=True,
              help="Cold-start protocol: the split whose songs are ranked.")
@click.option("--train-plays", type=click.Path(dir_okay=False, allow_dash=True),
              help="Warm protocol: the training plays (plays.train.tsv from subset --holdout-interactions).")
@click.option("--test-plays", type=click.Path(dir_okay=False, allow_dash=True),
              help="Warm protocol: the held-out plays (plays.test.tsv).")
@click.option("--popularity", is_flag=True,
              help="Add a row ranking items by total play count (the sum of counts).")
@click.option("--popularity-from", type=click.Choice(["auto", "evaluated", "train"]), default="auto",
              show_default=True,
              help="Counts of --popularity: 'evaluated' interactions (an oracle, as in the paper) or 'train' "
                   "plays (warm only); auto: train when there are training plays, else evaluated.")
@click.option("-k", "k_text", default="10", show_default=True, metavar="K[,K...]",
              help="Cut-offs of precision/recall/nDCG/MAP, e.g. 10,50,100 (a --user/--item query: one K, "
                   "how many items).")
@click.option("--artists", type=click.Path(dir_okay=False),
              help="Cold-start protocol: an artist map (unique_tracks.txt or item<TAB>artist); also score the "
                   "semi-cold songs (their artist has training songs) and the fully cold ones (it has none) "
                   "apart, each as the whole table.")
@click.option("--artist-mean", type=click.Path(dir_okay=False), metavar="WMF_TRAIN",
              help="With --artists: add the artist-mean baseline, a song scored by the mean WMF factors of its "
                   "artist's training songs (from `dcue wmf --fit-on train`; the global mean when it has none).")
@click.option("--against", metavar="ROW",
              help="Pair every row against this one (a row's name, e.g. Popularity, or one of the files), "
                   "printed first; default: the first row.")
@click.option("--missing", type=click.Choice(["penalize", "drop"]), default="penalize", show_default=True,
              help="Items or users without a vector in a file: 'penalize' ranks such items last (tied) and "
                   "gives such users all-tied scores; 'drop' evaluates only what every file has.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Bootstrap resamples of users for the 95% intervals and paired differences. Memory grows "
                   "with resamples x models x metrics (8 bytes each), time with resamples x users; a count "
                   "that needs more than half the free memory, or over 10^11 draws (hours), is refused "
                   "with the largest that fits.")
@seed_option()
@json_option
@click.option("--per-user", type=click.Path(dir_okay=False, allow_dash=True),
              help="Also write every user's values (TSV: model, user, positives, candidates, metrics).")
@click.option("--paper", is_flag=True, help="Print the paper's MSD figures (Table 1) under the table, for reference.")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Also draw each model's per-user AUC distribution and its ROC curve (averaged over users) "
                   "to this image (.png, .pdf, .svg); needs matplotlib: pip install 'dcue[plot]'.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for scoring (default: the usable cores, at most 8).")
@click.option("--user", "query_user", help="Query: print the top -k items for this user id (TSV).")
@click.option("--item", "query_item", help="Query: print the -k items nearest to this item id (TSV).")
@click.option("--exclude-played", type=click.Path(dir_okay=False, allow_dash=True),
              help="Query --user: leave out the items the user played in this plays file.")
@click.option("--id-map", type=click.Path(dir_okay=False),
              help="Query: MSD unique_tracks.txt, to print artist and title beside each item.")
@click.option("--items", "query_items", type=click.Choice(["all", "train", "valid", "test"]), default="all",
              show_default=True, help="Query: rank only the songs of this split of --splits.")
@plays_input_options
def cli(embeddings, plays, splits, on_split, train_plays, test_plays, popularity, popularity_from, k_text,
        artists, artist_mean, against, missing, n_boot, seed, as_json, per_user, paper, plot, threads, query_user, query_item, exclude_played,
        id_map, query_items, columns, header, skip_bad):
    """Measure how well embeddings rank held-out songs for users, or query them.

    Cold-start protocol (the paper's; --plays and --splits): for every user with a positive
    and a negative among the songs of one split (--on test), AUC of the model's scores over
    those songs, averaged over users; plus precision, recall, nDCG and MAP at -k on the full
    ranking. Warm protocol (--train-plays and --test-plays): every training item a user has
    not played in training is ranked; training plays are neither hits nor negatives. Each
    figure has a 95% bootstrap interval over users; several files give one table, with a
    paired test of each row against the first. The table goes to stderr, or to stdout when
    nothing else does; --json and --per-user are for scripts. Ctrl-C or SIGTERM stops after
    the chunk of users or resamples in flight, writing nothing (exit 130).

    Semi-cold songs (--artists unique_tracks.txt): the cold songs are also scored in two
    groups, those whose artist has training songs and those whose artist has none, each a
    table of every row; --artist-mean wmf_train.h5 adds the artist-mean baseline, and
    --against names the row the others are paired against.

    Queries: --user ID prints the user's top -k items, --item ID the -k most similar items,
    as TSV (rank, item, score[, artist, title]).

    \b
    Example:
      dcue score dcue.h5 wmf.h5 --plays sub/plays.tsv --splits sub/splits.tsv --popularity
      dcue score wmf.h5 --train-plays lf/plays.train.tsv --test-plays lf/plays.test.tsv \\
          --popularity -k 10,50 --json > warm.json
      dcue score dcue.h5 wmf.h5 --plays sub/plays.tsv --splits sub/splits.tsv --plot auc.png
      dcue score dcue.h5 artist.h5 --plays sub/plays.tsv --splits sub/splits.tsv --popularity \\
          --artists unique_tracks.txt --artist-mean wmf_train.h5 --against dcue.h5
      dcue score dcue.h5 --user b80344d063b5ccb3212f76538f3d9e43d87dca9e -k 5 \\
          --exclude-played sub/plays.tsv --id-map unique_tracks.txt
    """
    from dcue_cli.io.rows import parse_columns, parse_header_option

    ks = _parse_ks(k_text)
    _one_stdin({"--plays": plays, "--splits": splits, "--train-plays": train_plays, "--test-plays": test_plays,
                "--exclude-played": exclude_played})
    read_opts = {"columns": parse_columns(columns, 3), "header": parse_header_option(header), "skip_bad": skip_bad}
    if query_user is not None or query_item is not None:
        if len(ks) > 1:
            raise click.BadParameter(f"{k_text!r}: a --user/--item query prints one list: give one cut-off, "
                                     f"e.g. -k {ks[0]}.", param_hint="-k")
        _query(embeddings, query_user, query_item, ks[0], exclude_played, id_map, query_items, splits, read_opts,
               conflicting={"--plays": plays, "--train-plays": train_plays, "--test-plays": test_plays,
                            "--popularity": popularity, "--json": as_json, "--per-user": per_user,
                            "--plot": plot, "--artists": artists, "--artist-mean": artist_mean,
                            "--against": against})
        return
    for flag, value in (("--exclude-played", exclude_played), ("--id-map", id_map)):
        if value:
            raise click.UsageError(f"{flag} applies to --user/--item queries only.")
    cold, warm = bool(plays or splits), bool(train_plays or test_plays)
    if cold and warm:
        raise click.UsageError(f"choose one protocol: {PROTOCOLS_HINT}, not both.")
    if cold and not (plays and splits):
        raise click.UsageError(f"the cold-start protocol needs both --plays and --splits ({PROTOCOLS_HINT}).")
    if warm and not (train_plays and test_plays):
        raise click.UsageError(f"the warm protocol needs both --train-plays and --test-plays ({PROTOCOLS_HINT}).")
    if warm and on_split != "test":
        raise click.UsageError("--on applies to the cold-start protocol (--plays/--splits).")
    if not (cold or warm):
        raise click.UsageError(f"nothing to evaluate against: {PROTOCOLS_HINT}; or query with --user/--item.")
    if warm and artists:
        raise click.UsageError("--artists splits the cold songs by artist: it applies to the cold-start protocol "
                               "(--plays/--splits).")
    if artist_mean and not artists:
        raise click.UsageError("--artist-mean needs --artists (the map that says each song's artist).")
    if as_json and per_user == "-":
        raise click.UsageError("--json and --per-user - would both write to stdout: give --per-user a file name.")
    if not embeddings and not popularity:
        raise click.UsageError("nothing to score: give embeddings files (from `dcue embed` or `dcue wmf`) "
                               "and/or --popularity.")
    plot_format = None
    if plot:
        from dcue_cli.evaluate.plots import check_plot_path

        plot_format = check_plot_path(plot)  # before any work: matplotlib present, a known format
    from dcue_cli.io.atomic import check_output_path

    for path, what in ((per_user, "--per-user TSV"), (plot, "--plot image")):
        if path:
            check_output_path(path, what)  # before the work, not after
    from dcue_cli.evaluate.score import ScoreRequest, run_score

    try:
        result = run_score(ScoreRequest(
            list(embeddings), plays=plays, splits=splits, on=on_split, train_plays=train_plays, test_plays=test_plays,
            popularity=popularity, popularity_from=popularity_from, ks=ks, missing=missing, n_boot=n_boot, seed=seed,
            threads=threads, read_opts=read_opts, per_user=per_user, plot=plot, plot_format=plot_format, paper=paper,
            artists=artists, artist_mean=artist_mean, against=against))
    except KeyboardInterrupt:
        log.warning("interrupted: nothing was written.")
        click.get_current_context().exit(130)  # 128 + SIGINT, as every command
    if as_json or per_user == "-":  # data on stdout: the table for people on stderr
        if not log.is_quiet():
            click.echo(result.table, err=True)
    else:
        click.echo(result.table)
    if as_json:
        json.dump(result.report, sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")


def _query(embeddings, user, item, k, exclude_played, id_map, items_split, splits, read_opts, conflicting):
    from dcue_cli.errors import DcueError
    from dcue_cli.io.embeddings import read_embeddings
    from dcue_cli.recommend.queries import (
        recommend_user,
        similar_items,
        titles_from_id_map,
    )

    if user is not None and item is not None:
        raise click.UsageError("give --user or --item, not both.")
    if len(embeddings) != 1:
        raise click.UsageError(f"a --user/--item query reads exactly one embeddings file, not {len(embeddings)}.")
    for flag, value in conflicting.items():
        if value:
            raise click.UsageError(f"{flag} applies to evaluations, not to --user/--item queries.")
    if item is not None and exclude_played:
        raise click.UsageError("--exclude-played applies to --user queries.")
    if items_split != "all" and not splits:
        raise click.UsageError(f"--items {items_split} needs --splits.")
    emb = read_embeddings(embeddings[0], need_users=user is not None)
    allowed = None
    if items_split != "all":
        from dcue_cli.io.splits import read_splits

        allowed = {i for i, s in read_splits(splits).items() if s == items_split}
    titles = None
    if id_map:
        from dcue_cli.io.idmap import read_id_map

        titles = titles_from_id_map(read_id_map(id_map))
    if user is not None:
        played = None
        if exclude_played:
            from dcue_cli.io.plays import read_plays

            data = read_plays(exclude_played, show_progress=False, **read_opts)
            code = {u: c for c, u in enumerate(data.user_ids)}.get(user)
            if code is None:
                log.warning("user %r has no play in %s: nothing excluded", user, exclude_played)
                played = set()
            else:
                played = set(data.item_ids[data.items[data.users == code]])
        rows = recommend_user(emb, user, k, exclude=played, allowed=allowed)
    else:
        rows = similar_items(emb, item, k, allowed=allowed)
    if not rows:
        raise DcueError("no item is left to rank: check --items and --exclude-played.")
    from dcue_cli.io.atomic import open_text_output

    header = ["rank", "item", "score"] + (["artist", "title"] if titles is not None else [])
    with open_text_output("-") as out:  # ids with undecodable bytes are printed as their bytes
        out.write("\t".join(header) + "\n")
        for rank, item_id, score in rows:
            fields = [str(rank), item_id, f"{score:.6g}"]
            if titles is not None:
                fields += list(titles.get(item_id, ("", "")))
            out.write("\t".join(fields) + "\n")

"""`dcue subset`: the paper's song/user subset of a plays file and its train/valid/test split."""

import click

from dcue_cli import log
from dcue_cli.options import plays_input_options, seed_option


@click.command("subset")
@click.argument("plays", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for plays.tsv and splits.tsv (created if needed).")
@click.option("--songs", "n_songs", type=click.IntRange(min=0), default=10000, show_default=True,
              help="Keep the N most-played songs (by total play count; 0 = all).")
@click.option("--users", "n_users", type=click.IntRange(min=0), default=20000, show_default=True,
              help="Then keep the M most active users among them (by distinct songs; 0 = all).")
@click.option("--split", "split_text", default="0.7,0.1,0.2", show_default=True,
              help="Fractions of songs for train,valid,test (split at random, seeded).")
@seed_option()
@click.option("--songs-with", type=click.Path(dir_okay=False),
              help="Keep only songs listed here: a mels HDF5 from `dcue melspec` or an id list.")
@click.option("--id-map", type=click.Path(dir_okay=False),
              help="MSD unique_tracks.txt, to map the track ids of --songs-with to song ids.")
@click.option("--exclude", type=click.Path(dir_okay=False),
              help="Songs to leave out: the MSD sid_mismatches.txt or an id list.")
@click.option("--min-plays", type=click.IntRange(min=1), default=1, show_default=True,
              help="Leave out songs with fewer total plays than this.")
@click.option("--holdout-interactions", type=float, default=None,
              help="Also write plays.train.tsv / plays.test.tsv holding out this fraction of each "
                   "user's songs (warm-start evaluation).")
@plays_input_options
def cli(plays, out_dir, n_songs, n_users, split_text, seed, songs_with, id_map, exclude, min_plays,
        holdout_interactions, columns, header, skip_bad):
    """Take the paper's subset of PLAYS and split its songs into train/valid/test.

    PLAYS is user_id<TAB>item_id<TAB>count (the Taste Profile's train_triplets.txt; .gz or
    `-` for stdin). Keeps the --songs most-played songs, then the --users most active users
    among them; duplicate (user, song) rows are summed. Writes OUT/plays.tsv and
    OUT/splits.tsv (item_id<TAB>train|valid|test) and prints a summary to stderr.

    \b
    Example:
      dcue subset train_triplets.txt -o subset/ --songs 10000 --users 20000 \\
          --songs-with mels.h5 --id-map unique_tracks.txt --exclude sid_mismatches.txt
      dcue subset user_artists.dat --header yes --songs 0 --users 0 \\
          --holdout-interactions 0.2 -o lastfm/
    """
    from dcue_cli.io.rows import parse_columns, parse_header_option
    from dcue_cli.random_split import parse_fractions
    from dcue_cli.subset import run_subset

    fractions = parse_fractions(split_text)
    cols = parse_columns(columns, 3)
    if id_map and not songs_with:
        raise click.UsageError("--id-map only applies to --songs-with: give both, or neither.")
    run = run_subset(plays, out_dir, fractions=fractions, seed=seed, n_songs=n_songs, n_users=n_users,
                     songs_with=songs_with, id_map=id_map, exclude=exclude, min_plays=min_plays,
                     holdout_fraction=holdout_interactions, columns=cols, header=parse_header_option(header),
                     skip_bad=skip_bad)
    _print_summary(run)


def _print_summary(run) -> None:
    report = run.selection
    log.info("read %s: %s rows, %s users, %s songs%s", run.source, f"{report.input_rows:,}",
             f"{report.input_users:,}", f"{report.input_songs:,}",
             f" ({run.skipped:,} bad lines skipped)" if run.skipped else "")
    for label, value in (("excluded (--exclude)", report.excluded_songs),
                         ("without audio (--songs-with)", report.songs_without_audio),
                         ("below --min-plays", report.below_min_plays),
                         ("duplicate (user, song) rows summed", report.duplicate_rows),
                         ("kept songs with no play among the kept users, dropped", report.songs_dropped_no_users)):
        if value:
            log.info("  %s: %s", label, f"{value:,}")
    for note in report.notes:
        log.warning(note)
    log.info("%-6s %10s %10s %14s %10s", "split", "users", "songs", "interactions", "density")
    for split, users, songs, rows, density in run.summary:
        log.info("%-6s %10s %10s %14s %9.3f%%", split, f"{users:,}", f"{songs:,}", f"{rows:,}", 100 * density)
    log.info("done in %.1f s", run.seconds)
    if run.holdout is not None:
        log.info("warm hold-out: %d training and %d test interactions (%.0f%% of each user's songs held out)",
                 *run.holdout, 100 * run.holdout_fraction)
    log.info("wrote %s", ", ".join(run.written))

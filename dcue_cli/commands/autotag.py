"""`dcue autotag`: how much musical meaning the item vectors carry (the paper's Table 2)."""

import json

import click

from dcue_cli.options import device_option, finite, json_option, seed_option


def _parse_hidden(ctx, param, value):
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        sizes = (0,)
    if not sizes or any(s <= 0 for s in sizes):
        raise click.BadParameter(f"{value!r}: give positive layer widths separated by commas, e.g. 512,512.")
    return sizes


@click.command("autotag")
@click.argument("inputs", nargs=-1, required=True, metavar="EMB.h5 [EMB2.h5 ...] TAGS")
@click.option("--splits", "splits_path", type=click.Path(dir_okay=False),
              help="Splits TSV (item<TAB>train|valid|test, from `dcue subset`). Items with vectors and tags "
                   "but no split are left out and counted. Without it: a seeded random --split of the "
                   "tagged items.")
@click.option("--split", "split_text", default="0.7,0.1,0.2", show_default=True,
              help="Train,valid,test fractions (summing to 1) of the random split used when --splits is not "
                   "given: `dcue subset`'s split, so the same --seed splits the same items alike.")
@click.option("--id-map", "id_map_path", type=click.Path(dir_okay=False),
              help="MSD unique_tracks.txt: maps the tags' track ids to song ids (for lastfm_tags.db "
                   "against song-keyed vectors); ids not in it are kept as they are.")
@click.option("--tag-names", "tag_names_path", type=click.Path(dir_okay=False),
              help="HetRec Last.fm tags.dat (tagID<TAB>tagValue, Latin-1): TAGS is then HetRec's "
                   "user_taggedartists file and a tag's weight is the number of users who applied it.")
@click.option("--top", type=click.IntRange(min=1), default=50, show_default=True,
              help="Predict the N most used tags (counted over the items that take part).")
@click.option("--min-weight", type=finite(), default=0.0, show_default=True,
              help="A tag counts for an item when its weight reaches this (Last.fm: 0-100; a TSV line "
                   "without weight counts as 100; HetRec: number of users).")
@click.option("--hidden", default="512,512", show_default=True, callback=_parse_hidden,
              help="Widths of the hidden layers (each Linear, BatchNorm, ReLU).")
@click.option("--dropout", type=finite(0, 1, max_open=True), default=0.0, show_default=True,
              help="Dropout after each hidden layer.")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True,
              help="Adam, or SGD with Nesterov momentum 0.9.")
@click.option("--lr", type=finite(min=0, min_open=True), default=1e-3, show_default=True,
              help="Learning rate.")
@click.option("--weight-decay", type=finite(min=0), default=0.0, show_default=True,
              help="L2 weight decay.")
@click.option("--batch-size", type=click.IntRange(min=2), default=128, show_default=True,
              help="Training items per batch (batches are of about this size, never below 2).")
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True,
              help="At most this many passes over the training items.")
@click.option("--patience", type=click.IntRange(min=1), default=10, show_default=True,
              help="Stop after this many epochs without improvement on the valid items; the best epoch is kept.")
@click.option("--monitor", type=click.Choice(["loss", "auc"]), default="loss", show_default=True,
              help="What early stopping watches on the valid items: BCE loss or mean per-tag AUC.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads for torch. The network is small: one thread is fastest unless the "
                   "layers are very wide.")
@seed_option()
@device_option()
@json_option
@click.option("--per-tag", "per_tag_path", type=click.Path(dir_okay=False),
              help="Write each model's per-tag AUC and AP (and positives in train/test) to this TSV.")
@click.option("--predict", "predict_path", type=click.Path(dir_okay=False),
              help="Write every item's most probable tags as item<TAB>tag<TAB>probability (a tags TSV; "
                   "'-' = stdout), from the tagger trained on the train items. One embeddings file only.")
@click.option("--predict-top", type=click.IntRange(min=0), default=10, show_default=True,
              help="Tags per item in --predict (0: all of them).")
def cli(inputs, splits_path, split_text, id_map_path, tag_names_path, top, min_weight, hidden, dropout,
        optimizer, lr, weight_decay, batch_size, epochs, patience, monitor, threads, seed, device, as_json,
        per_tag_path, predict_path, predict_top):
    """Measure how much musical meaning item vectors carry: predict tags from them.

    The paper's second task (Table 2): for each embeddings file (from `dcue wmf` or
    `dcue embed`), a small network (two hidden layers of 512 with batch norm and ReLU, one
    sigmoid output per tag, binary cross-entropy) learns the --top most used tags from the
    train items' vectors, stops early on the valid items, and is scored on the test items:
    the mean over tags of the per-tag ROC-AUC (tags without a positive or a negative there
    are left out and counted) and the mean average precision. Several files give one table,
    rows = models, on the items they all share. TAGS is a tags TSV (item<TAB>tag[<TAB>weight]),
    the MSD lastfm_tags.db, or HetRec's user_taggedartists with --tag-names. The table goes
    to stdout (stderr when --json or --predict - use stdout).

    \b
    Example:
      dcue autotag wmf.h5 dcue.h5 tags.tsv --splits sub/splits.tsv
      dcue autotag wmf.h5 lastfm_tags.db --id-map unique_tracks.txt --splits sub/splits.tsv --json
      dcue autotag artists.h5 user_taggedartists_full.dat --tag-names tags.dat --predict tags.pred.tsv
    """
    from dcue_cli.autotag.run import run_autotag
    from dcue_cli.autotag.tagger import TaggerConfig
    from dcue_cli.random_split import parse_fractions

    fractions = parse_fractions(split_text, allow_zero=False)
    if len(inputs) < 2:
        raise click.UsageError("give one or more embeddings files and then the tags file: EMB.h5 [EMB2.h5 ...] TAGS.")
    emb_paths, tags_path = inputs[:-1], inputs[-1]
    if predict_path and len(emb_paths) > 1:
        raise click.UsageError(f"--predict takes one embeddings file; {len(emb_paths)} were given: run once per file.")
    if predict_path == "-" and as_json:
        raise click.UsageError("--predict - and --json would both write to stdout: give --predict a file name.")

    config = TaggerConfig(hidden=hidden, dropout=dropout, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                          batch_size=batch_size, epochs=epochs, patience=patience, monitor=monitor, seed=seed,
                          device=device, threads=threads)
    report = run_autotag(emb_paths, tags_path, splits_path=splits_path, fractions=fractions, id_map_path=id_map_path,
                         tag_names_path=tag_names_path, top=top, min_weight=min_weight, config=config,
                         per_tag_path=per_tag_path, predict_path=predict_path, predict_top=predict_top)
    click.echo(report.table, err=as_json or predict_path == "-")
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))

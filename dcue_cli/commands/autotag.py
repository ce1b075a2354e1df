"""`dcue autotag`: how much musical meaning the item vectors carry (the paper's Table 2)."""

import json

import click

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.options import device_option, json_option, seed_option


def _parse_hidden(ctx, param, value):
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        sizes = (0,)
    if not sizes or any(s <= 0 for s in sizes):
        raise click.BadParameter(f"{value!r}: give positive layer widths separated by commas, e.g. 512,512.")
    return sizes


def _parse_split(ctx, param, value):
    from dcue_cli.autotag import parse_fractions

    try:
        return parse_fractions(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("autotag")
@click.argument("inputs", nargs=-1, required=True, metavar="EMB.h5 [EMB2.h5 ...] TAGS")
@click.option("--splits", "splits_path", type=click.Path(dir_okay=False),
              help="Splits TSV (item<TAB>train|valid|test, from `dcue subset`). Items with vectors and tags "
                   "but no split are left out and counted. Without it: a seeded random --split of the "
                   "tagged items.")
@click.option("--split", "fractions", default="0.7,0.1,0.2", show_default=True, callback=_parse_split,
              help="Train,valid,test proportions of the random split used when --splits is not given.")
@click.option("--id-map", "id_map_path", type=click.Path(dir_okay=False),
              help="MSD unique_tracks.txt: maps the tags' track ids to song ids (for lastfm_tags.db "
                   "against song-keyed vectors); ids not in it are kept as they are.")
@click.option("--tag-names", "tag_names_path", type=click.Path(dir_okay=False),
              help="HetRec Last.fm tags.dat (tagID<TAB>tagValue, Latin-1): TAGS is then HetRec's "
                   "user_taggedartists file and a tag's weight is the number of users who applied it.")
@click.option("--top", type=click.IntRange(min=1), default=50, show_default=True,
              help="Predict the N most used tags (counted over the items that take part).")
@click.option("--min-weight", type=float, default=0.0, show_default=True,
              help="A tag counts for an item when its weight reaches this (Last.fm: 0-100; a TSV line "
                   "without weight counts as 100; HetRec: number of users).")
@click.option("--hidden", default="512,512", show_default=True, callback=_parse_hidden,
              help="Widths of the hidden layers (each Linear, BatchNorm, ReLU).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Dropout after each hidden layer.")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True,
              help="Adam, or SGD with Nesterov momentum 0.9.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Learning rate.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True,
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
def cli(inputs, splits_path, fractions, id_map_path, tag_names_path, top, min_weight, hidden, dropout,
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
    from dcue_cli import autotag as at
    from dcue_cli.runtime import torch_device
    from dcue_cli.io.atomic import check_output_path
    from dcue_cli.io.embeddings import read_embeddings
    from dcue_cli.io.idmap import read_id_map
    from dcue_cli.io.tags import read_hetrec_tags, read_tags
    from dcue_cli.io.tsv import read_splits

    if len(inputs) < 2:
        raise click.UsageError("give one or more embeddings files and then the tags file: EMB.h5 [EMB2.h5 ...] TAGS.")
    emb_paths, tags_path = inputs[:-1], inputs[-1]
    if predict_path and len(emb_paths) > 1:
        raise click.UsageError(f"--predict takes one embeddings file; {len(emb_paths)} were given: run once per file.")
    if predict_path == "-" and as_json:
        raise click.UsageError("--predict - and --json would both write to stdout: give --predict a file name.")
    device = str(torch_device(device))
    for path, what in ((per_tag_path, "--per-tag TSV"), (predict_path, "--predict TSV")):
        if path:
            check_output_path(path, what)  # before the training, not after

    embeddings = [_read_checked(read_embeddings, p) for p in emb_paths]
    if tag_names_path:
        items, tags, _ = read_hetrec_tags(tags_path, tag_names_path, min_weight=min_weight)
    else:
        items, tags, _ = read_tags(tags_path, min_weight=min_weight)
    if not items:
        raise DcueError(f"{tags_path} has no tag with weight >= {min_weight:g}: lower --min-weight or check the file.")
    if id_map_path:
        items, n_mapped = at.map_track_ids(items, read_id_map(id_map_path))
        log.info(f"{id_map_path}: {n_mapped:,} of {len(items):,} tag rows mapped from track ids to song ids.")
    tagged = set(items)
    for emb in embeddings:
        if not any(item in tagged for item in emb.item_ids):
            raise DcueError(
                f"no item of {tags_path} has a vector in {emb.path}: their ids differ (e.g. {items[0]!r} "
                f"in the tags, {emb.item_ids[0]!r} in the vectors); key both by the same ids "
                "(--id-map unique_tracks.txt maps MSD track ids to song ids)."
            )
    vector_items = at.common_items(embeddings)
    if len(embeddings) > 1:
        log.info(f"{len(vector_items):,} items have a vector in all {len(embeddings)} files: "
                 "the models are compared on those.")
    splits = read_splits(splits_path) if splits_path else None
    data = at.prepare_dataset(items, tags, vector_items, splits=splits, top=top, fractions=fractions, seed=seed,
                              tags_name=str(tags_path), splits_name=str(splits_path))
    _report_exclusions(data, tags_path, splits_path, len(embeddings), top)
    for name in ("train", "valid", "test"):
        if data.stats[name] == 0:
            raise DcueError(
                f"no {name} item among the {data.stats['items']:,} items with vectors and tags"
                + (f" in {splits_path}: every split needs items with tags and vectors (a `dcue wmf --fit-on "
                   "train` file has none for valid and test songs); or leave --splits out for a random split."
                   if splits_path else
                   ": too few items for --split; give more tagged items or other proportions.")
            )

    config = at.TaggerConfig(hidden=hidden, dropout=dropout, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                             batch_size=batch_size, epochs=epochs, patience=patience, monitor=monitor, seed=seed,
                             device=device, threads=threads)
    log.info(f"Training a tagger per file on {device}: {len(data.tags)} tags, hidden {','.join(map(str, hidden))}.")
    results = []
    for emb, name in zip(embeddings, at.row_names(embeddings)):
        result = at.evaluate(emb, data, config, name=name)
        log.info(f"{name}: AUC {result.auc:.4f}, mAP {result.mean_ap:.4f} "
                 f"(best epoch {result.best_epoch} of {result.epochs_run}).")
        results.append(result)

    if per_tag_path:
        from dcue_cli.io.atomic import open_text_output

        with open_text_output(per_tag_path) as out:
            for row in at.per_tag_rows(results, data.tags):
                out.write("\t".join(row) + "\n")
    if predict_path:
        _write_predictions(predict_path, embeddings[0], results[0], data.tags, predict_top)

    table = at.format_table(results, data)
    stdout_busy = as_json or predict_path == "-"
    click.echo(table, err=stdout_busy)
    if as_json:
        click.echo(json.dumps({
            "labels": {**data.stats, "tags": data.tags},
            "settings": {"top": top, "min_weight": min_weight, "hidden": list(hidden), "dropout": dropout,
                         "optimizer": optimizer, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
                         "epochs": epochs, "patience": patience, "monitor": monitor, "seed": seed,
                         "device": device},
            "models": [r.to_json(data.tags) for r in results],
        }, indent=2))


def _read_checked(read_embeddings, path):
    """Read an embeddings file and refuse vectors with NaN or infinity."""
    import numpy as np

    emb = read_embeddings(path)
    bad = ~np.isfinite(emb.item_vectors).all(axis=1)
    if bad.any():
        raise DcueError(
            f"{path}: {int(bad.sum()):,} item vectors hold NaN or infinity (e.g. item "
            f"{emb.item_ids[np.flatnonzero(bad)[0]]!r}): write the file again (a diverged run gives such vectors)."
        )
    return emb


def _report_exclusions(data, tags_path, splits_path, n_files, top):
    s = data.stats
    where = "the embeddings file" if n_files == 1 else "every embeddings file"
    if s["tagged_items_without_vector"]:
        log.info(f"{tags_path}: {s['tag_rows_without_vector']:,} tag rows for "
                 f"{s['tagged_items_without_vector']:,} items without a vector in {where}: left out.")
    if s.get("tagged_items_without_split"):
        log.warning(f"{s['tagged_items_without_split']:,} items with vectors and tags have no split in "
                    f"{splits_path}: left out.")
    if s["items_without_top_tags"]:
        log.info(f"{s['items_without_top_tags']:,} items have none of the top {len(data.tags)} tags: left out.")
    if len(data.tags) < top:
        log.info(f"Only {len(data.tags)} distinct tags among these items (--top {top}): all of them are used.")
    log.info(f"{s['items']:,} items with vectors and tags: train {s['train']:,}, valid {s['valid']:,}, "
             f"test {s['test']:,} ({'random split' if splits_path is None else splits_path}).")


def _write_predictions(path, emb, result, tags, k):
    from dcue_cli.autotag import top_predictions
    from dcue_cli.io.atomic import open_text_output

    probabilities = result.tagger.predict(emb.item_vectors)
    with open_text_output(path) as out:
        for item, tag, p in top_predictions(emb.item_ids, probabilities, tags, k):
            out.write(f"{item}\t{tag}\t{p:.4f}\n")
    if path != "-":
        log.info(f"Wrote the top {k or len(tags)} predicted tags of {len(emb.item_ids):,} items to {path}.")

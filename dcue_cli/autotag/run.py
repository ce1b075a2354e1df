"""`run_autotag`: everything `dcue autotag` does past option parsing, with every check.

Read the embeddings (refusing NaN or infinite vectors) and the tags (any form of
`dcue_cli.io.tags`, mapped through an MSD id map if given), check that they share items,
label the items, train and measure one tagger per file, write the per-tag TSV and the
predictions, and return a report the command prints.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from dcue_cli import log
from dcue_cli.autotag.dataset import (
    DEFAULT_FRACTIONS,
    TagDataset,
    common_items,
    map_track_ids,
    prepare_dataset,
)
from dcue_cli.autotag.report import (
    TagResult,
    evaluate_embeddings,
    per_tag_rows,
    tag_table,
    top_predictions,
)
from dcue_cli.autotag.tagger import TaggerConfig
from dcue_cli.errors import DcueError
from dcue_cli.evaluate.report import unique_names
from dcue_cli.io.splits import SPLITS


@dataclass
class AutotagReport:
    """What a run found: the labels, one result per embeddings file, and the settings used."""

    data: TagDataset
    results: list[TagResult]
    settings: dict = field(default_factory=dict)

    @property
    def table(self) -> str:
        return tag_table(self.results, self.data)

    def to_json(self) -> dict:
        return {
            "labels": {**self.data.stats, "tags": self.data.tags},
            "settings": self.settings,
            "models": [r.to_json(self.data.tags) for r in self.results],
        }


def run_autotag(
    emb_paths: Sequence[str],
    tags_path,
    *,
    splits_path=None,
    fractions=DEFAULT_FRACTIONS,
    id_map_path=None,
    tag_names_path=None,
    top: int = 50,
    min_weight: float = 0.0,
    config: TaggerConfig | None = None,
    per_tag_path=None,
    predict_path=None,
    predict_top: int = 10,
) -> AutotagReport:
    """Train and measure a tagger on each embeddings file's vectors (`config.device` may be
    'auto'); write `per_tag_path` and `predict_path` (the first file's predictions) if given."""
    from dcue_cli.io.atomic import (
        check_output_path,
        refuse_inputs_as_outputs,
        refuse_replacing_binary,
    )
    from dcue_cli.runtime import torch_device

    config = config or TaggerConfig()
    config = replace(config, device=str(torch_device(config.device)))
    for path, what in ((per_tag_path, "--per-tag TSV"), (predict_path, "--predict TSV")):
        if path:
            check_output_path(path, what)  # before the training, not after
    refuse_inputs_as_outputs({"--per-tag": per_tag_path, "--predict": predict_path},
                             {"EMB": list(emb_paths), "TAGS": tags_path, "--splits": splits_path,
                              "--id-map": id_map_path, "--tag-names": tag_names_path})
    refuse_replacing_binary(per_tag_path, predict_path)
    embeddings = [read_finite_embeddings(p) for p in emb_paths]
    items, tags = read_tag_rows(tags_path, tag_names_path=tag_names_path, id_map_path=id_map_path,
                                min_weight=min_weight)
    check_shared_items(embeddings, items, tags_path)
    data = label_items(embeddings, items, tags, splits_path=splits_path, top=top, fractions=fractions,
                       seed=config.seed, tags_path=tags_path)

    log.info(f"Training a tagger per file on {config.device}: {len(data.tags)} tags, "
             f"hidden {','.join(map(str, config.hidden))}.")
    results = []
    for emb, name in zip(embeddings, unique_names([e.name for e in embeddings], [e.path for e in embeddings])):
        result = evaluate_embeddings(emb, data, config, name=name)
        log.info(f"{name}: AUC {result.auc:.4f}, mAP {result.mean_ap:.4f} "
                 f"(best epoch {result.best_epoch} of {result.epochs_run}).")
        results.append(result)

    if per_tag_path:
        from dcue_cli.io.atomic import open_text_output

        with open_text_output(per_tag_path) as out:
            for row in per_tag_rows(results, data.tags):
                out.write("\t".join(row) + "\n")
    if predict_path:
        write_predictions(predict_path, embeddings[0], results[0], data.tags, predict_top)
    settings = {"top": top, "min_weight": min_weight, "hidden": list(config.hidden), "dropout": config.dropout,
                "optimizer": config.optimizer, "lr": config.lr, "weight_decay": config.weight_decay,
                "batch_size": config.batch_size, "epochs": config.epochs, "patience": config.patience,
                "monitor": config.monitor, "seed": config.seed, "device": config.device}
    return AutotagReport(data, results, settings)


def read_finite_embeddings(path):
    """Read an embeddings file and refuse vectors with NaN or infinity."""
    from dcue_cli.io.embeddings import read_embeddings, refuse_non_finite

    emb = read_embeddings(path)
    refuse_non_finite(path, emb.item_vectors, emb.item_ids, "item")
    return emb


def read_tag_rows(tags_path, *, tag_names_path=None, id_map_path=None, min_weight: float = 0.0):
    """The (item, tag) rows that reach `min_weight`, items mapped to song ids through the id map."""
    from dcue_cli.io.idmap import read_id_map

    if not tag_names_path and _is_hetrec(tags_path):
        raise DcueError(f"{tags_path} is HetRec's user_taggedartists (userID, artistID, tagID): give its tag "
                        "names too, with --tag-names tags.dat.")
    items, tags = _read_tags(tags_path, tag_names_path, min_weight)
    if not items:
        if min_weight > 0 and (str(tags_path) == "-" or _read_tags(tags_path, tag_names_path, float("-inf"))[0]):
            raise DcueError(f"{tags_path} has no tag with weight >= {min_weight:g}: lower --min-weight or "
                            "check the file.")
        raise DcueError(f"{tags_path} holds no tags: give a tags TSV of item<TAB>tag[<TAB>weight] lines, the "
                        "MSD lastfm_tags.db, or HetRec's user_taggedartists with --tag-names.")
    if id_map_path:
        items, n_mapped = map_track_ids(items, read_id_map(id_map_path))
        log.info(f"{id_map_path}: {n_mapped:,} of {len(items):,} tag rows mapped from track ids to song ids.")
    return items, tags


def _read_tags(tags_path, tag_names_path, min_weight):
    from dcue_cli.io.tags import read_hetrec_tags, read_tags

    if tag_names_path:
        items, tags, _ = read_hetrec_tags(tags_path, tag_names_path, min_weight=min_weight)
    else:
        items, tags, _ = read_tags(tags_path, min_weight=min_weight)
    return items, tags


def _is_hetrec(tags_path) -> bool:
    """Whether a tags file opens with HetRec's user_taggedartists header (userID, artistID, tagID, ...)."""
    from dcue_cli.io.tags import is_sqlite
    from dcue_cli.io.text import open_text

    if str(tags_path) == "-" or not os.path.isfile(tags_path) or is_sqlite(tags_path):
        return False
    try:
        with open_text(tags_path, encoding="latin-1") as stream:
            first = next((line for line in stream if line.strip()), "")
    except (DcueError, OSError):
        return False  # the reader says what is wrong with it
    return [f.strip().lower() for f in first.split("\t")[:3]] == ["userid", "artistid", "tagid"]


def check_shared_items(embeddings: Sequence, items: Sequence[str], tags_path) -> None:
    """Refuse an embeddings file that has a vector for none of the tagged items."""
    tagged = set(items)
    for emb in embeddings:
        if not any(item in tagged for item in emb.item_ids):
            raise DcueError(
                f"no item of {tags_path} has a vector in {emb.path}: their ids differ (e.g. {items[0]!r} "
                f"in the tags, {emb.item_ids[0]!r} in the vectors); key both by the same ids "
                "(--id-map unique_tracks.txt maps MSD track ids to song ids)."
            )


def label_items(embeddings: Sequence, items, tags, *, splits_path, top: int, fractions, seed: int,
                tags_path) -> TagDataset:
    """The data set over the items every file has a vector for; exclusions logged, every split non-empty."""
    from dcue_cli.io.splits import read_splits

    vector_items = common_items(embeddings)
    if len(embeddings) > 1:
        log.info(f"{len(vector_items):,} items have a vector in all {len(embeddings)} files: "
                 "the models are compared on those.")
    splits = read_splits(splits_path) if splits_path else None
    data = prepare_dataset(items, tags, vector_items, splits=splits, top=top, fractions=fractions, seed=seed,
                           tags_name=str(tags_path), splits_name=str(splits_path))
    _report_exclusions(data, tags_path, splits_path, len(embeddings), top)
    for name in SPLITS:
        if data.stats[name] == 0:
            raise DcueError(
                f"no {name} item among the {data.stats['items']:,} items with vectors and tags"
                + (f" in {splits_path}: every split needs items with tags and vectors (a `dcue wmf --fit-on "
                   "train` file has none for valid and test songs); or leave --splits out for a random split."
                   if splits_path else
                   ": too few items for --split; give more tagged items or other proportions.")
            )
    return data


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


def write_predictions(path, emb, result: TagResult, tags, k: int) -> None:
    """Every item's `k` most probable tags (k 0: all) as a tags TSV, probabilities to 4 decimals."""
    from dcue_cli.io.tags import write_tags

    probabilities = result.tagger.predict(emb.item_vectors)
    write_tags(path, ((item, tag, f"{p:.4f}") for item, tag, p in top_predictions(emb.item_ids, probabilities,
                                                                                  tags, k)))
    if path != "-":
        log.info(f"Wrote the top {k or len(tags)} predicted tags of {len(emb.item_ids):,} items to {path}.")

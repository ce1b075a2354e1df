"""One embeddings file -> one row of the results table, and the table, per-tag rows, JSON and
predictions made from the rows."""

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dcue_cli.autotag.dataset import TagDataset
from dcue_cli.autotag.metrics import per_tag_ap, per_tag_auc
from dcue_cli.autotag.tagger import Tagger, TaggerConfig, train_tagger

# The paper's Table 2 (MSD songs, 50 Last.fm tags), keyed by the embeddings' `source`.
PAPER_AUC = {"wmf": 0.8683, "wmf-regression": 0.7876, "dcue": 0.8450}


@dataclass
class TagResult:
    name: str
    path: str
    source: str
    dim: int
    auc: float  # mean over the evaluated tags
    mean_ap: float
    tag_auc: np.ndarray  # (T,) NaN where left out
    tag_ap: np.ndarray  # (T,)
    train_positives: np.ndarray  # (T,)
    test_positives: np.ndarray  # (T,)
    tags_left_out: list
    best_epoch: int
    epochs_run: int
    best_valid: float  # the monitored valid value (loss or mean AUC) at best_epoch
    tagger: Tagger | None = None

    @property
    def paper_auc(self) -> float | None:
        return PAPER_AUC.get(self.source)

    def to_json(self, tags: Sequence[str]) -> dict:
        clean = lambda v: None if v is None or np.isnan(v) else round(float(v), 6)
        return {
            "name": self.name, "path": self.path, "source": self.source, "dim": self.dim,
            "auc": clean(self.auc), "map": clean(self.mean_ap),
            "tags_evaluated": int(np.isfinite(self.tag_auc).sum()), "tags_left_out": self.tags_left_out,
            "paper_auc": self.paper_auc, "best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
            "best_valid": clean(self.best_valid),
            "per_tag": [{"tag": t, "auc": clean(a), "ap": clean(p), "train_positives": int(n_tr),
                         "test_positives": int(n_te)}
                        for t, a, p, n_tr, n_te in zip(tags, self.tag_auc, self.tag_ap,
                                                       self.train_positives, self.test_positives)],
        }


def vectors_of(emb, items: Sequence[str]) -> np.ndarray:
    """The rows of `emb` for `items` (all present), as float32."""
    index = emb.item_index()
    return emb.item_vectors[[index[item] for item in items]]


def evaluate_embeddings(emb, data: TagDataset, config: TaggerConfig, name: str | None = None) -> TagResult:
    """Train a tagger on `emb`'s vectors of the train items, early-stopped on the valid ones,
    and measure per-tag AUC and AP on the test items."""
    x = vectors_of(emb, data.item_ids)
    train, valid, test = data.mask("train"), data.mask("valid"), data.mask("test")
    tagger = train_tagger(x[train], data.labels[train].astype(np.float32),
                          x[valid], data.labels[valid].astype(np.float32), config)
    scores = tagger.predict(x[test])
    y_test = data.labels[test]
    tag_auc = per_tag_auc(scores, y_test)
    tag_ap = per_tag_ap(scores, y_test)
    defined = np.isfinite(tag_auc)
    tag_ap = np.where(defined, tag_ap, np.nan)  # the same tags in both means
    return TagResult(
        name=name or emb.name, path=emb.path, source=emb.source, dim=int(x.shape[1]),
        auc=float(tag_auc[defined].mean()) if defined.any() else float("nan"),
        mean_ap=float(tag_ap[defined].mean()) if defined.any() else float("nan"),
        tag_auc=tag_auc, tag_ap=tag_ap,
        train_positives=data.labels[train].sum(axis=0), test_positives=y_test.sum(axis=0),
        tags_left_out=[t for t, ok in zip(data.tags, defined) if not ok],
        best_epoch=tagger.best_epoch, epochs_run=tagger.epochs_run, best_valid=tagger.best_valid, tagger=tagger,
    )


def top_predictions(item_ids: Sequence[str], probabilities: np.ndarray, tags: Sequence[str], k: int):
    """Yield (item, tag, probability) for each item's `k` most probable tags (k <= 0: all),
    most probable first."""
    probabilities = np.asarray(probabilities)
    n_tags = probabilities.shape[1]
    k = n_tags if k <= 0 else min(k, n_tags)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    for item, row, ranks in zip(item_ids, probabilities, order):
        for t in ranks:
            yield item, tags[t], float(row[t])


def row_names(embeddings: Sequence) -> list:
    """Each file's model name (its `name` attribute or `source`); the file name is added
    where two files would otherwise share a name."""
    names = [emb.name for emb in embeddings]
    return [f"{n} ({_basename(e.path)})" if names.count(n) > 1 else n for n, e in zip(names, embeddings)]


def _basename(path: str) -> str:
    return os.path.basename(path) or path


def tag_table(results: Sequence[TagResult], data: TagDataset) -> str:
    """The human table, rows = models, like the paper's Table 2."""
    s = data.stats
    lines = [
        (f"Auto-tagging: {s['items']:,} items with one of the top {len(data.tags)} tags "
        f"(train {s['train']:,} / valid {s['valid']:,} / test {s['test']:,}, "
        f"{'random split' if s['split_source'] == 'random' else 'splits file'})"),
    ]
    width = max([len("model")] + [len(r.name) for r in results])
    header = f"{'model':<{width}}  {'dim':>5}  {'AUC':>6}  {'mAP':>6}  {'tags':>5}  {'epoch':>5}  {'paper AUC (MSD)':>15}"
    lines += [header, "-" * len(header)]
    for r in results:
        paper = f"{r.paper_auc:.4f}" if r.paper_auc is not None else "-"
        lines.append(f"{r.name:<{width}}  {r.dim:>5}  {_fmt(r.auc):>6}  {_fmt(r.mean_ap):>6}  "
                     f"{int(np.isfinite(r.tag_auc).sum()):>5}  {r.best_epoch:>5}  {paper:>15}")
    left_out = sorted({t for r in results for t in r.tags_left_out})
    lines.append("AUC: mean over tags of the per-tag ROC-AUC on the test items; mAP: mean average precision "
                 "over the same tags; epoch: the valid-best epoch kept.")
    if left_out:
        lines.append(f"Left out (no positive or no negative among the test items): {len(left_out)} tag(s): "
                     + ", ".join(left_out[:10]) + (" ..." if len(left_out) > 10 else ""))
    if any(r.paper_auc is not None for r in results):
        lines.append("Paper: Lee et al. 2018, Table 2 (MSD songs, 50 Last.fm tags): for reference, not the same data.")
    return "\n".join(lines)


def _fmt(value: float, digits: int = 4) -> str:
    return "nan" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def per_tag_rows(results: Sequence[TagResult], tags: Sequence[str]):
    """Rows for `--per-tag`: model, tag, train_positives, test_positives, auc, ap ('nan' where left out)."""
    yield ("model", "tag", "train_positives", "test_positives", "auc", "ap")
    for r in results:
        for t, tag in enumerate(tags):
            yield (r.name, tag, str(int(r.train_positives[t])), str(int(r.test_positives[t])),
                   _fmt(r.tag_auc[t], 6), _fmt(r.tag_ap[t], 6))

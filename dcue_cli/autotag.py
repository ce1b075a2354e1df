"""Auto-tagging as a probe of item vectors: how much musical meaning do they carry?

The paper's second task (Lee et al. 2018, Table 2): a small network on each model's item
vectors predicts the most used tags; the mean per-tag ROC-AUC on the test items says how
well the vectors encode what listeners call the music. No click in here:

    map_track_ids                     tag rows keyed by MSD track ids -> song ids
    prepare_dataset                   labels (the top tags), the items taking part, splits
    train_tagger                      the MLP, early-stopped on the valid items
    per_tag_auc, per_tag_ap           exact per-tag metrics (ties counted as sklearn does)
    evaluate                          one embeddings file -> one row of the results table
    top_predictions                   (item, tag, probability) rows for `--predict`
"""

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.io.tsv import SPLITS

# The paper's Table 2 (MSD songs, 50 Last.fm tags), keyed by the embeddings' `source`.
PAPER_AUC = {"wmf": 0.8683, "wmf-regression": 0.7876, "dcue": 0.8450}

DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)


# ---------------------------------------------------------------------------------------
# Tag rows
# ---------------------------------------------------------------------------------------

def map_track_ids(items: Sequence[str], id_map: dict):
    """Track ids -> song ids through an MSD id map ({track: (song, artist, title)}).

    Ids that are not track ids of the map are kept as they are (they may be song ids
    already). Returns (mapped list, number of rows mapped).
    """
    mapped, n_mapped = [], 0
    for item in items:
        entry = id_map.get(item)
        if entry is None:
            mapped.append(item)
        else:
            mapped.append(entry[0])
            n_mapped += 1
    return mapped, n_mapped


# ---------------------------------------------------------------------------------------
# Labels and splits
# ---------------------------------------------------------------------------------------

@dataclass
class TagDataset:
    """The items that take part, their labels over the top tags, and their splits."""

    item_ids: np.ndarray  # (N,) object str
    tags: list[str]  # (T,) most used first
    labels: np.ndarray  # (N, T) bool
    split: np.ndarray  # (N,) object: train | valid | test
    stats: dict = field(default_factory=dict)  # what was left out and why, for logs and JSON

    def mask(self, name: str) -> np.ndarray:
        return self.split == name


def common_items(embeddings: Sequence) -> list:
    """The item ids present in every embeddings file, in the first file's order."""
    common = set(embeddings[0].item_ids)
    for emb in embeddings[1:]:
        common &= set(emb.item_ids)
    return [item for item in embeddings[0].item_ids if item in common]


def random_splits(items: Sequence[str], fractions=DEFAULT_FRACTIONS, seed: int = 0) -> dict:
    """A seeded random train/valid/test split of `items` in the given proportions."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    total = float(sum(fractions))
    n_valid = round(len(items) * fractions[1] / total)
    n_test = round(len(items) * fractions[2] / total)
    n_train = len(items) - n_valid - n_test
    names = np.array(["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test, dtype=object)
    return {items[i]: names[rank] for rank, i in enumerate(order)}


def parse_fractions(text: str) -> tuple:
    """'0.7,0.1,0.2' -> (0.7, 0.1, 0.2): three positive train, valid, test proportions."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(v <= 0 for v in values):
        raise ValueError(f"{text!r}: give three positive train,valid,test proportions, e.g. 0.7,0.1,0.2")
    return values


def prepare_dataset(
    tag_items: Sequence[str],
    tag_names: Sequence[str],
    vector_items: Sequence[str],
    *,
    splits: dict | None = None,
    top: int = 50,
    fractions=DEFAULT_FRACTIONS,
    seed: int = 0,
    tags_name: str = "TAGS",
    splits_name: str = "SPLITS",
) -> TagDataset:
    """Labels for the items that have a vector, a split and one of the `top` most used tags.

    tag_items, tag_names: (item, tag) rows already filtered by weight (duplicates allowed).
    vector_items: the items that have a vector (in every embeddings file compared).
    splits: {item: train|valid|test}; items with vectors and tags but no split are left out.
    Without it, a seeded random split in `fractions` over the labelled items.
    The top tags are counted (distinct items per tag, ties by name) among the items that take
    part; items with none of them are left out. Every exclusion is counted in `stats`.
    """
    import pandas as pd

    pairs = pd.DataFrame({"item": pd.Series(tag_items, dtype=object), "tag": pd.Series(tag_names, dtype=object)})
    pairs = pairs.drop_duplicates(ignore_index=True)
    stats = {"tag_rows": len(pairs), "tagged_items": int(pairs["item"].nunique())}

    has_vector = pairs["item"].isin(set(vector_items))
    stats["tag_rows_without_vector"] = int((~has_vector).sum())
    stats["tagged_items_without_vector"] = int(pairs.loc[~has_vector, "item"].nunique())
    pairs = pairs[has_vector]
    if pairs.empty:
        raise DcueError(
            f"no item of {tags_name} has a vector in every embeddings file: compare files that share items, "
            "keyed by the same ids as the tags."
        )
    stats["vector_items"] = len(vector_items)
    stats["vector_items_without_tags"] = len(vector_items) - int(pairs["item"].nunique())

    if splits is not None:
        has_split = pairs["item"].isin(set(splits))
        stats["tagged_items_without_split"] = int(pairs.loc[~has_split, "item"].nunique())
        pairs = pairs[has_split]
        if pairs.empty:
            raise DcueError(
                f"none of the items with tags and vectors is in {splits_name}: "
                "give the splits file of the same subset, or leave --splits out for a random split."
            )

    counts = pairs.groupby("tag")["item"].nunique()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    top_tags = [tag for tag, _ in ranked[:top]]
    stats["distinct_tags"] = len(ranked)
    n_before = int(pairs["item"].nunique())
    pairs = pairs[pairs["tag"].isin(set(top_tags))]

    item_codes, items = pd.factorize(pairs["item"], sort=True)
    tag_index = {tag: t for t, tag in enumerate(top_tags)}
    labels = np.zeros((len(items), len(top_tags)), dtype=bool)
    labels[item_codes, pairs["tag"].map(tag_index).to_numpy()] = True
    items = np.asarray(items, dtype=object)
    stats["items_without_top_tags"] = n_before - len(items)

    if splits is None:
        chosen = random_splits(list(items), fractions, seed)
    else:
        chosen = splits
    split = np.array([chosen[item] for item in items], dtype=object)
    stats["items"] = len(items)
    for name in SPLITS:
        stats[name] = int((split == name).sum())
    stats["split_source"] = "random" if splits is None else "file"
    return TagDataset(items, top_tags, labels, split, stats)


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------

def per_tag_auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC-AUC of each tag (column) over the items (rows); NaN where a tag has no positive
    or no negative. Ties count one half, exactly as sklearn's roc_auc_score."""
    from dcue_cli.metrics import auc_per_user

    return auc_per_user(np.asarray(scores).T, np.asarray(labels, dtype=bool).T)


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Average precision of one ranking, NaN without a positive.

    Tied scores form one threshold (precision and recall taken after the whole tie group),
    which is how sklearn's average_precision_score counts them.
    """
    positives = np.asarray(positives, dtype=bool)
    if not positives.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    ranked = np.asarray(scores, dtype=np.float64)[order]
    hits = positives[order]
    tp = np.cumsum(hits)
    # the last position of each group of tied scores
    ends = np.r_[np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1]
    tp = tp[ends].astype(np.float64)
    precision = tp / (ends + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_tag_ap(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Average precision of each tag (column); NaN where a tag has no positive."""
    labels = np.asarray(labels, dtype=bool)
    return np.array([average_precision(scores[:, t], labels[:, t]) for t in range(labels.shape[1])])


# ---------------------------------------------------------------------------------------
# The network and its training
# ---------------------------------------------------------------------------------------

@dataclass
class TaggerConfig:
    hidden: tuple = (512, 512)
    dropout: float = 0.0
    optimizer: str = "adam"  # adam | sgd (Nesterov momentum 0.9)
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 200
    patience: int = 10
    monitor: str = "loss"  # valid BCE (lower is better) or valid mean per-tag AUC
    seed: int = 0
    device: str = "cpu"
    threads: int = 1  # CPU threads for torch: the network is small, and one thread is fastest


def build_mlp(in_dim: int, n_tags: int, hidden=(512, 512), dropout: float = 0.0):
    """Linear -> BatchNorm -> ReLU (-> Dropout) per hidden layer, then a linear layer of
    logits, one per tag (the sigmoid lives in the loss: BCE with logits)."""
    from torch import nn

    layers, width = [], in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, n_tags))
    return nn.Sequential(*layers)


@dataclass
class Tagger:
    """A trained tagger: the network (best valid epoch) and the input standardisation."""

    model: object
    mean: np.ndarray
    std: np.ndarray
    device: str
    threads: int
    best_epoch: int
    epochs_run: int
    best_valid: float
    history: list  # per epoch: (train loss, valid loss, valid AUC)

    def predict(self, vectors: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """Tag probabilities (N, T) float32 for raw item vectors (N, d)."""
        import torch

        self.model.eval()
        out = []
        with torch.no_grad(), torch_threads(self.threads):
            for start in range(0, len(vectors), chunk):
                x = (np.asarray(vectors[start:start + chunk], dtype=np.float32) - self.mean) / self.std
                logits = self.model(torch.from_numpy(x).to(self.device))
                out.append(torch.sigmoid(logits).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model[-1].out_features), np.float32)


def standardiser(x_train: np.ndarray):
    """Per-dimension mean and std of the training vectors (std 0 -> 1)."""
    mean = x_train.mean(axis=0).astype(np.float32)
    std = x_train.std(axis=0).astype(np.float32)
    std[std == 0] = 1.0
    return mean, std


def _batches(n: int, batch_size: int, generator):
    """A seeded shuffle cut into max(1, n // batch_size) near-equal batches: every batch holds
    at least two items whenever n >= 2, which batch norm needs in training mode."""
    import torch

    order = torch.randperm(n, generator=generator)
    return torch.tensor_split(order, max(1, n // batch_size))


@contextlib.contextmanager
def torch_threads(n: int):
    """Run torch's CPU ops on `n` threads, restoring the previous count afterwards.

    A small MLP's ops last microseconds: splitting them over threads costs more than it
    saves, and on a loaded machine each op then waits for a descheduled thread (measured
    here: 40x slower with 2 threads than with 1 under a load of 6 on 2 cores).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_tagger(x_train, y_train, x_valid, y_valid, config: TaggerConfig) -> Tagger:
    """Fit the MLP on the training items; keep the epoch best on the valid items and stop
    after `patience` epochs without improvement (or at `epochs`)."""
    with torch_threads(config.threads):
        return _train_tagger(x_train, y_train, x_valid, y_valid, config)


def _train_tagger(x_train, y_train, x_valid, y_valid, config: TaggerConfig) -> Tagger:
    import copy

    import torch
    from torch import nn

    if len(x_train) < 2:
        raise DcueError(f"only {len(x_train)} training item(s) with tags: the tagger needs at least 2.")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = config.device
    mean, std = standardiser(x_train)
    to = lambda a, dtype=torch.float32: torch.as_tensor(np.asarray(a), dtype=dtype).to(device)
    xt, yt = to((x_train - mean) / std), to(y_train)
    xv, yv = to((x_valid - mean) / std), to(y_valid)

    model = build_mlp(x_train.shape[1], y_train.shape[1], config.hidden, config.dropout).to(device)
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                              weight_decay=config.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    has_valid_auc = _any_defined(y_valid)
    monitor = config.monitor
    if monitor == "auc" and not has_valid_auc:
        log.warning("no tag has both a positive and a negative among the valid items: early stopping "
                    "watches the valid loss instead of the AUC.")
        monitor = "loss"

    best, best_state, best_epoch, history = None, None, 0, []
    bar = log.progress(range(1, config.epochs + 1), desc="autotag epochs", unit="epoch")
    for epoch in bar:
        model.train()
        total = 0.0
        for idx in _batches(len(xt), config.batch_size, generator):
            idx = idx.to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        logits = _eval_logits(model, xv)
        valid_loss = float(loss_fn(logits, yv))
        valid_auc = float(np.nanmean(per_tag_auc(logits.float().cpu().numpy(), y_valid))) \
            if has_valid_auc else float("nan")
        history.append((total / len(xt), valid_loss, valid_auc))
        value = valid_auc if monitor == "auc" else valid_loss
        if best is None or (value > best if monitor == "auc" else value < best):
            best, best_epoch = value, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(valid_loss=f"{valid_loss:.4f}", valid_auc=f"{valid_auc:.4f}", refresh=False)
    model.load_state_dict(best_state)
    model.eval()
    return Tagger(model, mean, std, device, config.threads, best_epoch, len(history), float(best), history)


def _eval_logits(model, x, chunk: int = 65536):
    """The model's logits for x in eval mode, a chunk at a time (bounded memory)."""
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[start:start + chunk]) for start in range(0, len(x), chunk)])


def _any_defined(labels: np.ndarray) -> bool:
    """Whether some tag has both a positive and a negative among these items."""
    pos = labels.sum(axis=0)
    return bool(((pos > 0) & (pos < len(labels))).any())


# ---------------------------------------------------------------------------------------
# One embeddings file -> one row of the table
# ---------------------------------------------------------------------------------------

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


def item_vectors(emb, items: Sequence[str]) -> np.ndarray:
    """The rows of `emb` for `items` (all present), as float32."""
    index = emb.item_index()
    return emb.item_vectors[[index[item] for item in items]]


def evaluate(emb, data: TagDataset, config: TaggerConfig, name: str | None = None) -> TagResult:
    """Train a tagger on `emb`'s vectors of the train items, early-stopped on the valid ones,
    and measure per-tag AUC and AP on the test items."""
    x = item_vectors(emb, data.item_ids)
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


# ---------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------

def row_names(embeddings: Sequence) -> list:
    """Each file's model name (its `name` attribute or `source`); the file name is added
    where two files would otherwise share a name."""
    names = [emb.name for emb in embeddings]
    return [f"{n} ({_basename(e.path)})" if names.count(n) > 1 else n for n, e in zip(names, embeddings)]


def _basename(path: str) -> str:
    import os

    return os.path.basename(path) or path


def format_table(results: Sequence[TagResult], data: TagDataset) -> str:
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

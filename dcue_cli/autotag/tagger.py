"""The tagger: an MLP on standardised item vectors, one sigmoid output per tag, trained with
BCE and early-stopped on the valid items (the epoch best on them is kept)."""

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from dcue_cli import log
from dcue_cli.autotag.metrics import per_tag_auc
from dcue_cli.errors import DcueError


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

    from dcue_cli.runtime import check_network_memory

    if len(x_train) < 2:
        raise DcueError(f"only {len(x_train)} training item(s) with tags: the tagger needs at least 2.")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = config.device
    mean, std = standardiser(x_train)
    to = lambda a, dtype=torch.float32: torch.as_tensor(np.asarray(a), dtype=dtype).to(device)
    xt, yt = to((x_train - mean) / std), to(y_train)
    xv, yv = to((x_valid - mean) / std), to(y_valid)

    check_network_memory(lambda: build_mlp(x_train.shape[1], y_train.shape[1], config.hidden, config.dropout),
                         "lower --hidden")
    model = build_mlp(x_train.shape[1], y_train.shape[1], config.hidden, config.dropout).to(device)
    opt = _optimizer(model, config)
    loss_fn = nn.BCEWithLogitsLoss()
    has_valid_auc = _any_defined(y_valid)
    monitor = _monitor(config.monitor, has_valid_auc)

    best, best_state, best_epoch, history = None, None, 0, []
    bar = log.progress(range(1, config.epochs + 1), desc="autotag epochs", unit="epoch")
    for epoch in bar:
        train_loss = _train_epoch(model, opt, loss_fn, xt, yt, config.batch_size, generator, device)
        logits = _eval_logits(model, xv)
        valid_loss = float(loss_fn(logits, yv))
        _refuse_divergence(train_loss, valid_loss, logits, epoch, config)
        valid_auc = float(np.nanmean(per_tag_auc(logits.float().cpu().numpy(), y_valid))) \
            if has_valid_auc else float("nan")
        history.append((train_loss, valid_loss, valid_auc))
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


def _refuse_divergence(train_loss: float, valid_loss: float, logits, epoch: int, config: TaggerConfig) -> None:
    """One line that says what to change when a fit gives non-finite losses or scores."""
    import torch

    if math.isfinite(train_loss) and math.isfinite(valid_loss) and bool(torch.isfinite(logits).all()):
        return
    raise DcueError(f"the tagger diverged in epoch {epoch} (non-finite loss or scores): lower --lr (it is "
                    f"{config.lr:g}).")


def _optimizer(model, config: TaggerConfig):
    """Adam, or SGD with Nesterov momentum 0.9."""
    import torch

    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _monitor(monitor: str, has_valid_auc: bool) -> str:
    """What early stopping watches: the valid AUC when asked and defined, else the valid loss."""
    if monitor == "auc" and not has_valid_auc:
        log.warning("no tag has both a positive and a negative among the valid items: early stopping "
                    "watches the valid loss instead of the AUC.")
        return "loss"
    return monitor


def _train_epoch(model, opt, loss_fn, xt, yt, batch_size: int, generator, device) -> float:
    """One pass over the training items in seeded batches: the mean training loss."""
    model.train()
    total = 0.0
    for idx in _batches(len(xt), batch_size, generator):
        idx = idx.to(device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
    return total / len(xt)


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

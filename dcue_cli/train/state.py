"""The training state as a checkpoint dict (see `dcue_cli.io.checkpoints`), and back.

`checkpoint_state` gathers what a resumed run needs to draw exactly the batches the
interrupted one would have drawn: weights, optimiser, position, best-so-far and the random
generators' states; `restore` puts a loaded one back into a Trainer.
"""

import math

from dcue_cli import __version__, log
from dcue_cli.io.checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, load_weights


def checkpoint_state(trainer, *, epoch: int, step_in_epoch: int) -> dict:
    """Everything `--resume` and `embed` read (plain values and tensors: weights_only-loadable)."""
    import torch

    t = trainer
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "dcue_version": __version__,
        "objective": t.cfg.objective,
        "similarity": "dot" if t.cfg.objective == "regress" else "cosine",
        "source": "wmf-regression" if t.cfg.objective == "regress" else "dcue",
        "model_config": t.model_cfg.to_dict(),
        "train_config": t.cfg.to_dict(),
        "feature_config": dict(t.feature_config),
        "normalisation": t.normaliser.to_dict(),
        "model": {k: v.detach().cpu() for k, v in t.model.state_dict().items()},
        "optimizer": t.optimizer.state_dict(),
        "position": {"epoch": int(epoch), "step_in_epoch": int(step_in_epoch),
                     "global_step": int(t.global_step), "lr_scale": float(t.lr_scale)},
        "best": {"auc": None if not math.isfinite(t.best_auc) else float(t.best_auc),
                 "epoch": int(t.best_epoch), "bad_epochs": int(t.bad_epochs),
                 "plateau_epochs": int(t.plateau_epochs)},
        "user_ids": [str(u) for u in t.data.user_ids],
        "data": t.data.fingerprint(),
        "target": dict(t.target_meta),
        "rng": rng_state(t.device),
    }
    if t.artist_vocab is not None:  # artist k + 1 of the item tower's artist embedding (0: unknown)
        state["artist_vocab"] = [str(a) for a in t.artist_vocab]
    if t.user_vectors_for_embed is not None:
        state["user_vectors"] = torch.as_tensor(t.user_vectors_for_embed)
        state["target_scale"] = float(t.target_scale)
    return state


def restore(trainer, ckpt: dict, path) -> None:
    """Weights, optimiser, position, best-so-far and random state of a loaded checkpoint."""
    t = trainer
    load_weights(t.model, ckpt["model"], path)
    load_weights(t.optimizer, ckpt["optimizer"], path, "optimizer state")
    pos = ckpt["position"]
    t.epoch, t.step_in_epoch, t.global_step = pos["epoch"], pos["step_in_epoch"], pos["global_step"]
    best = ckpt["best"]
    t.best_auc = float(best["auc"]) if best["auc"] is not None else float("-inf")
    t.best_epoch, t.bad_epochs = int(best["epoch"]), int(best["bad_epochs"])
    t.lr_scale = float(pos.get("lr_scale", 1.0))
    t.plateau_epochs = int(best.get("plateau_epochs", 0))
    set_rng_state(ckpt.get("rng", {}), t.device)
    if t.master:
        log.info("resuming %s at epoch %d, step %d", path, t.epoch + 1, t.step_in_epoch)


def rng_state(device) -> dict:
    import random

    import torch

    state = {"torch": torch.get_rng_state(), "python": _python_state(random.getstate())}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _python_state(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(state: dict, device) -> None:
    import random

    import torch

    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)

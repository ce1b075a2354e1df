"""One batch's loss for each objective: hinge (the paper), sampled softmax, or regression.

Pure: tensors in, a scalar tensor out. The pairs' negatives are a shared pool, per-pair
negatives, or (song-grouped batches) the pool plus the batch's other songs; masks say which
entries are real negatives (not songs the user played).
"""

import contextlib


def batch_loss(forward, batch, cfg, autocast=None):
    """The mean loss of one batch through `forward` (the model, or DDP/compile around it)."""

    from dcue_cli.model import regression_loss

    ctx = autocast() if autocast else contextlib.nullcontext()
    with ctx:
        if cfg.objective == "regress":
            pred = forward(batch.crops)
            return (regression_loss(pred, batch.targets) * batch.weights).mean()
        crops = batch.crops.reshape(-1, *batch.crops.shape[-2:])
        if batch.artists is None:
            users, items = forward(crops, batch.users)
        else:
            users, items = forward(crops, batch.users, batch.artists.reshape(-1))
    return ranking_loss(users, items, batch, cfg)


def ranking_loss(users, items, batch, cfg):
    """The mean hinge or softmax loss of a batch's user and item vectors (any towers: audio or index)."""
    from dcue_cli.model import hinge_loss, softmax_loss

    pos, neg, mask = pair_scores(users.float(), items.float(), batch, cfg.shared_negatives)
    if cfg.objective == "hinge":
        per_pair = hinge_loss(pos, neg, cfg.margin, mask)
        if mask is not None:
            # a pool or the batch gives a varying number of negatives per pair: scale the sum
            # to --negatives terms, so the loss (and the learning rate) means the same in every mode
            per_pair = per_pair * (cfg.negatives / mask.sum(dim=1).clamp(min=1))
    else:
        per_pair = softmax_loss(pos, neg, cfg.temperature, mask)
    return (per_pair * batch.weights).mean()


def pair_scores(users, items, batch, shared_negatives: bool):
    """(positive cosine per pair, negative cosines per pair, mask of real negatives or None)."""
    import torch

    from dcue_cli.model import cosine, cosine_all

    b = len(batch.users)
    if batch.pos_index is not None:  # song-grouped: S song crops, then the pool
        n_songs = len(items) - batch.neg_mask.shape[1]  # shapes only: no wait on the device
        song_vec, pool = items[:n_songs], items[n_songs:]
        pos = cosine(users, song_vec[batch.pos_index].unsqueeze(1))[:, 0]
        neg = cosine_all(users, pool)
        mask = batch.neg_mask.float()
        if batch.batch_neg_mask is not None:  # the batch's songs this user did not play
            inb = cosine_all(users, song_vec)
            neg = torch.cat([neg, inb], 1)
            mask = torch.cat([mask, batch.batch_neg_mask.float()], 1)
        pos_vec = None
    elif shared_negatives:
        pos_vec, pool = items[:b], items[b:]
        pos = cosine(users, pos_vec.unsqueeze(1))[:, 0]
        neg = cosine_all(users, pool)
        mask = batch.neg_mask.float()
    else:
        items = items.view(b, -1, items.shape[-1])
        scores = cosine(users, items)
        pos, neg, mask = scores[:, 0], scores[:, 1:], None
        pos_vec = items[:, 0]
    if batch.batch_neg_mask is not None and pos_vec is not None:
        # the batch's other positives join the negatives (not the pair itself, nor songs the user played)
        inb = cosine_all(users, pos_vec)
        inb_mask = (batch.batch_neg_mask & ~torch.eye(b, dtype=torch.bool, device=inb.device)).float()
        if mask is None:
            mask = torch.ones_like(neg)
        neg, mask = torch.cat([neg, inb], 1), torch.cat([mask, inb_mask], 1)
    return pos, neg, mask


def refuse_divergence(loss: float, cfg, where: str, model=None) -> None:
    """A DcueError that says what to change when the loss (or, given `model`, a weight) is not
    finite: nothing is saved after it, so the checkpoints of the last good epoch are kept."""
    import math

    import torch

    finite = math.isfinite(loss) and (model is None or all(
        bool(torch.isfinite(p).all()) for p in model.parameters()))
    if finite:
        return
    from dcue_cli.errors import DcueError

    change = f"lower --lr (it is {cfg.lr:g})"
    if cfg.objective == "softmax":
        change += f" or raise --temperature (it is {cfg.temperature:g})"
    raise DcueError(f"training diverged {where} (the loss is {loss:g}, not a finite number): {change}; "
                    "no non-finite model was saved.")

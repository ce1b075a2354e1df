"""The learning rate at each step: a pure function of the settings and the step.

- keras: lr / (1 + decay × step), the authors' Keras SGD (the paper's setting);
- cosine: a linear warm-up over `warmup_steps`, then half a cosine from lr down to 0 at the
  run's last step (`epochs × steps per epoch`), so the last epochs average out the noise of
  the crops instead of ending at the full rate.

Both are multiplied by the plateau scale (`--plateau-factor`), which the loop keeps.
"""

import math

SCHEDULES = ("keras", "cosine")


def learning_rate(cfg, step: int, total_steps: int, scale: float = 1.0) -> float:
    """The rate for optimiser step `step` (0-based) of a run of `total_steps` steps."""
    if cfg.schedule == "cosine":
        warmup = min(max(0, int(cfg.warmup_steps)), max(0, total_steps - 1))
        if step < warmup:
            return cfg.lr * scale * (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return cfg.lr * scale * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * scale / (1.0 + cfg.lr_decay * step)

"""Named training recipes: `dcue train --preset NAME` starts from these settings.

A preset only changes defaults: an option given on the command line still wins. Keys are
`TrainConfig` and `ModelConfig` field names.

- default: what `dcue train` does with no options (docs/results.md, "Training recipe").
- paper: Lee et al. (2018) as published: batches of 10 positive pairs, 20 negatives drawn for
  every pair (21 crops a pair through the audio network), no in-batch negatives, the hinge
  with margin 0.2 on the cosine, Nesterov SGD at 0.05 with Keras' 1e-6 decay, and the paper's
  1-D CNN (with batch norm, without which the cosine training stalls: docs/design.md).
"""

PAPER = {
    "objective": "hinge", "margin": 0.2, "negatives": 20, "negative_sampling": "uniform",
    "shared_negatives": False, "in_batch_negatives": False, "listeners_per_song": 1,
    "batch_size": 10, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "lr_decay": 1e-6,
    "schedule": "keras", "warmup_steps": 0, "weight_decay": 0.0, "plateau_factor": 1.0,
    "steps_per_epoch": 0, "epochs": 30,
    "conv_channels": (128, 256, 256, 256, 256), "conv_kernels": (4, 4, 4, 2, 1),
    "pool_sizes": (4, 4, 4, 2, 1), "pooling": "mean", "stem_channels": (), "embed_dim": 256, "crop_frames": 130,
}

PRESETS = {"default": {}, "paper": PAPER}

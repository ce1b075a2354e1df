"""What an item tower can hear: the audio network trained directly onto each song's true style.

On a set with a truth file (synth's truth.h5, or real_listeners.py's descriptors) the audio
network (`dcue_cli.model.AudioNet`, the sizes of `dcue train`) is trained to regress the
standardised true style of the training songs from random crops, then R² per style dimension is
measured on the valid and test songs (a song's prediction is the mean over its non-overlapping
crops, as `embed` does). It is a fast proxy for a front end's hearing, minutes instead of a
full cold-start run; confirm a gain on the cold-start AUC (`dcue score`) before trusting it.

    python benchmarks/hearing_proxy.py demo-out/mels.h5 demo-out/data/truth.h5 demo-out/subset/splits.tsv \\
        --steps 600 --optimizer adamw

Measured on the demo set (600 steps of 64 crops, 2 CPU cores; docs/results.md): the paper's
network reaches R² 0.77 tempo, 0.93 register, 0.90 brightness, 0.94 percussiveness, 0.74
density, 0.83 timbre, 0.73 modulation (mode cannot be heard) with AdamW and a one-cycle
schedule; the same network trained by `dcue train --objective regress --target truth.h5` with
the authors' SGD (30 x 30 steps of 128 crops) reached 0.65, 0.91, 0.81, 0.93, 0.53, 0.47, 0.34.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mels")
    p.add_argument("truth", help="embeddings file whose item vectors are the true styles")
    p.add_argument("splits")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=64, help="crops per step")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--crop-frames", type=int, default=130)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW's peak rate (one-cycle schedule)")
    p.add_argument("--stem-channels", default="", help="the 2-D front end of `dcue train --stem-channels`, e.g. 16,16")
    p.add_argument("--pooling", choices=["mean", "meanstd"], default="mean", help="as `dcue train --pooling`")
    p.add_argument("--pool-sizes", default="4,4,4,2,1", help="as `dcue train --pool-sizes`")
    args = p.parse_args()

    import torch
    from torch.nn import functional as F

    from dcue_cli.io.embeddings import read_embeddings
    from dcue_cli.io.mels import MelsFile
    from dcue_cli.io.splits import read_splits
    from dcue_cli.model import AudioNet, ModelConfig, keras_init_

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    with MelsFile(args.mels) as mels:
        frames = torch.from_numpy(mels.read_all().astype(np.float32))
        offsets, lengths, ids = mels.offsets, mels.lengths, list(mels.ids)
        mean, std = mels.normalisation() or (np.zeros(1, np.float32), np.ones(1, np.float32))
    frames = (frames - torch.from_numpy(mean)) / torch.from_numpy(std)
    truth = read_embeddings(args.truth)
    style_of = dict(zip(truth.item_ids, truth.item_vectors))
    split = read_splits(args.splits)
    keep = [k for k, i in enumerate(ids) if i in style_of and i in split]
    y = np.stack([style_of[ids[k]] for k in keep]).astype(np.float32)
    y = torch.from_numpy((y - y.mean(0)) / y.std(0))
    row = {k: r for r, k in enumerate(keep)}
    train = np.array([k for k in keep if split[ids[k]] == "train"])
    held = np.array([k for k in keep if split[ids[k]] in ("valid", "test")])
    crop = args.crop_frames

    def crops(items, starts):
        idx = torch.from_numpy((offsets[items] + starts)[:, None] + np.arange(crop)[None])
        return frames[idx]

    sizes = lambda text: tuple(int(v) for v in text.split(",") if v)
    net = AudioNet(ModelConfig(n_mels=frames.shape[1], crop_frames=crop, embed_dim=y.shape[1],
                               stem_channels=sizes(args.stem_channels), pooling=args.pooling,
                               pool_sizes=sizes(args.pool_sizes)))
    keras_init_(net)
    if args.optimizer == "adamw":
        opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.1)
    else:
        opt = torch.optim.SGD(net.parameters(), 0.05, momentum=0.9, nesterov=True)
        sched = None
    start = time.perf_counter()
    for _ in range(args.steps):
        items = rng.choice(train, args.batch)
        starts = np.array([rng.integers(0, max(1, lengths[i] - crop + 1)) for i in items])
        loss = F.mse_loss(net(crops(items, starts)), y[[row[i] for i in items]])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    seconds = time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        pred = torch.stack([net(crops(np.full(max(1, lengths[i] // crop), i),
                                      np.arange(max(1, lengths[i] // crop)) * crop)).mean(0) for i in held]).numpy()
    target = y[[row[i] for i in held]].numpy()
    r2 = 1 - ((pred - target) ** 2).mean(0) / target.var(0)
    names = str(truth.attrs.get("style_dims", "")).split(",")
    names = names if len(names) == len(r2) else [f"dim{k}" for k in range(len(r2))]
    print(f"{args.steps} steps of {args.batch} crops ({args.optimizer}), {seconds / args.steps:.3f} s a step; "
          f"R² on {len(held)} valid and test songs:")
    print("  " + "  ".join(f"{n} {v:.2f}" for n, v in zip(names, r2)))


if __name__ == "__main__":
    main()

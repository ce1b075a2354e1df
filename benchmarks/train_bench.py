"""`dcue train` throughput: the real training loop's crops/s beside the compute-only ceiling.

Builds (once, cached in --workdir) an MSD-shaped mels file, 10,000 items x 1,291 frames x 128
bins float16 (30 s clips; 3.3 GB), with 20,000 users' plays (log-normal activity, Zipf song
popularity), then measures in the same run:
  - ceiling: the same model's forward + backward + SGD step on random tensors already on the
    device (no sampling, no gather, no normalisation): what the hardware allows;
  - loop: `dcue train`'s own Trainer.run (negatives and crops drawn on the device from the
    cached mels, normalised, the same step), its second epoch (the first warms up).
Target (issue 5): loop / ceiling >= 0.7 on a GPU, >= 0.8 on a CPU.

    python benchmarks/train_bench.py                            # full MSD shape, default settings
    python benchmarks/train_bench.py --items 1000 --steps 10    # a quick CPU run (smaller file)
    python benchmarks/train_bench.py --device cuda --batch-size 256 --bf16 --compile
    python benchmarks/train_bench.py --per-user-negatives --no-in-batch-negatives   # the paper's 21 crops/pair
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

REFERENCE = {  # issue 5: H200, this architecture, 21 crops per user
    ("cuda", 10, "fp32"): 48_000, ("cuda", 256, "fp32"): 480_000, ("cuda", 256, "bf16"): 550_000,
    ("cuda", 256, "bf16+compile"): 800_000, ("cpu", None, "fp32"): 760,
}


def build_mels(path, items, frames, n_mels, seed=0):
    import h5py

    if os.path.exists(path):
        return
    rng = np.random.default_rng(seed)
    tmp = path + ".tmp"
    chunk_items = max(1, (64 << 20) // (frames * n_mels * 2))
    with h5py.File(tmp, "w") as f:
        f.create_dataset("ids", data=np.array([f"SOBENCH{i:011d}" for i in range(items)], dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("offsets", data=np.arange(items + 1, dtype=np.int64) * frames)
        mel = f.create_dataset("mel", shape=(items * frames, n_mels), dtype=np.float16, chunks=(512, n_mels))
        for a in range(0, items, chunk_items):
            b = min(items, a + chunk_items)
            mel[a * frames:b * frames] = rng.random(((b - a) * frames, n_mels), dtype=np.float32).astype(np.float16)
        f.attrs.update({"sr": 22050, "n_fft": 1024, "hop_length": 512, "n_mels": n_mels,
                        "mean": 0.5, "std": 0.29})
    os.replace(tmp, path)


def make_plays(items, users, seed=0):
    from dcue_cli.io.plays import Plays

    rng = np.random.default_rng(seed)
    per_user = np.clip(rng.lognormal(np.log(40), 0.8, users).astype(int), 5, items // 4)
    pop = 1.0 / np.arange(1, items + 1) ** 0.8
    pop /= pop.sum()
    us, its = [], []
    for u, n in enumerate(per_user):
        chosen = rng.choice(items, size=n, replace=False, p=pop)
        us.append(np.full(n, u, np.int32))
        its.append(chosen.astype(np.int32))
    u, i = np.concatenate(us), np.concatenate(its)
    return Plays(np.array([f"user{k:06d}" for k in range(users)], dtype=object),
                 np.array([f"SOBENCH{k:011d}" for k in range(items)], dtype=object),
                 u, i, rng.geometric(0.3, len(u)).astype(np.int32))


def ceiling(cfg_model, train_cfg, device, steps, warmup):
    """Forward+backward+step of the same model on random on-device tensors: crops/s."""
    import torch

    from dcue_cli.model import DCUE, cosine, cosine_all, hinge_loss
    from dcue_cli.runtime import autocast_factory

    torch.manual_seed(0)
    model = DCUE(cfg_model).to(device)
    forward = torch.compile(model) if train_cfg.compile else model
    opt = torch.optim.SGD(model.parameters(), lr=train_cfg.lr, momentum=0.9, nesterov=True)
    b, k, listeners = train_cfg.batch_size, train_cfg.negatives, train_cfg.listeners_per_song
    songs = -(-b // listeners)  # song-grouped batches: `listeners` pairs per positive crop
    n_crops = songs + k if train_cfg.shared_negatives else b * (1 + k)
    pos_index = torch.arange(songs, device=device).repeat_interleave(listeners)[:b]
    crops = torch.randn(n_crops, cfg_model.crop_frames, cfg_model.n_mels, device=device)
    users = torch.randint(cfg_model.n_users, (b,), device=device)
    autocast = autocast_factory(device, train_cfg.amp)

    def step():
        import contextlib

        with autocast() if autocast else contextlib.nullcontext():
            u, v = forward(crops, users)
        u, v = u.float(), v.float()
        if train_cfg.shared_negatives:
            pos_vec = v[:songs]
            pos = cosine(u, pos_vec[pos_index].unsqueeze(1))[:, 0]
            neg = cosine_all(u, v[songs:])
        else:
            pos_vec = v.view(b, 1 + k, -1)[:, 0]
            s = cosine(u, v.view(b, 1 + k, -1))
            pos, neg = s[:, 0], s[:, 1:]
        if train_cfg.in_batch_negatives:
            neg = torch.cat([neg, cosine_all(u, pos_vec)], 1)
        loss = hinge_loss(pos, neg, 0.2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss.detach())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * n_crops / (time.perf_counter() - t)


def loop(mels, plays, workdir, train_cfg, device_spec, steps, model_overrides=None):
    """The real Trainer.run: two epochs of `steps`, the second timed (from its log row)."""
    from dcue_cli import log
    from dcue_cli.train.loop import Trainer

    log.configure(quiet=True)
    splits = {i: "train" for i in plays.item_ids}  # no validation: the steps alone are timed
    out = os.path.join(workdir, "bench-model.pt")
    train_cfg.epochs, train_cfg.steps_per_epoch, train_cfg.patience = 2, steps, 0
    trainer = Trainer(mels, plays, splits, out, train_cfg, model_overrides or {}, device=device_spec)
    trainer.run()
    trainer.close()
    with open(os.path.join(workdir, "bench-model.log.tsv"), encoding="utf-8") as f:
        rows = f.read().splitlines()
    head = rows[0].split("\t")
    last = dict(zip(head, rows[-1].split("\t")))
    return float(last["crops_per_s"]), trainer.cache_mode, trainer.device


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "dcue-train-bench"))
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--frames", type=int, default=1_291)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--negatives", type=int, default=20)
    p.add_argument("--per-user-negatives", action="store_true", help="the paper's: --negatives songs per pair")
    p.add_argument("--no-in-batch-negatives", action="store_true")
    p.add_argument("--listeners-per-song", type=int, default=1, help="song-grouped batches (dcue train's option)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast on CUDA")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--cache", default="auto")
    p.add_argument("--steps", type=int, default=20, help="timed steps (after as many warm-up steps)")
    p.add_argument("--stem-channels", default="", help="the 2-D front end (dcue train --stem-channels), e.g. 16,16")
    args = p.parse_args()

    import torch

    from dcue_cli.model import ModelConfig
    from dcue_cli.runtime import torch_device as resolve_device
    from dcue_cli.train.config import TrainConfig

    os.makedirs(args.workdir, exist_ok=True)
    mels = os.path.join(args.workdir, f"mels-{args.items}x{args.frames}.h5")
    t = time.perf_counter()
    build_mels(mels, args.items, args.frames, 128)
    plays = make_plays(args.items, args.users)
    build_s = time.perf_counter() - t
    device = resolve_device(args.device)
    cfg = TrainConfig(batch_size=args.batch_size, negatives=args.negatives,
                      shared_negatives=not args.per_user_negatives, in_batch_negatives=not args.no_in_batch_negatives,
                      listeners_per_song=args.listeners_per_song,
                      amp=args.bf16, compile=args.compile, cache=args.cache)
    stem = {"stem_channels": tuple(int(c) for c in args.stem_channels.split(",") if c)}
    model_cfg = ModelConfig(n_users=len(plays.user_ids), **stem)
    warm = max(3, args.steps // 4)

    ceil_before = ceiling(model_cfg, cfg, device, args.steps, warm)
    real, cache_mode, dev = loop(mels, plays, args.workdir, cfg, args.device, args.steps, stem)
    ceil_after = ceiling(model_cfg, cfg, device, args.steps, warm)
    ceil = (ceil_before + ceil_after) / 2

    precision = ("bf16" if args.bf16 and device.type == "cuda" else "fp32") + ("+compile" if args.compile else "")
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    ref = None if args.stem_channels else REFERENCE.get(
        (device.type, args.batch_size if device.type == "cuda" else None, precision))
    songs = -(-args.batch_size // args.listeners_per_song)
    crops_per_pair = (songs + args.negatives) / args.batch_size if cfg.shared_negatives else 1 + args.negatives
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"train_bench: {args.items:,} items x {args.frames:,} frames x 128 (float16), {len(plays):,} plays of "
          f"{args.users:,} users; built in {build_s:.0f} s")
    print(f"device {dev} ({card}), cache {cache_mode}, batch {args.batch_size}, "
          f"{'a shared pool of' if cfg.shared_negatives else 'per pair'} {args.negatives} negatives"
          f"{' + in-batch' if cfg.in_batch_negatives else ''}"
          f"{f', {args.listeners_per_song} listeners a song' if args.listeners_per_song > 1 else ''} "
          f"({crops_per_pair:.2f} crops/pair), {precision}"
          f"{f', 2-D front end {args.stem_channels}' if args.stem_channels else ''}; load average {load:.2f}")
    print(f"{'figure':<34}{'crops/s':>12}{'reference':>14}{'ratio':>8}")
    print(f"{'compute-only ceiling (same run)':<34}{ceil:>12,.0f}{'':>14}{'':>8}")
    print(f"{'  ceiling before / after':<34}{ceil_before:>12,.0f}{ceil_after:>14,.0f}{'':>8}")
    target = 0.7 if device.type == "cuda" else 0.8
    print(f"{'dcue train loop':<34}{real:>12,.0f}{ceil:>14,.0f}{real / ceil:>8.2f}   (target >= {target})")
    print(f"{'  = training pairs/s':<34}{real / crops_per_pair:>12,.0f}   (what an epoch costs: crops/s / crops a pair)")
    if ref:
        print(f"{'ceiling vs issue reference':<34}{ceil:>12,.0f}{ref:>14,.0f}{ceil / ref:>8.2f}   (H200 / 2-core CPU)")


if __name__ == "__main__":
    main()

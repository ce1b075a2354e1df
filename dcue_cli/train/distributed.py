"""Several processes under torchrun (DDP): who is the master, and the few values they agree on.

One process (rank 0) validates, saves and logs; every process draws its own share of each
step's batches (`dcue_cli.train.sampling`), so they need to agree only on when to stop and on
the learning-rate scale after a plateau.
"""

import os
from dataclasses import dataclass


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def master(self) -> bool:
        return self.rank == 0


def init_distributed(device_spec: str) -> Dist:
    """Under torchrun (WORLD_SIZE > 1): join the process group (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device_spec or "auto").lower() != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank)


def broadcast_flag(flag: bool, dist_info: Dist, device) -> bool:
    """The master's decision for everyone (early stopping)."""
    if not dist_info.enabled:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def broadcast_float(value: float, dist_info: Dist, device) -> float:
    """The master's value for everyone (the learning-rate scale after a plateau)."""
    if not dist_info.enabled:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def any_flag(flag: bool, dist_info: Dist, device) -> bool:
    """True when any process raised it (Ctrl-C reaches every process of torchrun, maybe not at once)."""
    if not dist_info.enabled:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())

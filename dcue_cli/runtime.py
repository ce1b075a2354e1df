"""What every stage shares about the machine: the cores it may use and the device it runs on.

A device is chosen here and nowhere else. `torch_device` serves the networks (train, embed,
autotag), `mel_device` the feature extractor (which also has a numpy path), `implicit_device`
the WMF fit (implicit has its own notion of CPU and GPU). An impossible choice is a user's
mistake: one `DcueError` that says what to give instead. torch and implicit are imported inside
the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import os
import warnings

from dcue_cli.errors import DcueError


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable; 8 GiB where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def check_memory(need: int, what: str, fix: str) -> None:
    """A DcueError before the work when `need` bytes are more than the memory free now (an
    allocation that large is a MemoryError traceback, or, once touched, the kernel's OOM
    killer). `what` says what needs them; `fix` what to lower."""
    free = available_memory()
    if need > free:
        raise DcueError(f"{what} needs about {need / 1e9:.1f} GB but {free / 1e9:.1f} GB is free in host memory: "
                        f"{fix}.")


def check_network_memory(build, fix: str, copies: int = 4) -> None:
    """`check_memory` for a torch network: `build()` runs on torch's meta device (no memory) to
    count the parameters; weights, gradients and the optimiser's two moments take `copies` times
    their float32 bytes."""
    import torch

    with torch.device("meta"):
        network = build()
    n = sum(p.numel() for p in network.parameters())
    check_memory(copies * 4 * n, f"a network of {n:,} parameters (with its gradients and optimiser state)", fix)


def default_jobs(jobs: int | None) -> int:
    """Worker processes for a `-j` option: the value given, else one per usable core."""
    return jobs if jobs else usable_cores()


def _cuda_index(spec: str) -> int | None:
    """N of 'cuda:N', None of 'cuda'; anything else is not a CUDA spec (ValueError)."""
    if spec == "cuda":
        return None
    head, sep, tail = spec.partition(":")
    if head != "cuda" or not sep or not tail.isdigit():
        raise ValueError(spec)
    return int(tail)


def torch_device(spec: str = "auto", local_rank: int | None = None):
    """auto -> CUDA when present (this process's GPU under torchrun), else CPU; cpu; cuda[:N]."""
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    try:
        index = None if spec == "auto" else _cuda_index(spec)
    except ValueError:
        raise DcueError(f"--device {spec}: expected auto, cpu, cuda or cuda:N.") from None
    if not torch.cuda.is_available():
        raise DcueError(f"--device {spec}: CUDA is not available on this machine "
                        "(no GPU, or a CPU-only torch): use --device cpu or auto.")
    if index is None:
        return torch.device("cuda", local_rank if local_rank is not None else torch.cuda.current_device())
    if index >= torch.cuda.device_count():
        raise DcueError(f"--device {spec}: there are {torch.cuda.device_count()} CUDA devices "
                        f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
    return torch.device("cuda", index)


def mel_device(spec: str = "cpu") -> str:
    """The feature extractor's device: 'cpu' (numpy in the workers), 'cpu-torch' (the torch
    code on the CPU), or a CUDA device as torch_device resolves it; 'auto' prefers CUDA."""
    spec = (spec or "cpu").strip().lower()
    if spec in ("cpu", "cpu-torch"):
        return spec
    if spec == "auto":
        try:
            import torch
        except ImportError:
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        _cuda_index(spec)
    except ValueError:
        raise DcueError(f"--device {spec}: give cpu, cuda, cuda:N, cpu-torch or auto.") from None
    return str(torch_device(spec))


def implicit_device(spec: str = "auto") -> str:
    """'cpu' or 'gpu' as implicit names them."""
    spec = (spec or "auto").strip().lower()
    if spec == "cpu":
        return "cpu"
    if spec == "auto":
        return "gpu" if _implicit_has_cuda() else "cpu"
    if spec in ("cuda", "gpu", "cuda:0"):
        if not _implicit_has_cuda():
            raise DcueError(f"--device {spec}: this implicit has no CUDA support here (implicit.gpu.HAS_CUDA is "
                            "False): use --device cpu, or install implicit built with CUDA.")
        return "gpu"
    if spec.startswith("cuda:"):
        raise DcueError(f"--device {spec}: implicit uses the current CUDA device; run with "
                        f"CUDA_VISIBLE_DEVICES={spec[5:]} and --device cuda.")
    raise DcueError(f"--device {spec!r}: use auto, cpu or cuda.")


def _implicit_has_cuda() -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA extension is built, but disabling GPU support ..."
        import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA)


def autocast_factory(device, enabled: bool, on_cpu: bool = False):
    """bfloat16 autocast on CUDA when enabled (and on the CPU with `on_cpu`: the GPU's code path,
    run where there is no GPU, e.g. in tests); None (full precision) otherwise."""
    import torch

    if enabled and device.type == "cuda":
        return lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    if enabled and on_cpu and device.type == "cpu":
        return lambda: torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return None


def configure_backends(device) -> None:
    """cuDNN autotuning and TF32 matmuls on CUDA; nothing to set on the CPU."""
    import torch

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def have_matplotlib() -> bool:
    """Whether the optional plotting extra (`dcue[plot]`) is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True

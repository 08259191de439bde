"""Where things live and what ran them: the repository root, the active profile, `runs/<profile>/`, and the
provenance every run records (git commit, machine, this machine's matmul peak).

Every layer reads these facts; none of them depends on anything else in the package, so they sit in the core.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from miniclip.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
# ci: tiny models, seconds (tests). cpu: the book as committed (2 cores). gpu: bigger models for one consumer
# GPU. gpu-1m: the gpu book, with the 1M-pair web model (configs/gpu-1m.yaml) as its real-photo model.
PROFILES = ("ci", "cpu", "gpu", "gpu-1m")


class ProfileError(UserError, ValueError):
    """MINICLIP_PROFILE names a profile that does not exist."""


def profile() -> str:
    """The active profile, from `MINICLIP_PROFILE`. `make book` sets "cpu"; pytest's root conftest sets "ci"."""
    name = os.environ.get("MINICLIP_PROFILE", "cpu")
    if name not in PROFILES:
        raise ProfileError(f"MINICLIP_PROFILE={name!r} is not one of {', '.join(PROFILES)}")
    return name


def runs_dir(name: str | None = None) -> Path:
    """`runs/<profile>/`, where `make train` and `make experiments` leave checkpoints and results."""
    return ROOT / "runs" / (name or profile())


# ----------------------------------------------------------------------------- provenance


def git_commit() -> str | None:
    """The repository's HEAD commit, with `-dirty` when tracked files have uncommitted changes; None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (commit + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    """The processor's model name (Linux `/proc/cpuinfo`), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """The facts a timing depends on: torch and Python versions, processor, threads, GPU."""
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "processor": cpu_name(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def default_device() -> str:
    """Where models run unless told otherwise: the GPU when there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs ahead of the host clock); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 2.0,
                device: str = "cpu") -> float:
    """This machine's large-matmul throughput in GFLOP/s: the ceiling a training step is measured against.

    A dtype the CPU has no fast path for (bf16 without AVX-512 BF16 or AMX) can be hundreds of times
    slower, so the first, untimed product is small and its speed decides whether to time a big one."""
    dev = torch.device(device)
    a = torch.randn(256, 256, dtype=dtype, device=dev)
    a @ a
    small = []
    for _ in range(5):  # the best of five, so that a moment descheduled by another process does not count
        synchronize(dev)
        t0 = time.perf_counter()
        a @ a
        synchronize(dev)
        small.append(time.perf_counter() - t0)
    if min(small) > 0.05:  # slower than ~0.7 GFLOP/s: report that, skip the big product
        return 2 * 256**3 / min(small) / 1e9
    if dev.type == "cuda":
        n = max(n, 8192)  # a GPU needs a big product to reach its peak
    a, b = torch.randn(n, n, dtype=dtype, device=dev), torch.randn(n, n, dtype=dtype, device=dev)
    a @ b
    synchronize(dev)
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        runs += 1
        if dev.type == "cuda" and runs % 10 == 0:
            synchronize(dev)  # the GPU runs ahead of the clock otherwise
    synchronize(dev)
    return 2 * n**3 * runs / (time.perf_counter() - t0) / 1e9

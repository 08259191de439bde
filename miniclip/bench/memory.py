"""Memory: this process's resident memory (now and its peak, which Linux can reset) and the peak memory of
one training step, resident and on CUDA."""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Callable

import torch

from miniclip.env import synchronize


def reset_peak_rss() -> bool:
    """Restart the count of this process's peak resident memory, so that the next `peak_rss_mb()` is the peak
    of what ran in between. Linux only (writing 5 to /proc/self/clear_refs); False where it is not possible,
    and then `peak_rss_mb()` is the process's peak since it started."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (`resource.getrusage`; Linux counts KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def current_rss_mb() -> float | None:
    """Resident memory right now in MiB (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def step_memory(step: Callable[[], None], device: torch.device) -> dict:
    """Peak memory of one call of `step`: resident memory of the process (and its growth during the step),
    and on CUDA the most memory torch allocated on the device."""
    out = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = current_rss_mb()
    reset = reset_peak_rss()
    step()
    synchronize(device)
    out["peak_rss_mb"] = peak_rss_mb()
    if reset and before is not None:
        out["step_rss_growth_mb"] = out["peak_rss_mb"] - before
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out

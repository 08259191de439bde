"""Small helpers for data-parallel training with `torch.distributed`.

CLIP's contrastive loss is unusual among training objectives: the loss of one
example depends on *every other example in the batch* (they are its negatives).
With data parallelism each process only holds a slice of the batch, so the loss
has to see the features of all processes. This module provides the one piece of
communication that needs: `gather_with_grad`, an all-gather that gradients
can flow back through. It also has the usual bookkeeping (rank, world size) and
a `setup_distributed` that reads the environment `torchrun` prepares.

Everything here degrades gracefully to a single process: without an initialised
process group, `world_size()` is 1, `rank()` is 0 and `gather_with_grad`
returns its input unchanged.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "cleanup_distributed",
    "gather_with_grad",
    "is_distributed",
    "is_main_process",
    "rank",
    "setup_distributed",
    "world_size",
]


def is_distributed() -> bool:
    """True when running inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes in the default group (1 outside `torch.distributed`)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This process's index in the default group (0 outside `torch.distributed`)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def is_main_process() -> bool:
    """Rank 0 is the one that logs, evaluates and writes checkpoints."""
    return rank() == 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward hands each rank the gradient of its own rows.

    Forward, on every rank `r` holding `x_r` of shape `[n, ...]`::

        y = cat([x_0, x_1, ..., x_{W-1}], dim=0)          # shape [W·n, ...]

    Backward, given this rank's `dL_r/dy` (one gradient per rank, because every
    rank runs its own copy of the loss on its own copy of `y`)::

        dx_r = (Σ_s dL_s/dy)[r·n : (r+1)·n]

    i.e. a sum over ranks followed by "keep my slice". `x_r` was used by every
    rank's loss, so by the chain rule its gradient is the sum of what every rank
    sends back for those rows.

    That operation is exactly a *reduce-scatter*. We spell it as all_reduce(SUM) +
    slice instead because the gloo backend (what we use on CPU, in the tests) has
    no reduce_scatter; all_reduce works on both gloo and nccl. The price is that
    every rank receives the full `[W·n, D]` gradient rather than its `[n, D]`
    slice, which for CLIP-sized feature matrices (a few MB) is negligible next to
    the gradient all-reduce DDP performs over the model's parameters anyway.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        # Collectives need contiguous buffers with identical shapes on all ranks.
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rank = dist.get_rank()
        ctx.local_n = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        # all_reduce works in place; copy first so we never overwrite a gradient
        # buffer autograd might still hold elsewhere (and to make it contiguous).
        grad = grad_output.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.local_n
        return grad[start : start + ctx.local_n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0, keeping the autograd graph.

    Rank order is preserved, so row `r·n + i` of the result is row `i` of rank
    `r`'s tensor. Every rank must pass a tensor of the same shape (use
    `drop_last=True` in the sampler so the last batch is not ragged). Outside a
    multi-process group this is the identity.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(
    backend: str | None = None,
    timeout: datetime.timedelta = datetime.timedelta(minutes=30),
    use_cuda: bool = True,
) -> DistInfo:
    """Join the process group described by `torchrun`'s environment variables.

    `torchrun` sets `RANK`, `WORLD_SIZE`, `LOCAL_RANK` (index of this process
    on its machine, which picks the GPU), `MASTER_ADDR` and `MASTER_PORT`; the
    `env://` init method reads them. Without them (plain `python train.py`) we
    run as a single process and do not create a group at all.

    The backend defaults to nccl when CUDA is available (GPU-to-GPU collectives) and
    gloo otherwise (CPU tensors). `use_cuda=False` keeps a run on the CPU (and gloo)
    even where GPUs exist: a CPU run, or a test that must not touch them.
    """
    cuda = use_cuda and torch.cuda.is_available()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        device = torch.device("cuda", 0) if cuda else torch.device("cpu")
        return DistInfo(rank=0, local_rank=0, world_size=1, device=device)

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        # Bind this process to its GPU *before* creating the group, so nccl's
        # communicators and every later `.cuda()` land on the right device.
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    backend = backend or ("nccl" if cuda else "gloo")
    dist.init_process_group(backend=backend, init_method="env://", timeout=timeout)
    return DistInfo(
        rank=dist.get_rank(),
        local_rank=local_rank,
        world_size=dist.get_world_size(),
        device=device,
    )


def cleanup_distributed() -> None:
    """Leave the process group (a no-op when none was created)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

"""Collective helpers that are correct for self-supervised losses.

The one that matters is :func:`gather`: an all-gather whose backward SUMS the incoming gradients
over processes before returning this process's slice. Each process's loss depends on the
embeddings of every process (they are its negatives), so the gradient of the embeddings of process
r is the sum of the contributions of every process's loss. DDP then averages parameter gradients
over processes, so N processes x batch B compute exactly the gradient of one process with batch
N*B. (A gather without this backward, or one that averages, silently scales or drops gradients.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 when torch.distributed is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 when torch.distributed is not initialised)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def rank_offset(n_local: int) -> int:
    """Index of this process's first row in a tensor gathered with :func:`gather`."""
    return rank() * n_local


def _check_equal_rows(x: torch.Tensor) -> None:
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(f"gather needs the same number of rows on every process, got {[int(s) for s in sizes]}")


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.n = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = rank() * ctx.n
        return grad[start : start + ctx.n]


def gather(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 in rank order, with a gradient (sum-reduced backward).

    Returns ``x`` itself when there is a single process.
    """
    if not is_distributed():
        return x
    _check_equal_rows(x)
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 in rank order, without a gradient (queues, logging)."""
    if not is_distributed():
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts)


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over processes (for logging)."""
    if not is_distributed():
        return x.detach()
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / world_size()

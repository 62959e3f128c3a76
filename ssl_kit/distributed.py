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
    """True when more than one process is running (collectives are needed)."""
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
    # one tiny collective: the ragged case would otherwise hang or fail deep inside all_gather
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    if len({int(s) for s in sizes}) != 1:
        rows = [int(s) for s in sizes]
        raise ValueError(f"gather needs the same number of rows on every process; rows per rank: {rows}")


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.n = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # grad holds d(this process's loss)/d(every process's rows). Rank r's rows also enter the
        # losses of all other processes, so their full gradient is the SUM over processes.
        # Copy first: all_reduce works in place and the incoming gradient may be shared.
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = rank() * ctx.n
        return grad[start : start + ctx.n]


def gather(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 in rank order, with a gradient: (n, ...) -> (world_size*n, ...).

    Forward: the concatenation of every process's ``x`` in rank order (this process's rows start
    at :func:`rank_offset`). Backward: the incoming gradient is all-reduced with SUM and this
    process's slice is returned. Why sum: every process's loss depends on every process's rows
    (they are its negatives), so d(Σ_p loss_p)/d(x_r) is the sum of the contributions computed
    on all processes. DDP then AVERAGES parameter gradients over the P processes, so
    P processes x batch B (each loss a mean over its rows) give exactly the gradient of one
    process with batch P*B. Averaging here instead, or a plain all_gather (no gradient to the
    other processes' rows), silently scales or drops part of the gradient.

    Every process must pass the same number of rows (ValueError otherwise, raised on all of
    them). Returns ``x`` itself, no copy, when there is a single process.
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


# The trainer's collectives. Every tensor handed to a collective lives on the process's device:
# NCCL (every multi-GPU run) refuses CPU tensors, and gloo on a CPU machine would hide the mistake.
@torch.no_grad()
def any_process(flag: bool | torch.Tensor, device: torch.device | str) -> bool:
    """Whether ``flag`` (a bool, or a tensor whose elements are all tested) is true on ANY
    process; every process gets the same answer. One collective on ``device``."""
    value = torch.as_tensor(flag, device=device).to(device=device, dtype=torch.float32).reshape(-1).amax()
    if is_distributed():
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


@torch.no_grad()
def mean_over_processes(values: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, float]:
    """The mean over processes of scalar ``values`` (the same keys on every process), as floats;
    one collective on ``device`` for all of them."""
    if not values:
        return {}
    stacked = torch.stack([v.detach().reshape(()).to(device=device, dtype=torch.float32) for v in values.values()])
    if is_distributed():
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked = stacked / world_size()
    return dict(zip(values, stacked.tolist()))


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the backward sums the gradients too (every process's output depends on
    every process's input)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over processes (identity with one process)."""
    return _AllReduceSum.apply(x) if is_distributed() else x


class SyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are computed over the batches of all processes.

    torch.nn.SyncBatchNorm runs only on GPUs; this one works on any backend (gloo on CPU too), so
    the "2 processes = 1 process" contract can be checked anywhere. Two passes (mean, then the
    variance around it) keep float32 statistics accurate. Outside training, or with one process,
    it is a plain batch norm.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch norm with statistics over every process's batch while training."""
        if not (self.training and is_distributed()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = all_reduce_sum(torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device))
        mean = all_reduce_sum(x.sum(dims)) / count
        centered = x - mean.view(shape)
        var = all_reduce_sum((centered * centered).sum(dims)) / count
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.detach())
        y = centered / torch.sqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every batch norm by a synchronised one (torch's on GPUs, ours elsewhere)."""
    if torch.cuda.is_available():
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        out = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_sync_batchnorm(child))
    return out

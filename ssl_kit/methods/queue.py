"""A queue of past keys (MoCo), as buffers so it travels with checkpoints."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_kit.distributed import gather_nograd
from ssl_kit.errors import UserError


class Queue(nn.Module):
    """``queues`` FIFO queues of ``size`` L2-normalised ``dim``-vectors, stored as (queues, dim, size).

    :meth:`enqueue` gathers the keys of every process first, so every process holds the same
    queue (and N processes hold the queue of one process with the whole batch).
    """

    def __init__(self, size: int, dim: int, queues: int = 1) -> None:
        super().__init__()
        self.register_buffer("queue", F.normalize(torch.randn(queues, dim, size), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        """Keys each queue holds."""
        return self.queue.shape[-1]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Insert keys of shape (queues, B, dim) (or (B, dim) for one queue) from this process."""
        keys = keys.unsqueeze(0) if keys.ndim == 2 else keys
        keys = torch.stack([gather_nograd(k) for k in keys])  # (queues, global B, dim)
        batch = keys.shape[1]
        if self.size % batch:
            raise UserError(
                f"[method] queue_size {self.size} must be divisible by the global batch {batch} "
                f"(e.g. {self.size // batch * batch or batch})"
            )
        start = int(self.pointer)
        self.queue[:, :, start : start + batch] = keys.transpose(1, 2).to(self.queue.dtype)
        self.pointer.fill_((start + batch) % self.size)

"""The batch sampler of the batch contract: every process's share of every global batch."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ssl_kit.data.views import SampleKey, mix_seed


class EpochBatchSampler(torch.utils.data.Sampler):
    """Yields this process's share of every global batch, epoch after epoch.

    Epoch ``e`` visits ``randperm(n)`` drawn from ``(seed, e)``; each global batch of
    ``global_batch`` rows is cut into ``world_size`` contiguous slices and process ``rank`` gets
    slice ``rank``, so the gathered batch of N processes equals the batch of one process. The last
    incomplete global batch of an epoch is dropped. ``start_step`` resumes inside an epoch without
    replaying the batches before it.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        seed: int,
        epochs: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by {world_size} processes")
        self.n, self.global_batch, self.seed, self.epochs = num_samples, global_batch, seed, epochs
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self.steps_per_epoch = num_samples // global_batch

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch * self.epochs - self.start_step)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        local = self.global_batch // self.world_size
        first_epoch = self.start_step // max(1, self.steps_per_epoch)
        for epoch in range(first_epoch, self.epochs):
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0x5A3))
            order = torch.randperm(self.n, generator=g).tolist()
            for b in range(self.steps_per_epoch):
                step = epoch * self.steps_per_epoch + b
                if step < self.start_step:
                    continue
                lo = b * self.global_batch + self.rank * local
                yield [
                    SampleKey(epoch, order[lo + i], step, self.rank * local + i, self.global_batch)
                    for i in range(local)
                ]

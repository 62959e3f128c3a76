"""Feature extraction shared by feature evaluators: frozen model, eval mode, no augmentation."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


class _Transformed(torch.utils.data.Dataset):
    def __init__(self, dataset: Any, transform: Callable) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.dataset[index]
        return self.transform(item["image"]), int(item.get("label", -1))


@torch.no_grad()
def extract_features(
    encoder: nn.Module | None,
    dataset: Any,
    transform: Callable,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, D) float32 on the CPU and labels (N,) (-1 where unlabelled).

    ``encoder=None`` returns the flattened transformed pixels (the "raw pixels" baseline). The
    encoder is put in eval mode for the pass and restored to its previous mode afterwards.
    """
    loader = torch.utils.data.DataLoader(
        _Transformed(dataset, transform), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    was_training = encoder.training if encoder is not None else False
    if encoder is not None:
        encoder.eval()
    features, labels = [], []
    try:
        for images, y in loader:
            if encoder is None:
                f = images.flatten(1)
            else:
                f = encoder(images.to(device)).float().flatten(1).cpu()
            features.append(f)
            labels.append(y)
    finally:
        if encoder is not None:
            encoder.train(was_training)
    return torch.cat(features), torch.cat(labels)

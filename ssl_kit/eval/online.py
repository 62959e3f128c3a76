"""The online linear probe (solo-learn's protocol): a linear classifier trained during
self-supervised training on detached backbone features of the augmented views.

The trainer attaches it to the method as ``online_probe`` (so it travels with checkpoints, DDP and
the replica digests), gives its parameters their own optimizer group without weight decay, adds its
cross-entropy to the backward pass and logs it separately as ``online_probe_loss`` (``loss`` stays
the self-supervised loss). It is off when the data has no labels or the method returns no
``features``. At the end of training it is scored on the un-augmented test split with the online
backbone in eval mode: ``online_linear_top1`` / ``online_linear_top5``, protocol "online linear".
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PROTOCOL = "online linear (linear layer trained during SSL on detached features; solo-learn)"
PRIMARY = "online_linear_top1"


class OnlineProbe(nn.Module):
    """``Linear(num_features, num_classes)`` plus the step that trains it."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(num_features, num_classes)
        # Training steps seen (travels with checkpoints): an untrained probe is never scored.
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.detach().flatten(1).to(self.linear.weight.dtype))

    def loss(self, features: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy and batch top-1 accuracy (percent) on view-major features: the labels
        are repeated once per view (``features`` has a multiple of ``len(labels)`` rows)."""
        rows, n = features.shape[0], labels.shape[0]
        if rows % n:
            raise ValueError(f"online probe: {rows} feature rows for {n} labels (expected a multiple)")
        targets = labels.repeat(rows // n)
        with torch.no_grad():
            self.steps += 1
        logits = self(features).float()
        ce = F.cross_entropy(logits, targets)
        acc = (logits.argmax(1) == targets).float().mean() * 100
        return {"online_probe_loss": ce, "online_probe_acc": acc.detach()}


def num_classes(dataset: Any) -> int | None:
    """Classes of a labelled dataset (``num_classes``, ``classes`` or the largest label + 1);
    None for label-free data."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    if getattr(dataset, "num_classes", None):
        return int(dataset.num_classes)
    if getattr(dataset, "classes", None):
        return len(dataset.classes)
    return int(torch.as_tensor(labels).max()) + 1


@torch.no_grad()
def score(probe: OnlineProbe, features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 / top-5 accuracy (percent) of the probe on extracted test features."""
    logits = probe(features.to(probe.linear.weight.device)).float().cpu()
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit1 = (top[:, 0] == labels).float().mean().item() * 100
    hitk = (top == labels[:, None]).any(1).float().mean().item() * 100
    return {"online_linear_top1": hit1, "online_linear_top5": hitk}

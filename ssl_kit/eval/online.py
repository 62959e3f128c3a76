"""The online linear probe (solo-learn's protocol): a linear classifier trained during
self-supervised training on detached backbone features of the augmented views.

The trainer trains :class:`WithOnlineProbe`: the method and the probe as one module, so one
DDP/DeepSpeed engine holds both; checkpoints store the probe's tensors beside the method's as
``online_probe.*``. The probe's parameters get their own optimizer group without weight decay, its
cross-entropy joins the backward pass, and it is logged separately as ``online_probe_loss``
(``loss`` stays the self-supervised loss). It is off when the data has no labels; a method that
returns no ``features`` leaves it untrained. At the end of training it is scored on the
un-augmented test split with the online backbone in eval mode: ``online_linear_top1`` /
``online_linear_top5``, protocol "online linear".
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_kit.distributed import rank

PROTOCOL = "online linear (linear layer trained during SSL on detached features; solo-learn)"
PRIMARY = "online_linear_top1"
#: The checkpoint prefix of the probe's tensors, and the key of its cross-entropy in the outputs.
PREFIX = "online_probe"
LOSS = "online_probe_loss"


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
        return {LOSS: ce, "online_probe_acc": acc.detach()}


class WithOnlineProbe(nn.Module):
    """The method and its online probe as one module: ``forward(batch)`` returns the method's
    outputs plus ``online_probe_loss`` (the probe's cross-entropy, to add to ``loss`` for the
    backward pass) and ``online_probe_acc``, computed outside autocast on the method's detached
    ``features``. A method that returns no ``features`` leaves the probe untouched: a zero term
    added to ``loss`` (its value unchanged) keeps every process's gradient reduction in step."""

    def __init__(self, method: nn.Module, probe: OnlineProbe) -> None:
        super().__init__()
        self.method = method
        self.online_probe = probe
        self.warned = False

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = self.method(batch)
        features = out.get("features")
        if not isinstance(features, torch.Tensor) or "label" not in batch:
            if not self.warned and rank() == 0:
                self.warned = True
                warnings.warn("ssl_kit: the method returns no 'features': the online linear probe is not trained",
                              UserWarning, stacklevel=2)
            return {**out, "loss": out["loss"] + sum(p.sum() for p in self.online_probe.parameters()) * 0.0}
        with torch.autocast(features.device.type, enabled=False):
            return {**out, **self.online_probe.loss(features, batch["label"])}


@torch.no_grad()
def score(probe: OnlineProbe, features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 / top-5 accuracy (percent) of the probe on extracted test features."""
    logits = probe(features.to(probe.linear.weight.device)).float().cpu()
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit1 = (top[:, 0] == labels).float().mean().item() * 100
    hitk = (top == labels[:, None]).any(1).float().mean().item() * 100
    return {"online_linear_top1": hit1, "online_linear_top5": hitk}

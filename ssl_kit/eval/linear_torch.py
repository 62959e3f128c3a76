"""A linear layer trained with torch on a frozen encoder (solo-learn's, CARE's and QARe's probes).

The encoder stays in eval mode (batch-norm statistics frozen; CARE's released probe forgets this)
and under ``no_grad``. Without training augmentation the features are extracted once; with it,
every epoch re-augments the training images (seeded by ``seed`` and the epoch).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ssl_kit.eval.features import extract_features


def _schedule(optimizer: torch.optim.Optimizer, kind: str, epochs: int, milestones: list[float], gamma: float) -> Any:
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * e / epochs)))
    if kind == "step":
        steps = sorted({max(1, round(m * epochs)) if m < 1 else int(m) for m in milestones})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, steps, gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    return {
        "linear_torch_top1": (top[:, 0] == labels).float().mean().item() * 100,
        "linear_torch_top5": (top == labels[:, None]).any(1).float().mean().item() * 100,
    }


def train_linear_probe(
    encoder: nn.Module,
    train_set: Any,
    test_set: Any,
    transform: Callable,
    *,
    augment: Callable | None = None,
    optimizer: str = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    epochs: int = 100,
    batch_size: int = 256,
    schedule: str = "cosine",
    milestones: list[float] = (0.6, 0.8),
    gamma: float = 0.1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    extract_batch_size: int = 256,
    weight_decay_grid: list[float] | None = None,
    val_fraction: float = 0.1,
) -> dict[str, float]:
    """Train ``Linear(D, classes)`` on frozen ``encoder`` features of ``train_set`` and return its
    top-1 / top-5 test accuracy (percent). ``transform``: the un-augmented evaluation transform;
    ``augment``: a training transform (re-drawn every epoch) or None.

    ``weight_decay_grid``: train one layer per value on a random ``1 - val_fraction`` of the train
    split, score each on the held-out rest (un-augmented, top-1), then train the reported layer on
    the whole train split with the best value (the first on ties), returned as ``linear_torch_wd``
    (Decoupled Uniformity's protocol above 20,000 training images)."""
    if weight_decay_grid is not None and (not weight_decay_grid or min(weight_decay_grid) < 0):
        raise ValueError(f"weight_decay_grid must be a non-empty list of values >= 0, got {weight_decay_grid!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    test_f, test_y = extract_features(encoder, test_set, transform, extract_batch_size, device)
    plain_f, plain_y = (None, None) if augment is not None and weight_decay_grid is None else extract_features(
        encoder, train_set, transform, extract_batch_size, device
    )
    classes = max(train_set.info.num_classes or 0, int(test_y.max()) + 1)

    def fit(decay: float, rows: torch.Tensor | None) -> nn.Linear:
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            linear = nn.Linear(test_f.shape[1], classes).to(device)
        if optimizer == "sgd":
            opt = torch.optim.SGD(linear.parameters(), lr=lr, momentum=momentum, weight_decay=decay)
        else:
            opt = torch.optim.Adam(linear.parameters(), lr=lr, weight_decay=decay)
        sched = _schedule(opt, schedule, epochs, list(milestones), gamma)
        was_training = encoder.training
        encoder.eval()
        try:
            for epoch in range(epochs):
                if augment is not None:  # fresh augmentations, seeded by (seed, epoch)
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(seed * 100003 + epoch)
                        f, y = extract_features(encoder, train_set, augment, extract_batch_size, device)
                else:
                    f, y = plain_f, plain_y
                if rows is not None:
                    f, y = f[rows], y[rows]
                order = torch.randperm(len(f), generator=generator)
                for start in range(0, len(f), batch_size):
                    idx = order[start:start + batch_size]
                    loss = F.cross_entropy(linear(f[idx].to(device)), y[idx].to(device))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                sched.step()
        finally:
            encoder.train(was_training)
        return linear

    def scores(linear: nn.Linear, f: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            return _accuracy(linear(f.to(device)).float().cpu(), y)

    out: dict[str, float] = {}
    if weight_decay_grid is not None:
        n = len(plain_f)
        held = max(1, round(val_fraction * n))
        if n - held < 1:
            raise ValueError(f"val_fraction={val_fraction} leaves no training rows of {n}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        val, rest = order[:held], order[held:]
        top1 = {wd: scores(fit(wd, rest), plain_f[val], plain_y[val])["linear_torch_top1"] for wd in weight_decay_grid}
        weight_decay = out["linear_torch_wd"] = float(max(weight_decay_grid, key=lambda wd: top1[wd]))
    return {**out, **scores(fit(weight_decay, None), test_f, test_y)}

"""Exponential-moving-average (EMA) targets, shared by BYOL, MoCo and plugins (ReLIC, ...)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(step: int, max_steps: int, base: float, final: float) -> float:
    """tau_k = final - (final - base) * (cos(pi k / K) + 1) / 2 (BYOL, solo-learn): ``base`` at k = 0,
    ``final`` at k = K."""
    if max_steps <= 0:
        return final
    k = min(max(step, 0), max_steps)
    return final - (final - base) * (math.cos(math.pi * k / max_steps) + 1) / 2


class EMA(nn.Module):
    """A target network: a frozen copy of ``online`` updated as
    theta_target <- tau * theta_target + (1 - tau) * theta_online after each optimizer step.

    The copy is a submodule, so it travels with checkpoints and state dicts. Its parameters do not
    require gradients, so optimizers never see them. Float buffers (batch-norm statistics) follow
    the same average when ``ema_buffers`` is true (ReLIC), else they are copied (BYOL, MoCo).
    """

    def __init__(self, online: nn.Module, base: float = 0.99, final: float = 1.0, ema_buffers: bool = False) -> None:
        super().__init__()
        if not 0.0 <= base <= final <= 1.0:
            raise ValueError(f"EMA momentum must satisfy 0 <= base <= final <= 1, got base={base}, final={final}")
        self.target = copy.deepcopy(online)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.base, self.final, self.ema_buffers = base, final, ema_buffers
        self.register_buffer("momentum", torch.tensor(base, dtype=torch.float64))

    def forward(self, *args, **kwargs):
        """The target network's output (call it under ``torch.no_grad()``)."""
        return self.target(*args, **kwargs)

    @torch.no_grad()
    def update(self, online: nn.Module, step: int, max_steps: int) -> None:
        """Average ``online`` into the target with the current momentum, then advance the momentum
        on the cosine schedule (solo-learn's order: optimizer step k uses tau_{k-1}, tau_0 = base)."""
        tau = float(self.momentum)
        for target, source in zip(self.target.parameters(), online.parameters()):
            target.mul_(tau).add_(source.detach(), alpha=1 - tau)
        for target, source in zip(self.target.buffers(), online.buffers()):
            if self.ema_buffers and target.is_floating_point():
                target.mul_(tau).add_(source.detach(), alpha=1 - tau)
            else:
                target.copy_(source)
        self.momentum.fill_(cosine_momentum(step, max_steps, self.base, self.final))

    @torch.no_grad()
    def copy_from(self, online: nn.Module) -> None:
        """Hard copy (ReLIC's first steps)."""
        self.target.load_state_dict(online.state_dict())

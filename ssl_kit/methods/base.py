"""The method contract.

A method is a small ``nn.Module`` built as ``factory(backbone, cfg)``. The trainer calls
``forward(batch)`` with the batch contract of :mod:`ssl_kit.data.views` and expects a dict with a
scalar ``loss`` plus any detached metrics to log, and optionally ``features``: the online backbone's
features of the global views, view-major ``(V*B, F)`` (rows ``v*B .. v*B+B-1`` are view ``v``), on
which the trainer trains the online linear probe (detached; never part of ``loss``). Everything else is optional and has a default
here: the views it needs, what to do after each optimizer step (EMA, queues), its parameter
groups, and which module evaluation and export use.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ssl_kit.data.views import ViewSpec


class Method(nn.Module):
    """Base class for methods (optional: any nn.Module with ``forward(batch) -> dict`` works)."""

    #: Default views; recipes override fields through their ``[views]`` table.
    views: ViewSpec = ViewSpec()

    def __init__(self, backbone: nn.Module, cfg: Any = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg

    def view_spec(self) -> ViewSpec:
        """The views this method needs (may depend on ``self.cfg``)."""
        return self.views

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def on_train_start(self, steps_per_epoch: int, max_steps: int) -> None:
        """Called once before the first step (and before a resume loads its checkpoint) with the
        optimizer steps of one epoch and of the whole run (schedules such as ReLIC's EMA horizon)."""

    def after_step(self, step: int, max_steps: int) -> None:
        """Called after every optimizer step with the 1-based global step (EMA, momentum)."""

    def param_groups(self) -> list[dict[str, Any]] | None:
        """Parameter groups for the optimizer, or None for the trainer's default split."""
        return None

    def encoder(self) -> nn.Module:
        """The module evaluated and exported (the backbone unless the paper says otherwise)."""
        return self.backbone

"""The method contract.

A method is a small :class:`Method` built as ``factory(backbone, cfg)``. The trainer calls
``forward(batch)`` with the batch contract of :mod:`ssl_kit.data.views` and expects a dict with a
scalar ``loss`` plus any detached metrics to log, and optionally ``features``: the online backbone's
features of the global views, view-major ``(V*B, F)`` (rows ``v*B .. v*B+B-1`` are view ``v``), on
which the online linear probe trains (the probe detaches them; they are never part of ``loss``).
Everything else has a default here: the views it needs (and which final views it accepts), what
to do after each optimizer step (EMA, queues), its parameter groups, and which module evaluation
and export use.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from ssl_kit.errors import UserError
from ssl_kit.spec import ViewSpec


class Method(nn.Module):
    """Base class of every method: ``forward(batch) -> dict`` plus the optional hooks below.

    Class attributes: ``views`` (the default :class:`~ssl_kit.spec.ViewSpec`), ``min_global_views``
    (fewest global views ``forward`` can use), ``paper`` and ``citation`` (shown in the model card,
    whose "Method" line is :meth:`summary`)."""

    #: Default views; recipes override fields through their ``[views]`` table.
    views: ViewSpec = ViewSpec()
    #: Fewest global views ``forward`` can use; :meth:`set_views` refuses fewer.
    min_global_views: int = 1
    #: The paper (reference or URL) and its BibTeX, shown in the model card.
    paper: str = ""
    citation: str = ""

    def __init__(self, backbone: nn.Module, cfg: Any = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg

    @classmethod
    def summary(cls) -> str:
        """One line about the method: the first line of its module's docstring (a method lives in
        its own file). The model card's "Method" line and ``python -m ssl_kit describe`` show it."""
        doc = (sys.modules[cls.__module__].__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    def view_spec(self) -> ViewSpec:
        """The views this method needs (may depend on ``self.cfg``)."""
        return self.views

    def set_views(self, views: ViewSpec) -> None:
        """Receive the final views (:meth:`view_spec` with the recipe's ``[views]`` on top) before
        training; raise :class:`~ssl_kit.errors.UserError` for views ``forward`` cannot use."""
        if views.global_views < self.min_global_views:
            raise UserError(f"[views] global_views = {views.global_views}: {type(self).__name__} needs at least "
                            f"{self.min_global_views} global views")
        self.views = views

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:  # pragma: no cover
        """The batch of :mod:`ssl_kit.data.views` -> ``{"loss": scalar, **metrics, "features": ...}``."""
        raise NotImplementedError

    def on_train_start(self, steps_per_epoch: int, max_steps: int) -> None:
        """Called once before the first step (and before a resume loads its checkpoint) with the
        optimizer steps of one epoch and of the whole run (schedules such as ReLIC's EMA horizon)."""

    def after_step(self, step: int, max_steps: int) -> None:
        """Called after every optimizer step with the 1-based global step (EMA, momentum, queues)."""

    def skip_step(self) -> None:
        """Called instead of :meth:`after_step` when the trainer skips an optimizer step (a
        non-finite loss with ``train.skip_nonfinite``): drop what ``forward`` staged for it."""

    def param_groups(self) -> list[dict[str, Any]] | None:
        """Parameter groups for the optimizer, or None for the default split (biases and norm
        parameters without weight decay)."""
        return None

    def encoder(self) -> nn.Module:
        """The module evaluated and exported (the backbone unless the paper says otherwise)."""
        return self.backbone

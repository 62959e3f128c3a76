"""BYOL (Grill et al., NeurIPS 2020): online projector + predictor regress an EMA target."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ssl_kit.config import knob
from ssl_kit.losses import byol_loss
from ssl_kit.methods.base import Method
from ssl_kit.methods.ema import EMA
from ssl_kit.methods.heads import mlp
from ssl_kit.spec import ViewSpec


@dataclasses.dataclass
class BYOLConfig:
    proj_hidden_dim: int = knob(4096, "projector hidden width (solo-learn CIFAR: 4096)", min=1)
    proj_output_dim: int = knob(256, "projector output width", min=1)
    pred_hidden_dim: int = knob(4096, "predictor hidden width", min=1)
    base_tau: float = knob(0.99, "EMA momentum at the start (cosine schedule)", min=0, max=1)
    final_tau: float = knob(1.0, "EMA momentum at the end", min=0, max=1)


class BYOL(Method):
    """loss = l(p1, z2') + l(p2, z1') with l = 2 - 2 cos, z' from the EMA target (backbone +
    projector); evaluation and export use the online backbone, as the paper does."""

    min_global_views = 2
    views = ViewSpec(global_views=2, preset="byol")

    def __init__(self, backbone: nn.Module, cfg: BYOLConfig) -> None:
        super().__init__(backbone, cfg)
        self.projector = mlp(backbone.num_features, cfg.proj_hidden_dim, cfg.proj_output_dim, batch_norm=True)
        self.predictor = mlp(cfg.proj_output_dim, cfg.pred_hidden_dim, cfg.proj_output_dim, batch_norm=True)
        self.target = EMA(nn.Sequential(backbone, self.projector), cfg.base_tau, cfg.final_tau)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        v1, v2 = batch["global"][:2]
        h = [self.backbone(v) for v in (v1, v2)]  # one view at a time: batch-norm statistics per view
        p1, p2 = (self.predictor(self.projector(x)) for x in h)
        with torch.no_grad():
            z1, z2 = self.target(v1), self.target(v2)
        loss = byol_loss(p1, z2) + byol_loss(p2, z1)
        return {"loss": loss, "tau": self.target.momentum.detach().float(), "features": torch.cat(h)}

    def after_step(self, step: int, max_steps: int) -> None:
        self.target.update(nn.Sequential(self.backbone, self.projector), step, max_steps)

"""SimSiam (Chen & He, CVPR 2021): a predictor and a stop-gradient, no negatives, no EMA."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ssl_kit.config import knob
from ssl_kit.losses import simsiam_loss
from ssl_kit.methods.base import Method
from ssl_kit.methods.heads import mlp
from ssl_kit.spec import ViewSpec


@dataclasses.dataclass
class SimSiamConfig:
    proj_hidden_dim: int = knob(2048, "projector hidden width", min=1)
    proj_output_dim: int = knob(2048, "projector output width", min=1)
    pred_hidden_dim: int = knob(512, "predictor bottleneck width (paper: output/4)", min=1)


class SimSiam(Method):
    """3-layer projector with BN (the last BN without affine), 2-layer bottleneck predictor;
    loss = 0.5 D(p1, sg z2) + 0.5 D(p2, sg z1) with D = -cos."""

    min_global_views = 2
    views = ViewSpec(global_views=2, preset="mocov2")

    def __init__(self, backbone: nn.Module, cfg: SimSiamConfig) -> None:
        super().__init__(backbone, cfg)
        self.projector = mlp(backbone.num_features, cfg.proj_hidden_dim, cfg.proj_output_dim,
                             num_layers=3, batch_norm=True, last_batch_norm=True)
        self.predictor = mlp(cfg.proj_output_dim, cfg.pred_hidden_dim, cfg.proj_output_dim, batch_norm=True)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        h = [self.backbone(v) for v in batch["global"][:2]]
        z1, z2 = (self.projector(x) for x in h)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = 0.5 * simsiam_loss(p1, z2) + 0.5 * simsiam_loss(p2, z1)
        return {"loss": loss, "features": torch.cat(h)}

"""SimCLR (Chen et al., ICML 2020): two augmented views, MLP projector, NT-Xent."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ssl_kit.config import knob
from ssl_kit.losses import nt_xent
from ssl_kit.methods.base import Method
from ssl_kit.methods.heads import mlp
from ssl_kit.spec import ViewSpec


@dataclasses.dataclass
class SimCLRConfig:
    temperature: float = knob(0.2, "NT-Xent temperature (solo-learn CIFAR: 0.2)", gt=0)
    proj_hidden_dim: int = knob(2048, "projector hidden width", min=1)
    proj_output_dim: int = knob(256, "projector output width", min=1)
    proj_batch_norm: bool = knob(False, "BN in the projector's hidden layer (solo-learn CIFAR: no)")
    similarity: str = knob("cosine", "'cosine' or 'dot' similarity inside NT-Xent")


class SimCLR(Method):
    """backbone -> projector -> NT-Xent over all global views (negatives from all processes)."""

    min_global_views = 2
    views = ViewSpec(global_views=2, preset="simclr")

    def __init__(self, backbone: torch.nn.Module, cfg: SimCLRConfig) -> None:
        super().__init__(backbone, cfg)
        self.projector = mlp(
            backbone.num_features, cfg.proj_hidden_dim, cfg.proj_output_dim, batch_norm=cfg.proj_batch_norm
        )

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        views = batch["global"]
        h = self.backbone(torch.cat(views))  # view-major (V*N, F)
        z = self.projector(h)
        loss = nt_xent(z, n_views=len(views), temperature=self.cfg.temperature, similarity=self.cfg.similarity)
        return {"loss": loss, "features": h}

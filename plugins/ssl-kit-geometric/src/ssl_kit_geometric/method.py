"""Geometric Contrastive Learning (Koishekenov et al., ICCV 2023 workshop): SimCLR, MoCo v2+, BYOL and SimSiam with the geodesic similarity on the hypersphere in place of the cosine."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ssl_kit.config import knob
from ssl_kit.methods.byol import BYOL, BYOLConfig
from ssl_kit.methods.moco import MoCo, MoCoConfig
from ssl_kit.methods.simclr import SimCLR, SimCLRConfig
from ssl_kit.methods.simsiam import SimSiam, SimSiamConfig

from ssl_kit_geometric.loss import (
    MOCO_EPS,
    SIMCLR_EPS,
    geodesic_moco_infonce,
    geodesic_nt_xent,
    released_byol_loss,
    released_simsiam_loss,
    squared_geodesic_loss,
)

PAPER = ("Koishekenov, Vadgama, Valperga, Bekkers, Geometric Contrastive Learning, 4th VIPriors workshop at "
         "ICCV 2023 (https://openreview.net/forum?id=cE4BY5XrzR)")
CITATION = (
    "@inproceedings{koishekenov2023geometric,\n  title={Geometric Contrastive Learning},\n"
    "  author={Koishekenov, Yeskendir and Vadgama, Sharvaree and Valperga, Riccardo and Bekkers, Erik J},\n"
    "  booktitle={4th Visual Inductive Priors for Data-Efficient Deep Learning Workshop},\n  year={2023},\n"
    "  url={https://openreview.net/forum?id=cE4BY5XrzR}\n}"
)
GEOMETRIC_HELP = "use the geodesic similarity (the paper); false: exactly the built-in '{}' (same loss and gradients)"
EPS_HELP = "clamp margin of arccos: g(c) = 1 - arccos(clamp(c, -1+eps, 1-eps))/pi (reference: {})"
VARIANT_HELP = ("'geodesic': ours, the squared normalised geodesic distance (arccos(cos)/pi)^2; 'released': the "
                "reference code's formulas ({}; see the README)")
RELEASED_BYOL_WARNING = (
    "geometric_byol with geometric_variant = 'released' reproduces the reference code's loss "
    "2 - 2 mean(1 - cos/pi) = (2/pi) mean cos(p, z), which minimising pushes the predictions AWAY from their "
    "targets (a sign bug; the predictor can learn to negate its output). Use geometric_variant = 'geodesic' "
    "unless you reproduce the released numbers."
)


# --- SimCLR ------------------------------------------------------------------------------------
@dataclasses.dataclass
class GeometricSimCLRConfig(SimCLRConfig):
    temperature: float = knob(0.05, "NT-Xent temperature; the logits are g/T with g in [0, 1] (paper: 0.05)", gt=0)
    proj_output_dim: int = knob(128, "projector output width (reference configs: 128)", min=1)
    similarity: str = knob("cosine", "with geometric = false: 'cosine' or 'dot' inside NT-Xent (with geometric = true: 'cosine')")
    geometric: bool = knob(True, GEOMETRIC_HELP.format("simclr"))
    geodesic_eps: float = knob(SIMCLR_EPS, EPS_HELP.format("1e-7"), gt=0, lt=1)

    def __post_init__(self) -> None:
        if self.similarity not in ("cosine", "dot"):
            raise ValueError(f"key 'similarity' must be 'cosine' | 'dot', got {self.similarity!r}")
        if self.geometric and self.similarity != "cosine":
            raise ValueError(f"key 'similarity' must be 'cosine' when geometric = true (the geodesic similarity "
                             f"is a function of the cosine), got {self.similarity!r}")


class GeometricSimCLR(SimCLR):
    """SimCLR whose NT-Xent logits are g(ẑ_i·ẑ_k)/T (negatives from every process)."""

    paper, citation = PAPER, CITATION

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if not self.cfg.geometric:
            return super().forward(batch)
        views = batch["global"]
        h = self.backbone(torch.cat(views))  # view-major (V*N, F), as the built-in
        z = self.projector(h)
        loss = geodesic_nt_xent(z, n_views=len(views), temperature=self.cfg.temperature, eps=self.cfg.geodesic_eps)
        return {"loss": loss, "features": h}


# --- MoCo v2+ ----------------------------------------------------------------------------------
@dataclasses.dataclass
class GeometricMoCoConfig(MoCoConfig):
    temperature: float = knob(0.05, "InfoNCE temperature; the logits are g/T with g in [0, 1] (paper: 0.05)", gt=0)
    queue_size: int = knob(4096, "negatives kept per queue; must divide by the global batch (paper: 4096 CIFAR, 8192 ImageNet-100)", min=1)
    proj_output_dim: int = knob(128, "projector output width (key/query dimension; reference configs: 128)", min=1)
    geometric: bool = knob(True, GEOMETRIC_HELP.format("mocov2plus"))
    geodesic_eps: float = knob(MOCO_EPS, EPS_HELP.format("1e-6"), gt=0, lt=1)


class GeometricMoCo(MoCo):
    """MoCo v2+ (or v2 with symmetric = false) whose positive and queue logits are g(q·k)/T."""

    paper, citation = PAPER, CITATION

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if not self.cfg.geometric:
            return super().forward(batch)
        views = batch["global"][:2]
        h = [self.backbone(v) for v in views]
        q = [F.normalize(self.projector(x), dim=1) for x in h]
        with torch.no_grad():
            k = [F.normalize(self.key_encoder(v), dim=1) for v in views]
        negatives, t, eps = self.queue.queue, self.cfg.temperature, self.cfg.geodesic_eps
        if self.cfg.symmetric:  # queue v holds past keys of view v; after_step enqueues the staged keys
            loss = (geodesic_moco_infonce(q[0], k[1], negatives[1], t, eps)
                    + geodesic_moco_infonce(q[1], k[0], negatives[0], t, eps)) / 2
            self.staged_keys.append(torch.stack(k))
        else:
            loss = geodesic_moco_infonce(q[0], k[1], negatives[0], t, eps)
            self.staged_keys.append(k[1].unsqueeze(0))
        return {"loss": loss, "tau": self.key_encoder.momentum.detach().float(), "features": torch.cat(h)}


# --- BYOL and SimSiam --------------------------------------------------------------------------
@dataclasses.dataclass
class GeometricBYOLConfig(BYOLConfig):
    geometric: bool = knob(True, GEOMETRIC_HELP.format("byol"))
    geometric_variant: Literal["geodesic", "released"] = knob(
        "geodesic", VARIANT_HELP.format("2 - 2 mean(1 - cos/pi): no arccos, and a sign bug; warns"))
    geodesic_eps: float = knob(SIMCLR_EPS, EPS_HELP.format("1e-7") + "; unused by the released variant", gt=0, lt=1)


class GeometricBYOL(BYOL):
    """BYOL with loss = ℓ(p₁, z₂′) + ℓ(p₂, z₁′), ℓ the squared normalised geodesic distance (ours)
    or the released formula; the EMA target, heads and evaluated encoder are BYOL's."""

    paper, citation = PAPER, CITATION

    def __init__(self, backbone: nn.Module, cfg: GeometricBYOLConfig) -> None:
        super().__init__(backbone, cfg)
        if cfg.geometric and cfg.geometric_variant == "released":
            warnings.warn(RELEASED_BYOL_WARNING, UserWarning, stacklevel=2)

    def regression(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """ℓ(p, z′) of one direction (a negative control may pair other rows here)."""
        if self.cfg.geometric_variant == "released":
            return released_byol_loss(p, z)
        return squared_geodesic_loss(p, z, eps=self.cfg.geodesic_eps)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if not self.cfg.geometric:
            return super().forward(batch)
        v1, v2 = batch["global"][:2]
        h = [self.backbone(v) for v in (v1, v2)]  # one view at a time: batch-norm statistics per view
        p1, p2 = (self.predictor(self.projector(x)) for x in h)
        with torch.no_grad():
            z1, z2 = self.target(v1), self.target(v2)
        loss = self.regression(p1, z2) + self.regression(p2, z1)
        return {"loss": loss, "tau": self.target.momentum.detach().float(), "features": torch.cat(h)}


@dataclasses.dataclass
class GeometricSimSiamConfig(SimSiamConfig):
    geometric: bool = knob(True, GEOMETRIC_HELP.format("simsiam"))
    geometric_variant: Literal["geodesic", "released"] = knob(
        "geodesic", VARIANT_HELP.format("-mean sum_d g(p_d z_d): g of each coordinate's product"))
    geodesic_eps: float = knob(SIMCLR_EPS, EPS_HELP.format("1e-7"), gt=0, lt=1)


class GeometricSimSiam(SimSiam):
    """SimSiam with loss = ½ℓ(p₁, sg z₂) + ½ℓ(p₂, sg z₁), ℓ the squared normalised geodesic
    distance (ours) or the released coordinate-wise formula; heads and views are SimSiam's."""

    paper, citation = PAPER, CITATION

    def regression(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """ℓ(p, sg z) of one direction (a negative control may pair other rows here)."""
        if self.cfg.geometric_variant == "released":
            return released_simsiam_loss(p, z, eps=self.cfg.geodesic_eps)
        return squared_geodesic_loss(p, z, eps=self.cfg.geodesic_eps)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if not self.cfg.geometric:
            return super().forward(batch)
        h = [self.backbone(v) for v in batch["global"][:2]]
        z1, z2 = (self.projector(x) for x in h)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = 0.5 * self.regression(p1, z2) + 0.5 * self.regression(p2, z1)
        return {"loss": loss, "features": torch.cat(h)}

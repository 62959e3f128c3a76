"""QARe and SparseCLR (Moskalev et al., ECCV 2022): a pairwise contrastive term (SimCLR's or SparseCLR's) on two sets of views, plus the QARe set regulariser."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any, Literal

import torch
from torch import nn

from ssl_kit import Method, ViewSpec
from ssl_kit.config import knob
from ssl_kit.errors import UserError

from ssl_kit_qare.loss import clipped_cosine, lap_loss, qare_regularizer, sparseclr_loss

QARE_SET_HELP = (
    "sets of the QARe term across processes: 'global' (the gathered global batch; P processes = 1 process) "
    "or 'local' (each process's own images; DDP averages the per-process values)"
)


@dataclasses.dataclass(frozen=True)
class _HeadConfig:
    head_hidden_dim: int = knob(256, "head Linear(F, hidden)-BN-LeakyReLU(0.01)-Linear(hidden, out): hidden width (reference: 256)", min=1)
    head_output_dim: int = knob(64, "head output width (reference: 64)", min=1)


@dataclasses.dataclass(frozen=True)
class _RegularisedConfig(_HeadConfig):
    """alpha * pairwise term + beta * QARe: the weights' keys and their check."""

    beta: float = knob(0.5, "weight of the QARe set regulariser (README: 0.5; the released command-line default: 1)", min=0)
    qare_set: Literal["global", "local"] = knob("global", QARE_SET_HELP)

    def __post_init__(self) -> None:
        if self.alpha == 0 and self.beta == 0:
            raise ValueError("keys 'alpha' and 'beta' are both 0: the loss would be zero; set either > 0")


@dataclasses.dataclass(frozen=True)
class SimCLRQAReConfig(_RegularisedConfig):
    alpha: float = knob(1.0, "weight of the pairwise (LAP) term (README: 1)", min=0)
    temperature: float = knob(0.5, "temperature T of the LAP term (reference: 0.5)", gt=0)


@dataclasses.dataclass(frozen=True)
class SparseCLRConfig(_HeadConfig):
    margin: float = knob(1.0, "margin subtracted from the positive's similarity (reference: 1)", min=0)


@dataclasses.dataclass(frozen=True)
class SparseCLRQAReConfig(_RegularisedConfig):
    alpha: float = knob(1.0, "weight of the pairwise (SparseCLR) term (README: 1)", min=0)
    margin: float = knob(1.0, "margin subtracted from the positive's (clipped) similarity (reference: 1)", min=0)


class QAReProjectionHead(nn.Sequential):
    """The reference's head: Linear(F, 256)-BatchNorm1d-LeakyReLU(0.01)-Linear(256, 64). The first
    Linear has no bias: the batch norm right after it subtracts any constant shift."""

    def __init__(self, in_dim: int, hidden_dim: int = 256, out_dim: int = 64) -> None:
        super().__init__(OrderedDict([
            ("linear1", nn.Linear(in_dim, hidden_dim, bias=False)),
            ("bn1", nn.BatchNorm1d(hidden_dim)),
            ("relu", nn.LeakyReLU(0.01)),
            ("linear2", nn.Linear(hidden_dim, out_dim)),
        ]))


class SetContrastive(Method):
    """Two global views of every image through one backbone pass (batch-norm statistics over both
    views, as the reference) and the paper's head; the views' projections are the two sets z1, z2.
    Subclasses give the loss."""

    min_global_views = 2
    views = ViewSpec(global_views=2, preset="qare")
    paper = "Moskalev, Sosnovik, Fischer, Smeulders, Contrasting quadratic assignments for set-based representation learning, ECCV 2022 (arXiv:2205.15814)"
    citation = (
        "@inproceedings{moskalev2022contrasting,\n  title={Contrasting quadratic assignments for set-based representation learning},\n"
        "  author={Moskalev, Artem and Sosnovik, Ivan and Fischer, Volker and Smeulders, Arnold},\n"
        "  booktitle={European Conference on Computer Vision},\n  year={2022}\n}"
    )

    def __init__(self, backbone: nn.Module, cfg: Any) -> None:
        super().__init__(backbone, cfg)
        self.head = QAReProjectionHead(backbone.num_features, cfg.head_hidden_dim, cfg.head_output_dim)

    def set_views(self, views: ViewSpec) -> None:
        if views.global_views != 2 or views.local_views:
            raise UserError(f"[views] {type(self).__name__} contrasts two sets: it needs global_views = 2 and "
                            f"local_views = 0, got {views.global_views} and {views.local_views}")
        super().set_views(views)

    def sets(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(backbone features of both views, view-major (2B, F); z1 (B, out); z2 (B, out))."""
        features = self.backbone(torch.cat(batch["global"]))
        z1, z2 = self.head(features).chunk(2)
        return features, z1, z2

    def regularised(self, name: str, pairwise: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
        """alpha * pairwise + beta * QARe(z1, z2), with both terms logged."""
        qare = qare_regularizer(z1, z2, gather=self.cfg.qare_set == "global")
        loss = self.cfg.alpha * pairwise + self.cfg.beta * qare
        return {"loss": loss, name: pairwise.detach(), "qare": qare.detach()}


class SimCLRQARe(SetContrastive):
    """alpha * LAP (SimCLR's ratio, log of the mean, T 0.5) + beta * QARe, both on clipped cosines."""

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        features, z1, z2 = self.sets(batch)
        lap = lap_loss(z1, z2, temperature=self.cfg.temperature, similarity=clipped_cosine)
        return {**self.regularised("lap", lap, z1, z2), "features": features}


class SparseCLR(SetContrastive):
    """The sparsemax loss of every view with its other view as the target (plain cosines, margin 1)."""

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        features, z1, z2 = self.sets(batch)
        return {"loss": sparseclr_loss(z1, z2, margin=self.cfg.margin), "features": features}


class SparseCLRQARe(SetContrastive):
    """alpha * SparseCLR + beta * QARe, both on clipped cosines."""

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        features, z1, z2 = self.sets(batch)
        sparse = sparseclr_loss(z1, z2, margin=self.cfg.margin, similarity=clipped_cosine)
        return {**self.regularised("sparseclr", sparse, z1, z2), "features": features}

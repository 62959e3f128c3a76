"""Decoupled Uniformity (Dufumier et al., ICML 2023): uniformity between the centroids of each image's views, optionally smoothed by a kernel on per-sample priors."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import nn

from ssl_kit import Method, ViewSpec
from ssl_kit.config import knob
from ssl_kit.errors import UserError
from ssl_kit.methods.heads import mlp

from ssl_kit_decoupled_uniformity.loss import decoupled_uniformity_loss


@dataclasses.dataclass
class DecoupledUniformityConfig:
    kernel: Literal["none", "rbf", "cosine"] = knob(
        "none", "kernel on the batch's per-sample priors ('none': plain decoupled uniformity, no prior needed)"
    )
    sigma: float | None = knob(
        None, "RBF bandwidth: k(x, y) = exp(-||x - y||^2 / (2 sigma^2)); required with kernel = 'rbf' "
        "(paper: ImageNet-100 100, CUB-200 20, UTZappos 100)", gt=0
    )
    kernel_lambda: float = knob(
        0.01, "lambda of the centroid weights A = (K + lambda I)^-1 K; 0 means 1/sqrt(B), B the global batch (paper: 0.01)", min=0
    )
    t: float = knob(2.0, "scale of the Gaussian potential exp(-t ||mu_i - mu_j||^2) (paper: 2)", gt=0)
    proj_hidden_dim: int = knob(
        2048, "width of the projector's first two layers; the first layer's output is the evaluated and exported representation (paper: 2048)", min=1
    )
    proj_output_dim: int = knob(256, "projector output width (paper: 256)", min=1)

    def __post_init__(self) -> None:
        if self.kernel == "rbf" and self.sigma is None:
            raise ValueError("key 'sigma' is required with kernel = 'rbf' (a bandwidth > 0, e.g. sigma = 20)")
        if self.kernel != "rbf" and self.sigma is not None:
            raise ValueError(f"key 'sigma' applies to kernel = 'rbf' only, got kernel = '{self.kernel}'; remove it")


class DecoupledUniformityProjector(nn.Sequential):
    """The paper's head: the encoder's fc to 2048 (the representation that is evaluated), then
    ReLU-Linear(2048, 2048)-ReLU-Linear(2048, 256), no batch norm. Layer 0 is that fc."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(*mlp(in_dim, hidden_dim, out_dim, num_layers=3))

    def __getitem__(self, index: int | slice) -> nn.Module:
        # nn.Sequential slices by calling type(self)(layers), which this signature does not take;
        # a slice (e.g. [eval] features = "projector.0") is a plain Sequential of the same layers
        if isinstance(index, slice):
            return nn.Sequential(*list(self)[index])
        return super().__getitem__(index)


class FirstLayerEncoder(nn.Sequential):
    """The backbone followed by the projector's first Linear layer: what the paper evaluates (the
    reference's ResNet with its fc replaced by Linear(512, 2048))."""

    def __init__(self, backbone: nn.Module, first_layer: nn.Linear) -> None:
        super().__init__(backbone, first_layer)
        self.num_features = first_layer.out_features


class DecoupledUniformity(Method):
    """backbone -> projector on every global view (one forward over all views, as the reference);
    the loss on the (B, V, D) projections of the whole global batch, with the batch's priors when
    a kernel is set. Evaluation and export use backbone + the projector's first layer."""

    min_global_views = 2
    views = ViewSpec(global_views=2, preset="decoupled_uniformity")
    paper = ("Dufumier, Barbano, Louiset, Duchesnay, Gori, Integrating Prior Knowledge in Contrastive Learning with "
             "Kernel, ICML 2023 (arXiv:2206.01646)")
    citation = (
        "@inproceedings{dufumier2023integrating,\n  title={Integrating Prior Knowledge in Contrastive Learning with Kernel},\n"
        "  author={Dufumier, Benoit and Barbano, Carlo Alberto and Louiset, Robin and Duchesnay, Edouard and Gori, Pietro},\n"
        "  booktitle={International Conference on Machine Learning (ICML)},\n  year={2023}\n}"
    )

    def __init__(self, backbone: nn.Module, cfg: DecoupledUniformityConfig) -> None:
        super().__init__(backbone, cfg)
        self.projector = DecoupledUniformityProjector(backbone.num_features, cfg.proj_hidden_dim, cfg.proj_output_dim)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        views = batch["global"]
        features = self.backbone(torch.cat(views))  # view-major (V*B, F)
        z = self.projector(features)
        z = z.view(len(views), -1, z.shape[1]).transpose(0, 1)  # (B, V, D): row i = image i
        cfg, prior = self.cfg, None
        if cfg.kernel != "none":
            prior = batch.get("prior")
            if prior is None:
                raise UserError(
                    f"[method] kernel = '{cfg.kernel}' needs a per-sample prior in the batch, but the dataset gives none: "
                    "set [data] prior_file (or prior_column for 'hf'), use a dataset that computes one "
                    "(digits_thumbnail_prior, image_folder_thumbnail_prior), or set kernel = 'none'"
                )
        out = decoupled_uniformity_loss(z, prior, kernel=None if cfg.kernel == "none" else cfg.kernel, sigma=cfg.sigma,
                                        kernel_lambda=cfg.kernel_lambda, t=cfg.t)
        return {"loss": out.loss, "align": out.align.detach(), "features": features}

    def encoder(self) -> nn.Module:
        return FirstLayerEncoder(self.backbone, self.projector[0])

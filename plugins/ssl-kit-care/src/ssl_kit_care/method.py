"""CARE (Gupta et al., ICLR 2024): SimCLR or MoCo v2 plus an orthogonal-equivariance term on group-augmented copies."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ssl_kit import Method, ViewSpec
from ssl_kit.config import knob
from ssl_kit.errors import UserError
from ssl_kit.losses import moco_infonce, nt_xent
from ssl_kit.methods.ema import EMA
from ssl_kit.methods.heads import mlp
from ssl_kit.methods.queue import Queue

from ssl_kit_care.loss import equivariance_loss


@dataclasses.dataclass(frozen=True)
class CAREConfig:
    base: Literal["simclr", "mocov2"] = knob(
        "simclr", "contrastive term: 'simclr' (InfoNCE over the batch) or 'mocov2' (the original asymmetric MoCo v2: "
        "query encoder, EMA key encoder, a queue); the equivariance term is computed on the (query) encoder"
    )
    weight: float = knob(
        0.01, "weight w of the equivariance term (STL-10 0.01, CIFAR-10 0.03, CIFAR-100 0.001, ImageNet-100 0.005); "
        "0: the plain base method, without group views or the two extra forward passes", min=0
    )
    equiv_splits: int = knob(
        8, "chunks C of the GLOBAL batch whose Gram matrices are matched (STL-10 8, CIFAR-10 16, CIFAR-100 4)", min=1
    )
    share_across_groups: bool = knob(
        False, "one augmentation pair (t1, t2) for the whole batch, as the released code draws it; false: every chunk "
        "gets its own pair, as the paper describes ([views] shared_groups = equiv_splits)"
    )
    temperature: float = knob(0.5, "InfoNCE temperature (CIFAR / STL-10: 0.5, ImageNet-100: 0.2)", gt=0)
    proj_hidden_dim: int = knob(512, "projector hidden width (CIFAR / STL-10: 512; ImageNet-100: 2048)", min=1)
    proj_output_dim: int = knob(128, "projector output width", min=1)
    proj_batch_norm: bool = knob(
        True, "BN after the hidden Linear (whose bias is dropped): CARE's CIFAR / STL-10 head; its ImageNet-100 heads "
        "have none"
    )
    queue_size: int = knob(65536, "mocov2: negatives kept in the queue; must divide by the global batch", min=1)
    base_tau: float = knob(0.99, "mocov2: key-encoder EMA momentum at the start (CARE's ImageNet-100 script: 0.99)",
                           min=0, max=1)
    final_tau: float = knob(0.99, "mocov2: momentum at the end, cosine schedule (= base_tau: constant, as CARE's "
                            "script)", min=0, max=1)

    def __post_init__(self) -> None:
        if self.final_tau < self.base_tau:
            raise ValueError(f"key 'final_tau' ({self.final_tau}) must be >= base_tau ({self.base_tau})")


class CARE(Method):
    """backbone -> projector; NT-Xent (simclr) or MoCo v2's InfoNCE (mocov2) on the two global views,
    plus ``weight`` x :func:`~ssl_kit_care.loss.equivariance_loss` between the L2-normalised
    projections of the two group views (batch["group"], one forward pass each), chunked on the
    global batch. Evaluation and export use the backbone (MoCo's query encoder)."""

    min_global_views = 2
    views = ViewSpec(global_views=2, preset="care")
    paper = ("Gupta, Robinson, Lim, Villar, Jegelka, Structuring Representation Geometry with Rotationally "
             "Equivariant Contrastive Learning, ICLR 2024 (arXiv:2306.13924)")
    citation = (
        "@inproceedings{gupta2024structuring,\n  title={Structuring Representation Geometry with Rotationally "
        "Equivariant Contrastive Learning},\n  author={Gupta, Sharut and Robinson, Joshua and Lim, Derek and Villar, "
        "Soledad and Jegelka, Stefanie},\n  booktitle={International Conference on Learning Representations},\n"
        "  year={2024}\n}"
    )

    def __init__(self, backbone: nn.Module, cfg: CAREConfig) -> None:
        super().__init__(backbone, cfg)
        self.projector = mlp(backbone.num_features, cfg.proj_hidden_dim, cfg.proj_output_dim,
                             batch_norm=cfg.proj_batch_norm)
        if cfg.base == "mocov2":  # built in MoCo's order, so one seed gives MoCo's initial weights and queue
            self.key_encoder = EMA(self.query_encoder(), cfg.base_tau, cfg.final_tau)
            self.queue = Queue(cfg.queue_size, cfg.proj_output_dim)
            self.staged_keys: list[torch.Tensor] = []  # this step's keys, one (1, B, dim) per micro-batch

    def query_encoder(self) -> nn.Module:
        return nn.Sequential(self.backbone, self.projector)

    def groups(self) -> int:
        """[views] shared_groups that CARE's chunks need: one augmentation pair per chunk, or one in all."""
        return 1 if self.cfg.share_across_groups else self.cfg.equiv_splits

    def view_spec(self) -> ViewSpec:
        if self.cfg.weight == 0:  # the plain baseline: no group views to augment
            return type(self).views
        return dataclasses.replace(type(self).views, group_views=2, shared_groups=self.groups())

    def set_views(self, views: ViewSpec) -> None:
        if self.cfg.weight > 0:
            if views.group_views != 2:
                raise UserError(f"[views] group_views = {views.group_views}: CARE with [method] weight > 0 needs 2 "
                                "(the copies under t1 and t2)")
            if views.shared_groups != self.groups():
                raise UserError(
                    f"[views] shared_groups = {views.shared_groups} does not match [method] equiv_splits = "
                    f"{self.cfg.equiv_splits} with share_across_groups = {str(self.cfg.share_across_groups).lower()}: "
                    f"CARE needs shared_groups = {self.groups()} (leave it unset; the method sets it)"
                )
        super().set_views(views)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        cfg, views = self.cfg, batch["global"][:2]
        if cfg.base == "simclr":  # ssl_kit's SimCLR, step for step: one pass over both views
            h = self.backbone(torch.cat(views))
            contrastive = nt_xent(self.projector(h), n_views=2, temperature=cfg.temperature)
            out = {"features": h}
        else:  # ssl_kit's asymmetric MoCo v2: queries of view 1, keys of view 2
            h = [self.backbone(v) for v in views]
            q = F.normalize(self.projector(h[0]), dim=1)
            with torch.no_grad():
                k = F.normalize(self.key_encoder(views[1]), dim=1)
            contrastive = moco_infonce(q, k, self.queue.queue[0], cfg.temperature)
            self.staged_keys.append(k.unsqueeze(0))
            out = {"features": torch.cat(h), "tau": self.key_encoder.momentum.detach().float()}
        loss = contrastive
        if cfg.weight > 0:  # one pass per group view, as the reference: batch-norm statistics per augmentation
            e1, e2 = (F.normalize(self.projector(self.backbone(g)), dim=1) for g in batch["group"][:2])
            equivariance = equivariance_loss(e1, e2, chunks=cfg.equiv_splits)
            loss = contrastive + cfg.weight * equivariance
            out["equivariance"] = equivariance.detach()
        return {"loss": loss, "contrastive": contrastive.detach(), **out}

    def after_step(self, step: int, max_steps: int) -> None:
        if self.cfg.base == "mocov2":
            for keys in self.staged_keys:  # gathered over the processes inside enqueue
                self.queue.enqueue(keys)
            self.staged_keys.clear()
            self.key_encoder.update(self.query_encoder(), step, max_steps)

    def skip_step(self) -> None:
        if self.cfg.base == "mocov2":
            self.staged_keys.clear()

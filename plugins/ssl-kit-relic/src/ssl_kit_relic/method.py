"""ReLIC (Mitrovic et al., ICLR 2021): instance discrimination plus a KL invariance penalty against an EMA target, with ReLICv2's multi-crop."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch
from torch import nn

from ssl_kit import Method, ViewSpec
from ssl_kit.config import knob
from ssl_kit.errors import UserError
from ssl_kit.methods.ema import EMA
from ssl_kit.methods.heads import mlp

from ssl_kit_relic.loss import relic_loss

# the reference's inits per variant: (log_scale, bias, max_scale)
VARIANT_DEFAULTS = {"contrastive": (math.log(1.0), 0.0, 5.0), "siglip": (math.log(10.0), -10.0, 15.0)}


@dataclasses.dataclass
class ReLICConfig:
    variant: Literal["contrastive", "siglip"] = knob(
        "contrastive", "discrimination term: 'contrastive' (cross-entropy, the paper) or 'siglip' (pairwise sigmoid loss)"
    )
    alpha: float = knob(1.0, "weight of the KL invariance penalty (ReLIC: 1)", min=0)
    init_log_scale: float | None = knob(
        None, "initial learnable log-scale tau of the logits, s = exp(tau) (default: log 1 contrastive, log 10 siglip)"
    )
    init_bias: float | None = knob(
        None, "initial learnable logit bias b; it cancels in the contrastive variant (default: 0 contrastive, -10 siglip)"
    )
    max_scale: float | None = knob(
        None, "hard upper bound of exp(tau), not of tau (default: 5 contrastive, 15 siglip)", gt=0
    )
    mlp_hidden_dim: int = knob(512, "critic MLP hidden width (Linear-ReLU-Linear, no biases, no BN)", min=1)
    mlp_output_dim: int = knob(64, "critic MLP output width", min=1)
    gamma0: float = knob(0.99, "EMA momentum at the start of the cosine schedule to 1 (README CIFAR run: 0.99; package default 0.995)", min=0, max=1)
    ema_update_after: int = knob(1, "the target is a hard copy of the online network after optimizer steps k <= this (the reference's after_step)", min=0)
    ema_update_every: int = knob(1, "after that, EMA-update the target at steps k divisible by this", min=1)
    pairing: Literal["views", "reference"] = knob(
        "views", "online views paired with each target: 'views' = globals + locals; 'reference' = the released code's globals + views[:n_local] (re-uses globals, skips locals)"
    )

    def __post_init__(self) -> None:
        # None means "the variant's default"; filled in here so the run directory records the value
        log_scale, bias, max_scale = VARIANT_DEFAULTS[self.variant]
        self.init_log_scale = log_scale if self.init_log_scale is None else self.init_log_scale
        self.init_bias = bias if self.init_bias is None else self.init_bias
        self.max_scale = max_scale if self.max_scale is None else self.max_scale


class ReLIC(Method):
    """Online encoder + critic MLP against an EMA target (parameters and BN buffers) of both; the loss
    is the mean of relic_loss over every (target global view t, online view o != t) pair.
    Evaluation and export use the target's encoder, as the paper does."""

    views = ViewSpec(global_views=2, local_views=4, global_scale=(0.1, 1.0), local_scale=(0.05, 1.0),
                     preset="relic", normalize=False)
    paper = "Mitrovic et al., Representation Learning via Invariant Causal Mechanisms, ICLR 2021 (arXiv:2010.07922)"
    citation = (
        "@inproceedings{mitrovic2021representation,\n  title={Representation Learning via Invariant Causal Mechanisms},\n"
        "  author={Mitrovic, Jovana and McWilliams, Brian and Walker, Jacob and Buesing, Lars and Blundell, Charles},\n"
        "  booktitle={International Conference on Learning Representations},\n  year={2021}\n}"
    )

    def __init__(self, backbone: nn.Module, cfg: ReLICConfig) -> None:
        super().__init__(backbone, cfg)
        self.critic = mlp(backbone.num_features, cfg.mlp_hidden_dim, cfg.mlp_output_dim, bias=False)
        self.log_scale = nn.Parameter(torch.tensor(float(cfg.init_log_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(cfg.init_bias)))
        self.target = EMA(self.online(), cfg.gamma0, 1.0, ema_buffers=True)
        # K of the gamma schedule, set by on_train_start; a buffer, so a resumed run keeps it
        self.register_buffer("ema_horizon", torch.zeros((), dtype=torch.long))

    def online(self) -> nn.Module:
        return nn.Sequential(self.backbone, self.critic)

    def set_views(self, views: ViewSpec) -> None:
        if views.global_views + views.local_views < 2:
            raise UserError(f"[views] ReLIC needs at least 2 views (global_views + local_views), got "
                            f"{views.global_views + views.local_views}")
        super().set_views(views)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        globals_, locals_ = list(batch["global"]), list(batch.get("local", []))
        if self.cfg.pairing == "views":
            views = globals_ + locals_
        else:  # the released code: views[:n_local] of views = globals + locals, so globals twice
            views = globals_ + (globals_ + locals_)[: len(locals_)]
        features = [self.backbone(v) for v in views]  # one view at a time: BN statistics per view
        online = [self.critic(h) for h in features]
        with torch.no_grad():
            targets = [self.target(v) for v in globals_]
        pairs = [(t, o) for t in range(len(targets)) for o in range(len(online)) if o != t]
        cfg = self.cfg
        terms = [relic_loss(online[o], targets[t], self.log_scale, self.logit_bias, alpha=cfg.alpha,
                            max_scale=cfg.max_scale, variant=cfg.variant) for t, o in pairs]
        return {
            "loss": torch.stack([term.loss for term in terms]).mean(),
            "kl": torch.stack([term.kl for term in terms]).mean().detach(),
            "scale": self.log_scale.detach().exp().clamp(max=cfg.max_scale),
            "logit_bias": self.logit_bias.detach(),
            "gamma": self.target.momentum.detach().float(),
            "features": torch.cat(features[: len(globals_)]),
        }

    def on_train_start(self, steps_per_epoch: int, max_steps: int) -> None:
        # the reference's K = steps_per_epoch * (epochs + 2) - after_step, with epochs = max_steps / steps_per_epoch
        self.ema_horizon.fill_(max_steps + 2 * steps_per_epoch - self.cfg.ema_update_after)

    def after_step(self, step: int, max_steps: int) -> None:
        """At optimizer step k = ``step``: k <= ema_update_after: hard copy; else (every
        ema_update_every steps) EMA with the current gamma, then gamma <- gamma_k =
        1 - (1 - gamma0)(cos(pi k / K) + 1) / 2. With the defaults: copy at k = 1, first EMA update at k = 2."""
        if step <= self.cfg.ema_update_after:
            self.target.copy_from(self.online())
        elif step % self.cfg.ema_update_every == 0:
            if int(self.ema_horizon) <= 0:
                raise RuntimeError("ReLIC.after_step: call on_train_start(steps_per_epoch, max_steps) first (the trainer does)")
            self.target.update(self.online(), step, int(self.ema_horizon))

    def encoder(self) -> nn.Module:
        return self.target.target[0]

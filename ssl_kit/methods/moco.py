"""MoCo v2+ (solo-learn's symmetric flavour) and the original asymmetric MoCo v2 (Chen et al. 2020)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_kit.config import knob
from ssl_kit.losses import moco_infonce
from ssl_kit.methods.base import Method
from ssl_kit.methods.ema import EMA
from ssl_kit.methods.heads import mlp
from ssl_kit.spec import ViewSpec
from ssl_kit.methods.queue import Queue


@dataclasses.dataclass
class MoCoConfig:
    temperature: float = knob(0.2, "InfoNCE temperature", gt=0)
    queue_size: int = knob(32768, "negatives kept per queue; must divide by the global batch", min=1)
    proj_hidden_dim: int = knob(2048, "projector hidden width", min=1)
    proj_output_dim: int = knob(256, "projector output width (key/query dimension)", min=1)
    base_tau: float = knob(0.99, "key-encoder EMA momentum at the start (cosine schedule)", min=0, max=1)
    final_tau: float = knob(0.999, "key-encoder EMA momentum at the end", min=0, max=1)
    symmetric: bool = knob(True, "v2+: both views as queries with one queue per view; false: the original asymmetric MoCo v2")


class MoCo(Method):
    """Queries from the online encoder, keys from its EMA copy, negatives from a queue of past keys
    gathered over all processes. Evaluation and export use the query encoder (online backbone).

    ``forward`` stages its keys; :meth:`after_step` enqueues them once the optimizer step is taken
    (a skipped non-finite step leaves the queue as it was). The micro-batches of one accumulated
    step all see the queue as it was before that step, as one large batch would.
    """

    min_global_views = 2
    views = ViewSpec(global_views=2, preset="mocov2")

    def __init__(self, backbone: nn.Module, cfg: MoCoConfig) -> None:
        super().__init__(backbone, cfg)
        self.projector = mlp(backbone.num_features, cfg.proj_hidden_dim, cfg.proj_output_dim)
        self.key_encoder = EMA(nn.Sequential(backbone, self.projector), cfg.base_tau, cfg.final_tau)
        self.queue = Queue(cfg.queue_size, cfg.proj_output_dim, queues=2 if cfg.symmetric else 1)
        self.staged_keys: list[torch.Tensor] = []  # this step's keys, (queues, B, dim) per micro-batch

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        views = batch["global"][:2]
        h = [self.backbone(v) for v in views]
        q = [F.normalize(self.projector(x), dim=1) for x in h]
        with torch.no_grad():
            k = [F.normalize(self.key_encoder(v), dim=1) for v in views]
        negatives = self.queue.queue
        t = self.cfg.temperature
        if self.cfg.symmetric:  # queue v holds past keys of view v
            loss = (moco_infonce(q[0], k[1], negatives[1], t) + moco_infonce(q[1], k[0], negatives[0], t)) / 2
            self.staged_keys.append(torch.stack(k))
        else:
            loss = moco_infonce(q[0], k[1], negatives[0], t)
            self.staged_keys.append(k[1].unsqueeze(0))
        return {"loss": loss, "tau": self.key_encoder.momentum.detach().float(), "features": torch.cat(h)}

    def after_step(self, step: int, max_steps: int) -> None:
        for keys in self.staged_keys:  # gathered over the processes inside enqueue
            self.queue.enqueue(keys)
        self.staged_keys.clear()
        self.key_encoder.update(nn.Sequential(self.backbone, self.projector), step, max_steps)

    def skip_step(self) -> None:
        self.staged_keys.clear()

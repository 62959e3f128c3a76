"""The ReLIC loss (Mitrovic et al., ICLR 2021) as a pure function of tensors."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from ssl_kit import distributed
from ssl_kit.losses import exact, working_dtype

VARIANTS = ("contrastive", "siglip")


class RelicLoss(NamedTuple):
    loss: torch.Tensor  # C + alpha * KL
    kl: torch.Tensor  # the invariance term KL, for logging


@exact
def relic_loss(
    online: torch.Tensor,
    target: torch.Tensor,
    log_scale: torch.Tensor | float,
    bias: torch.Tensor | float,
    *,
    alpha: float = 1.0,
    max_scale: float = 5.0,
    variant: Literal["contrastive", "siglip"] = "contrastive",
    gather: bool = True,
) -> RelicLoss:
    """ReLIC's loss for one (online view, target view) pair: instance discrimination plus an
    invariance penalty (Mitrovic et al. 2021, eq. 3; the critic of relic-pytorch 0.4.1).

        x = online / ||online||,  x' = target / ||target||       (rows: the same n images)
        s = min(exp(log_scale), max_scale)                       (a HARD clamp: ds/dlog_scale = 0 above it)
        L = s * x x'^T + b                                       (n, n) logits
        contrastive:  C = cross_entropy(L, arange(n)) = -(1/n) sum_i log softmax(L_i.)_i
        siglip:       C = -(1/n) sum_ij log sigmoid(Y_ij L_ij),   Y = 2I - 1
        P = softmax(L, dim=1)   (online i over targets),  Q = softmax(L, dim=0)^T (target i over online rows)
        KL = (1/n) sum_ij Q_ij (log Q_ij - log P_ij)             (no stop-gradient on either side)
        loss = C + alpha * KL

    ``log_scale`` is a learnable log-scale, not a temperature (the logits are multiplied by
    exp(log_scale)); ``max_scale`` bounds exp(log_scale), not log_scale. In the contrastive variant
    the bias b adds the same constant to every logit, which cancels in both softmaxes: C and KL do
    not depend on it, and it is left out of L, so its gradient is exactly zero (not rounding noise).
    Only the SigLIP variant trains b.

    Args:
        online: (n, D) raw online projections (the critic's output), row i = image i.
        target: (n, D) raw target (EMA) projections of another view, row i = image i. Not detached
            here: the method passes them from its no-grad target branch.
        log_scale: scalar tensor (learnable) or number; defaults of ReLIC: log 1 (contrastive),
            log 10 (SigLIP).
        bias: scalar tensor (learnable) or number; 0 (contrastive), -10 (SigLIP).
        alpha: weight of the KL term, >= 0 (ReLIC: 1).
        max_scale: upper bound of exp(log_scale), > 0 (ReLIC: 5 contrastive, 15 SigLIP).
        variant: "contrastive" (default) or "siglip".
        gather: all-gather online and target rows of every process first
            (:func:`ssl_kit.distributed.gather`, with gradient), so that every process computes the
            full (P*n, P*n) loss of the global batch; DDP's gradient averaging then gives exactly
            the one-process gradient. Identity with one process.

    Returns:
        ``RelicLoss(loss, kl)``, scalars. float32 for half-precision inputs, else the inputs' dtype
        (float64 stays float64; nothing is downcast). Runs outside autocast.

    Raises:
        ValueError: shapes differ or are not 2-D, unknown variant, alpha < 0 or max_scale <= 0.
    """
    if online.ndim != 2 or online.shape != target.shape or online.shape[0] == 0:
        raise ValueError(
            f"relic_loss expects online and target of the same shape (n, D), got {tuple(online.shape)} and {tuple(target.shape)}"
        )
    if variant not in VARIANTS:
        raise ValueError(f"relic_loss: unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    if not alpha >= 0:
        raise ValueError(f"relic_loss needs alpha >= 0, got {alpha}")
    if not max_scale > 0:
        raise ValueError(f"relic_loss needs max_scale > 0, got {max_scale}")
    dtype = torch.promote_types(working_dtype(online).dtype, working_dtype(target).dtype)
    online, target = online.to(dtype), target.to(dtype)
    log_scale = torch.as_tensor(log_scale, device=online.device)
    bias = torch.as_tensor(bias, device=online.device)
    if gather:
        online, target = distributed.gather(online), distributed.gather(target)
    n = online.shape[0]
    scale = torch.clamp(torch.exp(log_scale), max=max_scale)
    cosine = F.normalize(online, dim=1, eps=1e-12) @ F.normalize(target, dim=1, eps=1e-12).T
    if variant == "siglip":
        logits = scale * cosine + bias
        sign = 2 * torch.eye(n, dtype=dtype, device=online.device) - 1
        discrimination = -F.logsigmoid(sign * logits).sum() / n
    else:
        logits = scale * cosine
        discrimination = F.cross_entropy(logits, torch.arange(n, device=online.device))
    log_p = F.log_softmax(logits, dim=1)
    log_q = F.log_softmax(logits, dim=0).T
    kl = F.kl_div(log_p, log_q, reduction="sum", log_target=True) / n
    loss = discrimination + alpha * kl
    if variant == "contrastive" and bias.requires_grad:
        loss = loss + 0 * bias  # b cancels; keep it in the graph (exact zero gradient, DDP sees it used)
    return RelicLoss(loss, kl)

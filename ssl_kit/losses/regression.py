"""Non-contrastive losses: BYOL's normalised regression and SimSiam's negative cosine."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ssl_kit.losses.contrastive import exact, working_dtype

RowSimilarity = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def row_similarity(p: torch.Tensor, z: torch.Tensor, similarity: RowSimilarity = "cosine") -> torch.Tensor:
    """Similarity of matching rows (N,): ``"cosine"`` (F.normalize eps 1e-12) or a callable
    ``sim(p, z) -> (N,)`` on the raw inputs."""
    if callable(similarity):
        return similarity(p, z)
    if similarity == "cosine":
        # bit for bit the values and gradients of (F.normalize(p, eps=1e-12) * F.normalize(z, eps=1e-12)).sum(1),
        # in one op (only rows with 0 < norm < 1e-12 get another gradient: there the clamp is not differentiated)
        return F.cosine_similarity(p, z, dim=1, eps=1e-12)
    raise ValueError(f"unknown similarity {similarity!r}; allowed: cosine or a callable")


def _check(p: torch.Tensor, z: torch.Tensor, name: str) -> None:
    if p.ndim != 2 or p.shape != z.shape:
        raise ValueError(f"{name} expects p and z of the same shape (N, D), got {tuple(p.shape)} and {tuple(z.shape)}")


@exact
def byol_loss(p: torch.Tensor, z: torch.Tensor, similarity: RowSimilarity = "cosine") -> torch.Tensor:
    """BYOL (Grill et al., NeurIPS 2020, eq. 2): l(p, z') = 2 - 2 cos(p, sg(z')), mean over the batch.

    Args:
        p: (N, D) online predictions. z: (N, D) target projections of the other view (row i the
            same image); ``z`` is detached here (stop-gradient).
        similarity: "cosine" or a callable on matching rows returning (N,).
    Returns: scalar; float32 for half inputs, else the input dtype. The symmetric BYOL loss is
        ``byol_loss(p1, z2) + byol_loss(p2, z1)``.
    """
    _check(p, z, "byol_loss")
    p, z = working_dtype(p), working_dtype(z).detach()
    return torch.rsub(row_similarity(p, z, similarity), 2, alpha=2).mean()  # 2 - 2 s in one op (same bits)


@exact
def simsiam_loss(p: torch.Tensor, z: torch.Tensor, similarity: RowSimilarity = "cosine") -> torch.Tensor:
    """SimSiam (Chen & He, CVPR 2021, eq. 1): D(p, z) = -cos(p, sg(z)), mean over the batch.

    Args: p (N, D) predictions, z (N, D) projections of the other view (detached here).
    Returns: scalar. The symmetric loss is ``0.5 * simsiam_loss(p1, z2) + 0.5 * simsiam_loss(p2, z1)``.
    """
    _check(p, z, "simsiam_loss")
    p, z = working_dtype(p), working_dtype(z).detach()
    return -row_similarity(p, z, similarity).mean()

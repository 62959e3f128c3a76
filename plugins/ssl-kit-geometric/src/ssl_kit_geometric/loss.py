"""Geometric Contrastive Learning's similarity and losses (Koishekenov et al., ICCV 2023 VIPriors
workshop) as pure functions of tensors.

The one idea: on the unit hypersphere the cosine c = â·b̂ is replaced by the normalised geodesic
similarity g(c) = 1 - arccos(c)/π, which falls linearly with the angle between a and b. SimCLR's
NT-Xent and MoCo's InfoNCE take it through the core losses' ``similarity=`` argument; BYOL and
SimSiam get the squared normalised geodesic distance (our variant) or the released code's formulas.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from ssl_kit.losses import byol_loss, exact, moco_infonce, nt_xent, row_similarity, simsiam_loss, working_dtype

#: the clamps of the reference code: NT-Xent (SimCLR, BYOL, SimSiam) and MoCo
SIMCLR_EPS = 1e-7
MOCO_EPS = 1e-6


def _check_eps(eps: float, dtype: torch.dtype) -> None:
    # 1 - eps must stay below 1 in the working dtype: arccos' gradient at exactly 1 is infinite, and
    # masked entries (NT-Xent's self pairs) would turn 0 * inf into NaN
    smallest = torch.finfo(dtype).eps / 2
    if not smallest <= eps < 1:
        raise ValueError(f"geodesic eps must be in [{smallest:.3g}, 1) for {dtype} (so that 1 - eps < 1), got {eps}")


def geodesic_distance(cosine: torch.Tensor, eps: float = SIMCLR_EPS) -> torch.Tensor:
    """The normalised geodesic (great-circle) distance between unit vectors with cosine c:

        d(c) = arccos(clamp(c, -1 + eps, 1 - eps)) / π   ∈ [0, 1]   (0: same direction, 1: opposite)

    The clamp keeps arccos' gradient -1/sqrt(1 - c²) finite; at and beyond the bounds (c = ±1
    exactly included) the gradient is that of the clamp: 0.

    Args:
        cosine: cosines of any shape (already computed from normalised vectors).
        eps: clamp margin (the reference: 1e-7 for NT-Xent, 1e-6 for MoCo); at least half the
            working dtype's machine epsilon (float32: 5.96e-8) so that 1 - eps < 1.
    Returns: the same shape; float32 for half-precision inputs, else the input dtype.
    """
    cosine = working_dtype(cosine)
    _check_eps(eps, cosine.dtype)
    return torch.acos(cosine.clamp(-1 + eps, 1 - eps)) / math.pi


def geodesic_similarity(cosine: torch.Tensor, eps: float = SIMCLR_EPS) -> torch.Tensor:
    """The normalised geodesic similarity of Geometric Contrastive Learning:

        g(c) = 1 - arccos(clamp(c, -1 + eps, 1 - eps)) / π  = 1 - d(c)   ∈ [0, 1]

    g(1) = 1 (up to the clamp), g(0) = 1/2, g(-1) = 0. Used exactly where the cosine was, divided
    by the temperature. Shapes, dtype and gradient as :func:`geodesic_distance`.
    """
    return 1 - geodesic_distance(cosine, eps)


def pairwise_geodesic_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = SIMCLR_EPS,
                                 normalize: bool = True) -> torch.Tensor:
    """g(â b̂ᵀ): geodesic similarities (len(a), len(b)) of every row of ``a`` with every row of ``b``.

    Args:
        a: (N, D), b: (M, D) embeddings.
        eps: clamp margin of :func:`geodesic_similarity`.
        normalize: L2-normalise the rows first (F.normalize, eps 1e-12); False when they already
            are (MoCo's queries, keys and queue), so that the cosine is the plain dot product.
    Returns: (N, M), in the promoted dtype of ``a`` and ``b`` (float64 stays float64).
    """
    dtype = torch.promote_types(working_dtype(a).dtype, working_dtype(b).dtype)
    a, b = a.to(dtype), b.to(dtype)
    if normalize:
        a, b = F.normalize(a, dim=1, eps=1e-12), F.normalize(b, dim=1, eps=1e-12)
    return geodesic_similarity(a @ b.T, eps)


@exact
def geodesic_nt_xent(z: torch.Tensor, n_views: int = 2, temperature: float = 0.05, eps: float = SIMCLR_EPS,
                     gather: bool = True) -> torch.Tensor:
    """Geometric SimCLR: NT-Xent (Chen et al., ICML 2020, eq. 1) with the geodesic similarity,

        S_ik = g(ẑ_i · ẑ_k) / T,    L = -1/|rows| Σ_i log( Σ_{p∈P(i)} exp(S_ip) / Σ_{k≠i} exp(S_ik) )

    with k over the rows of every process and P(i) the other views of row i's image: exactly
    :func:`ssl_kit.losses.nt_xent` with ``similarity`` = :func:`pairwise_geodesic_similarity`.

    Args:
        z: (V*N, D) raw projector outputs of this process's N images, VIEW-MAJOR (rows
            [v*N, (v+1)*N) are view v; row v*N + i is image i).
        n_views: V >= 2.
        temperature: T > 0 (the paper: 0.05 on CIFAR and ImageNet-100).
        eps: clamp margin of g (the reference: 1e-7).
        gather: negatives from every process (with gradient); identity with one process.
    Returns: scalar mean over this process's rows; float64 in, float64 out; float32 for half inputs.
    """
    _check_eps(eps, working_dtype(z).dtype)  # before the gather: every process fails, none hangs
    return nt_xent(z, n_views=n_views, temperature=temperature, gather=gather,
                   similarity=functools.partial(pairwise_geodesic_similarity, eps=eps))


@exact
def geodesic_moco_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.05,
                          eps: float = MOCO_EPS) -> torch.Tensor:
    """Geometric MoCo: InfoNCE (He et al., CVPR 2020, eq. 1) with geodesic logits,

        logits_i = [g(q_i·k_i), g(q_i·queue_1), ..., g(q_i·queue_K)] / T,
        L = cross_entropy(logits, target 0), mean over the N queries

    exactly :func:`ssl_kit.losses.moco_infonce` with ``similarity`` = :func:`pairwise_geodesic_similarity`
    (no re-normalisation: the dot products of the given unit vectors are their cosines).

    Args:
        q: (N, D) queries, L2-normalised by the caller.
        k: (N, D) normalised keys of the other view from the momentum encoder (detached here).
        queue: (D, K) normalised negative keys (detached here).
        temperature: T > 0 (the paper: 0.05).
        eps: clamp margin of g (the reference: 1e-6).
    Returns: scalar; float64 in, float64 out; float32 for half inputs.
    """
    _check_eps(eps, working_dtype(q).dtype)
    return moco_infonce(q, k, queue, temperature,
                        similarity=functools.partial(pairwise_geodesic_similarity, eps=eps, normalize=False))


def _check_pair(p: torch.Tensor, z: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if p.ndim != 2 or p.shape != z.shape or p.shape[0] == 0:
        raise ValueError(f"{name} expects p and z of the same shape (N, D), got {tuple(p.shape)} and {tuple(z.shape)}")
    dtype = torch.promote_types(working_dtype(p).dtype, working_dtype(z).dtype)
    return p.to(dtype), z.to(dtype).detach()


@exact
def squared_geodesic_loss(p: torch.Tensor, z: torch.Tensor, eps: float = SIMCLR_EPS) -> torch.Tensor:
    """Our geodesic BYOL / SimSiam regression: the squared normalised geodesic distance between a
    prediction and the stop-gradient target,

        ℓ(p, z) = 1/N Σ_n d(cos(p_n, sg(z_n)))² = 1/N Σ_n (arccos(clamp(cos, -1 + eps, 1 - eps)) / π)²

    Zero when p_n and z_n point the same way, 1 when opposite; it replaces BYOL's 2 - 2 cos (a
    squared chord length) by the squared arc length. BYOL sums ℓ(p₁, z₂) + ℓ(p₂, z₁), SimSiam
    averages the two directions. (The released code has no geodesic version of these losses:
    see :func:`released_byol_loss` and :func:`released_simsiam_loss`.)

    Args:
        p: (N, D) online predictions. z: (N, D) targets of the other view, row n the same image
            (detached here: stop-gradient).
        eps: clamp margin of d (1e-7, as the reference's NT-Xent).
    Returns: scalar; float64 in, float64 out; float32 for half inputs.
    """
    p, z = _check_pair(p, z, "squared_geodesic_loss")
    return (geodesic_distance(row_similarity(p, z), eps) ** 2).mean()


def _released_byol_similarity(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return 1 - row_similarity(p, z) / math.pi


@exact
def released_byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The released code's "geometric" BYOL loss (reference: solo/losses/byol.py, geometric branch),
    reproduced for comparison only:

        sim_n = 1 - cos(p_n, sg(z_n)) / π,    ℓ = 2 - 2 · 1/N Σ_n sim_n  =  (2/π) · 1/N Σ_n cos(p_n, z_n)

    No arccos at all, and the sign is flipped: minimising ℓ pushes predictions AWAY from their
    targets (BYOL's predictor can learn to negate its output, so training still runs).

    Args: p (N, D) predictions, z (N, D) targets (detached here).
    Returns: scalar; float64 in, float64 out. The released total is ℓ(p₁, z₂) + ℓ(p₂, z₁).
    """
    p, z = _check_pair(p, z, "released_byol_loss")
    return byol_loss(p, z, similarity=_released_byol_similarity)


def _released_simsiam_similarity(p: torch.Tensor, z: torch.Tensor, eps: float) -> torch.Tensor:
    products = F.normalize(p, dim=1, eps=1e-12) * F.normalize(z, dim=1, eps=1e-12)  # (N, D), not summed
    return geodesic_similarity(products, eps).sum(dim=1)


@exact
def released_simsiam_loss(p: torch.Tensor, z: torch.Tensor, eps: float = SIMCLR_EPS) -> torch.Tensor:
    """The released code's "geometric" SimSiam loss (reference: solo/losses/simsiam.py, geometric
    branch), reproduced for comparison: g is applied to each coordinate's product p̂_nd ẑ_nd
    instead of to the cosine Σ_d p̂_nd ẑ_nd,

        ℓ = -1/N Σ_n Σ_d (1 - arccos(clamp(p̂_nd ẑ_nd, -1 + eps, 1 - eps)) / π)

    which for small products is ≈ -D/2 - cos(p_n, z_n)/π: a rescaled negative cosine, not a
    geodesic quantity.

    Args: p (N, D) predictions, z (N, D) projections of the other view (detached here); eps as the
        reference (1e-7).
    Returns: scalar; float64 in, float64 out. The released total is ½ℓ(p₁, z₂) + ½ℓ(p₂, z₁).
    """
    p, z = _check_pair(p, z, "released_simsiam_loss")
    return simsiam_loss(p, z, similarity=functools.partial(_released_simsiam_similarity, eps=eps))

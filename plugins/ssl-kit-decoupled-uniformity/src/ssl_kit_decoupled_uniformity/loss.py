"""Decoupled Uniformity (Dufumier et al., ICML 2023) as pure functions of tensors: the kernel on
per-sample priors, the kernel centroid weights, and the loss."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ssl_kit import distributed
from ssl_kit.losses import exact, working_dtype

KERNELS = ("rbf", "cosine")
Kernel = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: cond(K + lambda I) above which the centroid weights are reported as unreliable (float64 keeps
#: about 16 digits: at 1e10 the weights keep about 6)
ILL_CONDITIONED = 1e10


class DecoupledUniformityLoss(NamedTuple):
    loss: torch.Tensor  # log mean_{i<j} exp(-t ||mu_i - mu_j||^2), the decoupled uniformity
    align: torch.Tensor  # -mean_i ||mu_i||^2, the alignment of the centroids (logged only; lower is better)


def prior_kernel(prior: torch.Tensor, kernel: Kernel = "rbf", sigma: float | None = None) -> torch.Tensor:
    """The kernel matrix of a batch of priors, in float64, without gradient.

        rbf:     K_ij = exp(-||p_i - p_j||^2 / (2 sigma^2))
        cosine:  K_ij = p_i . p_j / (||p_i|| ||p_j||)      (a zero prior row gives a zero row)

    Args:
        prior: (B, P) per-sample priors (weak attributes or features of another model), or (B,)
            for a single value per sample (used as (B, 1)). Detached and cast to float64 here.
        kernel: "rbf", "cosine", or a callable ``k(p, p) -> (B, B)`` on the float64 (B, P) priors.
        sigma: the RBF bandwidth, > 0; required by "rbf", refused by the others.

    Returns:
        (B, B) float64, symmetric. Squared distances use ||p_i||^2 + ||p_j||^2 - 2 p_i.p_j (as the
        reference code), clamped at 0 with an exact zero diagonal.
    """
    _check_kernel(kernel, sigma)
    p = prior.detach().to(torch.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"prior_kernel expects a prior of shape (B,) or (B, P), got {tuple(prior.shape)}")
    if callable(kernel):
        out = kernel(p, p)
        if out.shape != (len(p), len(p)):
            raise ValueError(f"kernel callable returned shape {tuple(out.shape)}, expected {(len(p), len(p))}")
        return out.detach().to(torch.float64)
    if kernel == "cosine":
        unit = F.normalize(p, dim=1, eps=1e-12)
        return unit @ unit.T
    squared = (p * p).sum(dim=1)
    distances = (squared[:, None] + squared[None, :] - 2 * p @ p.T).clamp_min(0).fill_diagonal_(0)
    return torch.exp(-distances / (2 * sigma**2))


def centroid_weights(kernel_matrix: torch.Tensor, kernel_lambda: float = 0.01) -> torch.Tensor:
    """The kernel centroid estimator's weights A = (K + lambda I)^-1 K, in float64, by a linear solve
    (no explicit inverse), without gradient: mu = A m turns the plain centroids m into
    prior-smoothed ones (the conditional mean embedding estimate of the paper).

    Args:
        kernel_matrix: (B, B) symmetric positive semi-definite kernel matrix K.
        kernel_lambda: the regularisation lambda >= 0 (paper: 0.01); 0 means 1/sqrt(B), as the
            reference code's default.

    Returns:
        (B, B) float64. Warns (``RuntimeWarning``, once per call site) when cond(K + lambda I), from
        its eigenvalues, exceeds :data:`ILL_CONDITIONED` or K + lambda I is not positive definite
        (the weights are then unreliable: raise kernel_lambda, or check the prior and the kernel).
    """
    if kernel_matrix.ndim != 2 or kernel_matrix.shape[0] != kernel_matrix.shape[1]:
        raise ValueError(f"centroid_weights expects a square (B, B) kernel matrix, got {tuple(kernel_matrix.shape)}")
    if not kernel_lambda >= 0:
        raise ValueError(f"centroid_weights needs kernel_lambda >= 0, got {kernel_lambda}")
    k = kernel_matrix.detach().to(torch.float64)
    n = k.shape[0]
    lam = kernel_lambda if kernel_lambda > 0 else 1.0 / math.sqrt(n)
    system = k + lam * torch.eye(n, dtype=k.dtype, device=k.device)
    eigenvalues = torch.linalg.eigvalsh(system)
    smallest, largest = float(eigenvalues[0]), float(eigenvalues[-1])
    if not smallest > 0 or largest / smallest > ILL_CONDITIONED:
        condition = largest / smallest if smallest > 0 else math.inf
        warnings.warn(
            f"decoupled uniformity: K + lambda*I (batch {n}, lambda {lam:g}) is ill-conditioned (condition number "
            f"{condition:.3g}, smallest eigenvalue {smallest:.3g}); the centroid weights are unreliable. Raise "
            "kernel_lambda, or check the prior (duplicated or constant columns) and the kernel",
            RuntimeWarning,
            stacklevel=2,
        )
    return torch.linalg.solve(system, k)


@exact
def decoupled_uniformity_loss(
    z: torch.Tensor,
    prior: torch.Tensor | None = None,
    *,
    kernel: Kernel | None = None,
    sigma: float | None = None,
    kernel_lambda: float = 0.01,
    t: float = 2.0,
    gather: bool = True,
) -> DecoupledUniformityLoss:
    """Decoupled Uniformity (Dufumier et al., "Integrating Prior Knowledge in Contrastive Learning
    with Kernel", ICML 2023; the loss of the released code, Duplums/contrastive-decoupled-uniformity):
    uniformity between the centroids of each image's views instead of between single views, so that
    the positives (the views' agreement) and the negatives are decoupled.

        zhat_iv = z_iv / ||z_iv||,       m_i = (1/V) sum_v zhat_iv        (centroids, not re-normalised)
        no kernel:    mu = m
        with kernel:  K_ij = k(p_i, p_j),  A = (K + lambda I)^-1 K  (float64, detached),  mu = A m
        L     = log( 2 / (B (B - 1)) sum_{i<j} exp(-t ||mu_i - mu_j||^2) )     (computed with logsumexp)
        align = -(1/B) sum_i ||mu_i||^2                                       (logged only)

    Minimising L pulls the views of an image together (a centroid of aligned unit vectors is long)
    and pushes the centroids apart; with a prior, images with similar priors share smoothed
    centroids, so they are not pushed apart.

    Args:
        z: (B, V, D) raw projections, row i = image i, views on dim 1 (V >= 1).
        prior: (B, P) or (B,) per-sample priors (row i = image i; weak attributes or features of
            another model), or None. Required with a kernel, refused without one.
        kernel: None (plain decoupled uniformity), "rbf", "cosine", or a callable ``k(p, p) -> (B, B)``.
        sigma: RBF bandwidth > 0 (paper: ImageNet-100 100, CUB-200 20, UTZappos 100); "rbf" only.
        kernel_lambda: lambda >= 0 of the centroid estimator (paper: 0.01); 0 means 1/sqrt(B).
        t: > 0, the scale of the Gaussian potential (paper: 2).
        gather: gather the rows of every process first (z with gradient, the prior without), so
            that every process computes the loss of the whole global batch (B = the global batch:
            the kernel, the centroid weights and every pair span all processes); DDP's gradient
            averaging then gives exactly the one-process gradient. Identity with one process.

    Returns:
        ``DecoupledUniformityLoss(loss, align)``, scalars: float32 for half-precision inputs, else
        z's dtype (float64 stays float64 end to end; the kernel and A are always float64, and A is
        cast to z's dtype for mu = A m). Runs outside autocast.

    Raises:
        ValueError: z not (B, V, D) with at least 2 rows in all, a prior whose rows differ from z's,
            a kernel without a prior (or a prior without a kernel), an unknown kernel, sigma missing
            for "rbf" or given for another kernel, kernel_lambda < 0 or t <= 0.
    """
    if z.ndim != 3 or z.shape[1] == 0 or z.shape[2] == 0:
        raise ValueError(f"decoupled_uniformity_loss expects z of shape (B, V, D), got {tuple(z.shape)}")
    if kernel is None and prior is not None:
        raise ValueError("decoupled_uniformity_loss: a prior was given without a kernel; pass kernel='rbf' or 'cosine'")
    if kernel is not None:
        if prior is None:
            raise ValueError("decoupled_uniformity_loss: the kernel needs a prior (B, P) or (B,)")
        _check_kernel(kernel, sigma)
        if prior.ndim not in (1, 2) or prior.shape[0] != z.shape[0]:
            raise ValueError(
                f"decoupled_uniformity_loss: prior of shape {tuple(prior.shape)} for z of shape {tuple(z.shape)} "
                "(expected (B,) or (B, P) with B = z.shape[0])"
            )
    if not kernel_lambda >= 0:
        raise ValueError(f"decoupled_uniformity_loss needs kernel_lambda >= 0, got {kernel_lambda}")
    if not t > 0:
        raise ValueError(f"decoupled_uniformity_loss needs t > 0, got {t}")
    # every check above runs before the gather: a bad argument fails on every process, none hangs
    z = working_dtype(z)
    if gather:
        z = distributed.gather(z)
        if prior is not None:
            prior = distributed.gather_nograd(prior.to(z.device))
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"decoupled_uniformity_loss needs at least 2 images in the batch, got {n}")
    centroids = F.normalize(z, dim=2, eps=1e-12).mean(dim=1)  # (B, D)
    if kernel is not None:
        weights = centroid_weights(prior_kernel(prior, kernel, sigma), kernel_lambda)
        centroids = weights.to(centroids.dtype) @ centroids
    squared = (centroids * centroids).sum(dim=1)
    distances = (squared[:, None] + squared[None, :] - 2 * centroids @ centroids.T).clamp_min(0)
    upper = torch.triu_indices(n, n, offset=1, device=z.device)
    potentials = -t * distances[upper[0], upper[1]]  # the n(n-1)/2 pairs i < j
    loss = torch.logsumexp(potentials, dim=0) - math.log(potentials.numel())
    return DecoupledUniformityLoss(loss, -squared.mean())


def _check_kernel(kernel: Kernel, sigma: float | None) -> None:
    if callable(kernel):
        if sigma is not None:
            raise ValueError("sigma applies to the 'rbf' kernel only; a kernel callable takes its own parameters")
        return
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; allowed: {', '.join(KERNELS)} or a callable")
    if kernel == "rbf" and not (sigma is not None and sigma > 0):
        raise ValueError(f"the 'rbf' kernel needs sigma > 0, got {sigma}")
    if kernel != "rbf" and sigma is not None:
        raise ValueError(f"sigma applies to the 'rbf' kernel only, got sigma={sigma} with kernel {kernel!r}")

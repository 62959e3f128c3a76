"""QARe, SparseCLR and the pairwise SimCLR term of Moskalev et al. (ECCV 2022) as pure functions of tensors.

Every loss takes the two sets of a batch: ``z1`` (n, D), the projections of the first view of n
images, and ``z2`` (n, D), those of the second view, row i of both being image i. The reference
code (github.com/amoskalev/contrasting_quadratic) feeds one interleaved (2n, D) tensor instead
(rows 2i and 2i + 1 are image i); the pairwise terms are means over rows of per-row quantities, so
the row order does not change their value, and the set regulariser only sees the two sets.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ssl_kit import distributed
from ssl_kit.losses import exact, similarity_matrix, working_dtype

Similarity = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

CLIP = 1e-8  # the reference's eps of get_similarities


def clipped_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = CLIP) -> torch.Tensor:
    """Cosine similarities clipped from below, as the reference's ``get_similarities``:

        C_ij = max(â_i · b̂_j, eps),   â = a / max(‖a‖, 1e-12)

    The *_qare methods use it for both of their terms (the clip keeps the entries of J + S at
    least 1). A pair whose cosine is below ``eps`` gets exactly zero gradient.

    Args:
        a: (n, D) and b: (m, D) raw embeddings (any scale).
        eps: the floor, > 0 (reference: 1e-8).
    Returns:
        (n, m); float32 for half inputs, else the inputs' dtype (float64 stays float64).
    """
    if not eps > 0:
        raise ValueError(f"clipped_cosine needs eps > 0, got {eps}")
    return similarity_matrix(working_dtype(a), working_dtype(b), "cosine").clamp(min=eps)


def _two_sets(name: str, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(
            f"{name} expects z1 and z2 of the same shape (n, D) with n >= 2, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    dtype = torch.promote_types(working_dtype(z1).dtype, working_dtype(z2).dtype)
    return z1.to(dtype), z2.to(dtype)


@exact
def qare_regularizer(
    z1: torch.Tensor,
    z2: torch.Tensor,
    similarity: Similarity = clipped_cosine,
    gather: bool = True,
) -> torch.Tensor:
    """QARe, the set-contrastive regulariser of Moskalev et al. (ECCV 2022; the reference's
    ``QARe`` module): the eigenvalue upper bound of the quadratic assignment between the two sets.

        S_A = sim(z1, z1),  S_B = sim(z2, z2)                   (n, n) similarities inside each set
        P_A = J + S_A,      P_B = J + S_B                       J the all-ones matrix (1 added to every entry)
        QARe = <λ↑(P_A), λ↑(P_B)> / (n (n - 1))                 λ↑: eigenvalues in ascending order

    For symmetric P_A, P_B and every permutation matrix Π, tr(P_A Π P_B Πᵀ) <= <λ↑(P_A), λ↑(P_B)>
    (the bound over all orthogonal matrices), so QARe bounds the best quadratic assignment of the
    two sets from above; the methods minimise alpha * pairwise + beta * QARe. Two collapsed sets
    (S = J) give the largest possible value, 4n / (n - 1) (the entries of P are at most 2); two
    sets of orthogonal vectors give about (n + 3) / (n - 1).

    The eigenvalues are computed in float64 (``torch.linalg.eigvalsh``; gradients of nearly
    degenerate spectra are unstable in float32) and the result is cast back to the inputs' dtype.
    The gradient of eigvalsh, V diag(dλ) Vᵀ, has no 1 / (λ_i - λ_j) factor: it stays finite for
    repeated eigenvalues (a collapsed set), where it is one of the valid subgradients.

    Args:
        z1: (n, D) projections of the first view, z2: (n, D) of the second (row i: image i), n >= 2.
        similarity: the within-set similarity: the clipped cosine of the reference (default),
            "cosine", "dot", or a callable sim(a, b) -> (len(a), len(b)).
        gather: which sets across processes. True (default): the sets of the GLOBAL batch; z1 and z2
            are all-gathered with gradient (:func:`ssl_kit.distributed.gather`) and every process
            computes the same value, that of one process with the whole batch, so P processes
            reproduce one process exactly (DDP's averaging cancels the gather's summed gradient).
            False: each process's own sets of n images; DDP then optimises the mean over processes
            of the per-process values, a different objective on smaller sets (cheaper: P
            eigendecompositions of n x n instead of one of Pn x Pn on every process).
    Returns:
        Scalar; float32 for half inputs, else the inputs' dtype (float64 stays float64). Runs
        outside autocast.
    Raises:
        ValueError: z1 and z2 not of one shape (n, D) with n >= 2.
    """
    z1, z2 = _two_sets("qare_regularizer", z1, z2)
    if gather:
        z1, z2 = distributed.gather(z1), distributed.gather(z2)
    n = z1.shape[0]
    eigen_a = torch.linalg.eigvalsh((1 + similarity_matrix(z1, z1, similarity)).double())  # ascending
    eigen_b = torch.linalg.eigvalsh((1 + similarity_matrix(z2, z2, similarity)).double())
    return ((eigen_a * eigen_b).sum() / (n * (n - 1))).to(z1.dtype)


@exact
def lap_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.5,
    similarity: Similarity = "cosine",
    gather: bool = True,
) -> torch.Tensor:
    """The pairwise (linear assignment, LAP) term of SimCLR + QARe, and the reference's SimCLR
    objective: SimCLR's ratio with the log taken of its MEAN over the rows (Moskalev et al.,
    ECCV 2022; the reference's ``return_loss_fn`` of methods/simclr.py and simclr_qare.py).

    For the 2n rows r of [z1; z2] with partner p(r) (the other view of the same image), k running
    over the rows of every process:
        C_rk = sim(z_r, z_k)
        ratio_r = exp(C_r,p(r) / T) / Σ_{k≠r} exp(C_rk / T)
        LAP = -log( mean_r ratio_r )             (NT-Xent is mean_r -log ratio_r instead)
    The reference subtracts exp(1/T) from the full row sum for the self term; the self column is
    left out here, which is the same for cosine similarities (C_rr = 1) and right for any other.

    Args:
        z1, z2: (n, D) raw projections of the two views, row i = image i (n >= 2).
        temperature: T > 0 (reference: 0.5).
        similarity: "cosine" (plain SimCLR of the reference), the clipped cosine
            (:func:`clipped_cosine`, SimCLR + QARe), "dot", or a callable.
        gather: negatives from every process (:func:`ssl_kit.distributed.gather`, with gradient).
            The log of a mean over all rows is a global statistic: the ratios are summed over
            processes (:func:`ssl_kit.distributed.all_reduce_sum`) before the log, so every process
            computes the one-process loss of the global batch. Identity with one process.
    Returns:
        Scalar; float32 for half inputs, else the inputs' dtype. Runs outside autocast.
    Raises:
        ValueError: bad shapes, temperature <= 0.
    """
    z1, z2 = _two_sets("lap_loss", z1, z2)
    if not temperature > 0:
        raise ValueError(f"lap_loss needs temperature > 0, got {temperature}")
    z = torch.cat([z1, z2])  # view-major: row r and row (r + n) mod 2n are one image
    rows, n = z.shape[0], z1.shape[0]
    everything = distributed.gather(z) if gather else z
    offset = distributed.rank_offset(rows) if gather else 0
    local = torch.arange(rows, device=z.device)
    logits = similarity_matrix(z, everything, similarity) / temperature
    logits = logits.masked_fill(F.one_hot(offset + local, everything.shape[0]).bool(), float("-inf"))
    positive = logits.gather(1, (offset + (local + n) % rows)[:, None]).squeeze(1)
    ratio = torch.exp(positive - torch.logsumexp(logits, dim=1))
    total, count = ratio.sum(), rows
    if gather:
        total, count = distributed.all_reduce_sum(total), rows * distributed.world_size()
    return -torch.log(total / count)


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax (Martins & Astudillo, ICML 2016): the Euclidean projection of every row onto the
    probability simplex, computed by sorting as in their paper:

        sparsemax(z) = argmin_{p in simplex} ||p - z||² = max(z - τ(z), 0)
        z_(1) >= z_(2) >= ... the sorted entries,  k(z) = max{k : 1 + k z_(k) > Σ_{j<=k} z_(j)}
        τ(z) = (Σ_{j<=k(z)} z_(j) - 1) / k(z)

    Its support {j : z_j > τ(z)} is what SparseCLR's loss needs. Entries may be -inf (they get
    probability 0). Differentiable (autograd through the sort: the Jacobian on the support).

    Args:
        z: (..., K) scores, the simplex along the last dimension.
    Returns:
        The same shape; float32 for half inputs, else the input's dtype.
    """
    z = working_dtype(z)
    ordered = z.sort(dim=-1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    cumulative = ordered.cumsum(dim=-1)
    # the largest k meeting the condition (as the reference; in exact arithmetic they form a prefix)
    size = torch.where(1 + k * ordered > cumulative, k, torch.zeros_like(k)).amax(dim=-1, keepdim=True)
    tau = (cumulative.gather(-1, size.long() - 1) - 1) / size
    return (z - tau).clamp(min=0)


@exact
def sparseclr_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    margin: float = 1.0,
    similarity: Similarity = "cosine",
    gather: bool = True,
) -> torch.Tensor:
    """SparseCLR (Moskalev et al., ECCV 2022; the reference's methods/sparseclr.py): the sparsemax
    loss (Martins & Astudillo, ICML 2016) of every row with its other view as the target,
    on cosine similarities and with no temperature.

    For every row r of [z1; z2] with partner p(r), over the columns k ≠ r of every process:
        x_rk = sim(z_r, z_k) - margin * [k = p(r)]          the positive lowered by the margin
        S_r = support of sparsemax(x_r)                      computed without gradient (a constant set)
        τ_r = (Σ_{k in S_r} x_rk - 1) / |S_r|                with gradient
        ℓ_r = ½ Σ_{k in S_r} (x_rk² - τ_r²) - x_r,p(r) + ½
        loss = mean_r ℓ_r

    Args:
        z1, z2: (n, D) raw projections of the two views, row i = image i (n >= 2).
        margin: subtracted from the positive's similarity, >= 0 (reference: 1).
        similarity: "cosine" (SparseCLR), the clipped cosine (:func:`clipped_cosine`, SparseCLR +
            QARe: clipped before the margin), "dot", or a callable.
        gather: negatives from every process (:func:`ssl_kit.distributed.gather`, with gradient);
            the loss is a mean over this process's rows, which DDP's gradient averaging turns into
            the one-process mean over the global batch. Identity with one process.
    Returns:
        Scalar; float32 for half inputs, else the inputs' dtype. Runs outside autocast.
    Raises:
        ValueError: bad shapes, margin < 0.
    """
    z1, z2 = _two_sets("sparseclr_loss", z1, z2)
    if not margin >= 0:
        raise ValueError(f"sparseclr_loss needs margin >= 0, got {margin}")
    z = torch.cat([z1, z2])
    rows, n = z.shape[0], z1.shape[0]
    everything = distributed.gather(z) if gather else z
    offset = distributed.rank_offset(rows) if gather else 0
    local = torch.arange(rows, device=z.device)
    columns = everything.shape[0]
    is_self = F.one_hot(offset + local, columns).bool()
    partner = (offset + (local + n) % rows)[:, None]
    x = similarity_matrix(z, everything, similarity)
    x = x - margin * F.one_hot(partner.squeeze(1), columns).to(x.dtype)
    with torch.no_grad():
        support = sparsemax(x.masked_fill(is_self, float("-inf"))) > 0
    size = support.sum(dim=1).to(x.dtype)
    tau = (torch.where(support, x, torch.zeros_like(x)).sum(dim=1) - 1) / size
    squares = torch.where(support, x * x, torch.zeros_like(x)).sum(dim=1)
    per_row = 0.5 * (squares - size * tau * tau) - x.gather(1, partner).squeeze(1) + 0.5
    return per_row.mean()

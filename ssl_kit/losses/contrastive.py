"""Contrastive losses as pure functions of tensors."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ssl_kit import distributed

Similarity = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SIMILARITIES = ("cosine", "dot")


def working_dtype(x: torch.Tensor) -> torch.Tensor:
    """Half precision is upcast to float32; float32 and float64 are kept (never downcast)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def exact(loss_fn):
    """Run a loss outside autocast, so mixed-precision training computes it in (at least) float32:
    autocast would otherwise run its matmuls in half precision again."""

    @functools.wraps(loss_fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), "cpu")
        if not _autocast_enabled(device):  # nothing to switch off: skip the context (a few us per call)
            return loss_fn(*args, **kwargs)
        with torch.autocast(device_type=device, enabled=False):
            return loss_fn(*args, **kwargs)

    return wrapper


def _autocast_enabled(device: str) -> bool:
    try:
        return torch.is_autocast_enabled(device)
    except (RuntimeError, TypeError):  # a device type autocast does not know: let the context decide
        return True


def similarity_matrix(a: torch.Tensor, b: torch.Tensor, similarity: Similarity = "cosine") -> torch.Tensor:
    """Pairwise similarities (len(a), len(b)) of raw embeddings.

    ``"cosine"``: â·b̂ with â = a/‖a‖ (F.normalize, eps 1e-12); ``"dot"``: a·b; or a callable
    ``sim(a, b)`` on the raw inputs (e.g. a plugin's geodesic similarity).
    """
    _check_similarity(similarity)
    if callable(similarity):
        out = similarity(a, b)
        if out.shape != (len(a), len(b)):
            raise ValueError(f"similarity callable returned shape {tuple(out.shape)}, expected {(len(a), len(b))}")
        return out
    if similarity == "cosine":
        return F.normalize(a, dim=1, eps=1e-12) @ F.normalize(b, dim=1, eps=1e-12).T
    return a @ b.T  # "dot"


def _check_similarity(similarity: Similarity) -> None:
    if not callable(similarity) and similarity not in SIMILARITIES:
        raise ValueError(f"unknown similarity {similarity!r}; allowed: {', '.join(SIMILARITIES)} or a callable")


@exact
def nt_xent(
    z: torch.Tensor,
    n_views: int = 2,
    temperature: float = 0.2,
    similarity: Similarity = "cosine",
    gather: bool = True,
) -> torch.Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., ICML 2020,
    eq. 1), in its multi-positive form for more than two views.

    Paper (two views, positive pair (i, j)):
        ℓ(i, j) = -log( exp(sim(z_i, z_j)/T) / Σ_{k≠i} exp(sim(z_i, z_k)/T) )
    Here, for every local row i, with k running over the rows of ALL processes:
        S_ik = sim(z_i, z_k) / T,   P(i) = rows of the same image as i in the other views,
        L = -1/|rows| Σ_i log( Σ_{p∈P(i)} exp(S_ip) / Σ_{k≠i} exp(S_ik) )
    computed with logsumexp. With two views P(i) has one element: the paper's loss, averaged
    over the 2N anchors.

    Args:
        z: (V*N, D) raw projector outputs of this process's N images, VIEW-MAJOR: rows
            [v*N, (v+1)*N) are view v, and row v*N + i is image i.
        n_views: V >= 2.
        temperature: T > 0 (solo-learn CIFAR: 0.2).
        similarity: "cosine" (default), "dot", or a callable sim(a, b) -> (len(a), len(b)).
        gather: take negatives from every process (:func:`ssl_kit.distributed.gather`, with
            gradient), so P processes x N images give, row for row, the losses of one process
            with the P*N images. Identity when there is one process.

    Returns:
        Scalar mean over this process's rows; float32 for half inputs, else the input dtype
        (float64 stays float64, never downcast).

    Raises:
        ValueError: z not 2-D, rows not a multiple of n_views, n_views < 2, temperature <= 0,
            or an unknown similarity name.
    """
    if z.ndim != 2:
        raise ValueError(f"nt_xent expects z of shape (V*N, D), got {tuple(z.shape)}")
    if n_views < 2:
        raise ValueError(f"nt_xent needs n_views >= 2, got {n_views}")
    if z.shape[0] == 0 or z.shape[0] % n_views:
        raise ValueError(f"nt_xent: {z.shape[0]} rows are not a positive multiple of n_views={n_views}")
    if not temperature > 0:
        raise ValueError(f"nt_xent needs temperature > 0, got {temperature}")
    _check_similarity(similarity)  # before the gather: every process fails, none hangs
    z = working_dtype(z)
    rows, n = z.shape[0], z.shape[0] // n_views
    everything = distributed.gather(z) if gather else z
    # this process's rows sit at [offset, offset + rows) of the gathered layout (rank-major, then
    # view-major inside each rank); the self and positive columns are found there
    offset = distributed.rank_offset(rows) if gather else 0
    local = torch.arange(rows, device=z.device)
    self_cols = offset + local
    logits = similarity_matrix(z, everything, similarity)
    if callable(similarity):  # its output may be saved by its own backward: no in-place op on it
        logits = (logits / temperature).index_put((local, self_cols), logits.new_tensor(float("-inf")))
    else:  # a fresh matmul result that no backward saves: scale and mask it in place (same values,
        # one (rows, columns) buffer instead of three, and no (rows, columns) int64 one-hot mask)
        logits = logits.div_(temperature).index_put_((local, self_cols), logits.new_tensor(float("-inf")))
    # positives of row v*N+i: rows v'*N+i of the same process, v' != v
    image = local % n
    positive_cols = torch.stack([offset + v * n + image for v in range(n_views)], dim=1)  # (rows, V)
    positive = torch.gather(logits, 1, positive_cols)  # self entry is -inf: drops out of logsumexp
    loss = torch.logsumexp(logits, dim=1) - torch.logsumexp(positive, dim=1)
    return loss.mean()


@exact
def moco_infonce(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    temperature: float = 0.2,
    similarity: Similarity = "dot",
) -> torch.Tensor:
    """MoCo's InfoNCE (He et al., CVPR 2020, eq. 1; v2: Chen et al. 2020):

        logits_i = [sim(q_i, k_i), sim(q_i, queue_1), ..., sim(q_i, queue_K)] / T
        L = cross_entropy(logits, target 0), mean over the N queries

    Args:
        q: (N, D) queries, already L2-normalised by the caller.
        k: (N, D) keys from the momentum encoder (row i: the other view of image i), normalised;
            detached here.
        queue: (D, K) normalised negative keys (detached here).
        temperature: T > 0 (MoCo v2 / solo-learn: 0.2).
        similarity: "dot" (default; on normalised inputs this is the cosine), or a callable
            sim(a, b) -> (len(a), len(b)) on the given vectors (e.g. a geodesic similarity).
    Returns: scalar; float32 for half inputs, else the input dtype.
    """
    if q.ndim != 2 or q.shape != k.shape or queue.ndim != 2 or queue.shape[0] != q.shape[1]:
        raise ValueError(
            f"moco_infonce expects q, k (N, D) and queue (D, K), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(queue.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"moco_infonce needs temperature > 0, got {temperature}")
    q = working_dtype(q)
    k, queue = working_dtype(k).detach().to(q.dtype), working_dtype(queue).detach().to(q.dtype)
    if callable(similarity):
        positive = torch.diagonal(similarity(q, k))
        negative = similarity(q, queue.T)
    elif similarity == "dot":
        positive, negative = (q * k).sum(dim=1), q @ queue
    else:
        raise ValueError(f"unknown similarity {similarity!r}; allowed: dot or a callable")
    logits = torch.cat([positive[:, None], negative], dim=1).div_(temperature)  # in place on the fresh cat: same bits
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))

"""CARE's orthogonal-equivariance loss (Gupta et al., ICLR 2024) as a pure function of tensors."""

from __future__ import annotations

import torch

from ssl_kit import distributed
from ssl_kit.losses import exact, working_dtype


@exact
def equivariance_loss(e1: torch.Tensor, e2: torch.Tensor, chunks: int = 1, *, gather: bool = True) -> torch.Tensor:
    """CARE's orthogonal-equivariance term (Gupta et al., "Structuring Representation Geometry
    with Rotationally Equivariant Contrastive Learning", ICLR 2024), as the released
    ``equivariance_loss`` of github.com/Sharut/CARE computes it.

    Row i of ``e1`` and of ``e2`` embed the same image under two augmentations t1 and t2 that are
    shared by every image of a chunk. The rows are cut into C = ``chunks`` contiguous chunks of
    m = N // C rows (rows past C·m are ignored, as in the reference); with A_k, B_k the rows of
    chunk k and G = A Aᵀ the Gram matrices:

        ℓ_k = (2/m) Σ_i Σ_{j≠i} ((A_k A_kᵀ)_ij − (B_k B_kᵀ)_ij)²      (diagonals dropped)
        L   = (1/C) Σ_k ℓ_k

    For unit-norm rows (what CARE passes), L = 0 exactly when in every chunk one orthogonal map
    R_k links the two augmentations, B_k = A_k R_k: t2 ∘ t1⁻¹ acts as a rotation (or reflection)
    of the embedding sphere. There is no stop-gradient on either side. A chunk of one row has no
    off-diagonal entry and contributes 0.

    Args:
        e1, e2: (N, D) embeddings, row i = image i under t1 and t2. CARE passes L2-normalised
            projections (the loss does not normalise them itself).
        chunks: C >= 1, the number of chunks (CARE's ``equiv_splits``).
        gather: all-gather both tensors (:func:`ssl_kit.distributed.gather`, with gradient) first,
            so the chunks are formed on the GLOBAL batch (rank-major, the positions of one
            process's batch of P·n rows) and every process computes the same loss; DDP's gradient
            averaging then gives exactly the one-process gradient. ``gather=False`` forms C chunks
            per process instead (the released ImageNet-100 script's ``equiv-splits-per-gpu``):
            with n rows per process that divide by C, the mean over the processes of their
            losses (what DDP's gradient averaging optimises) is the one-process loss of the
            global batch with P·C chunks, not with C. The same with one process.
            tests/test_care_distributed.py checks both on 2 processes.

    Returns:
        Scalar L; float32 for half-precision inputs, else their dtype (float64 stays float64).
        Runs outside autocast.

    Raises:
        ValueError: shapes differ or are not 2-D, chunks < 1, or fewer rows than chunks.
    """
    if e1.ndim != 2 or e1.shape != e2.shape:
        raise ValueError(f"equivariance_loss expects e1 and e2 of the same shape (N, D), got {tuple(e1.shape)} and "
                         f"{tuple(e2.shape)}")
    if chunks < 1:
        raise ValueError(f"equivariance_loss needs chunks >= 1, got {chunks}")
    dtype = torch.promote_types(working_dtype(e1).dtype, working_dtype(e2).dtype)
    e1, e2 = e1.to(dtype), e2.to(dtype)
    if gather:  # the same rows on every process: the check below fails on all of them, none hangs
        e1, e2 = distributed.gather(e1), distributed.gather(e2)
    rows = e1.shape[0]
    m = rows // chunks
    if m == 0:
        raise ValueError(f"equivariance_loss: {rows} rows cannot form {chunks} chunks of at least one row")
    a = e1[: chunks * m].reshape(chunks, m, -1)
    b = e2[: chunks * m].reshape(chunks, m, -1)
    gap = a @ a.transpose(1, 2) - b @ b.transpose(1, 2)  # (C, m, m)
    off_diagonal = ~torch.eye(m, dtype=torch.bool, device=gap.device)
    per_chunk = gap[:, off_diagonal].pow(2).sum(dim=1) * (2.0 / m)  # (C,)
    return per_chunk.mean()

"""Losses: public, documented pure functions of tensors (call them from your own loop)."""

from ssl_kit.losses.contrastive import exact, moco_infonce, nt_xent, similarity_matrix, working_dtype
from ssl_kit.losses.regression import byol_loss, row_similarity, simsiam_loss

__all__ = [
    "byol_loss",
    "exact",
    "moco_infonce",
    "nt_xent",
    "row_similarity",
    "similarity_matrix",
    "simsiam_loss",
    "working_dtype",
]

"""Losses: public, documented pure functions of tensors (call them from your own loop)."""

from ssl_kit.losses.contrastive import exact, nt_xent, similarity_matrix, working_dtype

__all__ = ["exact", "nt_xent", "similarity_matrix", "working_dtype"]

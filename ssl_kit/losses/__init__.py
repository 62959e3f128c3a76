"""Losses: public, documented pure functions of tensors (call them from your own loop)."""

from ssl_kit.losses.contrastive import nt_xent, similarity_matrix, working_dtype

__all__ = ["nt_xent", "similarity_matrix", "working_dtype"]

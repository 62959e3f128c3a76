"""Evaluation: k-NN and linear probes on frozen features."""

from ssl_kit.eval.knn import knn_evaluate, knn_predict
from ssl_kit.eval.linear import linear_probe

__all__ = ["knn_evaluate", "knn_predict", "linear_probe"]

"""Weighted k-NN classification on frozen features (solo-learn's protocol).

cosine: features L2-normalised, similarity = dot, the top-k neighbours vote with weight
exp(sim / T). euclidean: L2 distance on the features, the k nearest vote with weight
1 / (d + 1e-5). The class with the largest summed weight wins. Test rows are processed in chunks,
so memory stays bounded (50k train x 10k test runs in chunks of ``chunk_size`` rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DISTANCES = ("cosine", "euclidean")


def _tensor(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.dtype != torch.float64:
        t = t.float()
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {tuple(t.shape)}")
    return t


def _labels(y: Any, n: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long().flatten()
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries for {n} feature rows")
    if (t < 0).any():
        raise ValueError(f"{name} must be non-negative class indices")
    return t


def _neighbours(train: torch.Tensor, test: torch.Tensor, k: int, distance: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the k nearest train rows for each test row: cosine similarities
    (largest first) or euclidean distances (smallest first)."""
    if distance == "cosine":
        return (test @ train.T).topk(k, dim=1)
    d = torch.cdist(test, train)
    values, indices = d.topk(k, dim=1, largest=False)
    return values, indices


def _scores(values: torch.Tensor, neighbour_labels: torch.Tensor, weight: torch.Tensor, num_classes: int) -> torch.Tensor:
    scores = torch.zeros(values.shape[0], num_classes, dtype=values.dtype, device=values.device)
    return scores.scatter_add_(1, neighbour_labels, weight)


def knn_predict(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    k: int = 20,
    temperature: float = 0.07,
    distance: str = "cosine",
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Class scores (n_test, C) of the weighted k-NN vote."""
    train = _tensor(train_features, "train_features")
    test = _tensor(test_features, "test_features")
    labels = _labels(train_labels, train.shape[0], "train_labels")
    _check(k, temperature, distance, chunk_size)
    num_classes = num_classes or int(labels.max()) + 1
    k = min(k, train.shape[0])
    if distance == "cosine":
        train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
    out = []
    for start in range(0, test.shape[0], chunk_size):
        values, idx = _neighbours(train, test[start : start + chunk_size], k, distance)
        weight = (values / temperature).exp() if distance == "cosine" else 1.0 / (values + 1e-5)
        out.append(_scores(values, labels[idx], weight, num_classes))
    return torch.cat(out)


def _check(k: int, temperature: float, distance: str, chunk_size: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; allowed: {', '.join(DISTANCES)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def knn_evaluate(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    k: int | list[int] = 20,
    temperature: float | list[float] = 0.07,
    distance: str | list[str] = "cosine",
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Top-1 (and top-5, with >= 5 classes) accuracy in percent for every (distance, k, T), in one
    pass over the test chunks: neighbours are found once per chunk for the largest k.

    Keys name the protocol: ``knn_cosine_k20_t0.07_top1``, ``knn_euclidean_k20_top1``.
    """
    ks = [k] if isinstance(k, int) else list(k)
    ts = [temperature] if isinstance(temperature, (int, float)) else list(temperature)
    ds = [distance] if isinstance(distance, str) else list(distance)
    for kk in ks:
        for t in ts:
            for d in ds:
                _check(kk, t, d, chunk_size)
    train = _tensor(train_features, "train_features")
    test = _tensor(test_features, "test_features")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train and test features differ in width: {train.shape[1]} vs {test.shape[1]}")
    y_train = _labels(train_labels, train.shape[0], "train_labels")
    y_test = _labels(test_labels, test.shape[0], "test_labels")
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    k_max = min(max(ks), train.shape[0])
    normalised = (F.normalize(train, dim=1), F.normalize(test, dim=1))
    correct: dict[str, float] = {}
    for start in range(0, test.shape[0], chunk_size):
        truth = y_test[start : start + chunk_size]
        for d in ds:
            tr, te = normalised if d == "cosine" else (train, test)
            values, idx = _neighbours(tr, te[start : start + chunk_size], k_max, d)
            neighbour_labels = y_train[idx]
            for kk in ks:
                kk = min(kk, k_max)
                for t in ts if d == "cosine" else [None]:
                    v = values[:, :kk]
                    weight = (v / t).exp() if d == "cosine" else 1.0 / (v + 1e-5)
                    scores = _scores(v, neighbour_labels[:, :kk], weight, num_classes)
                    name = f"knn_{d}_k{kk}" + (f"_t{t:g}" if d == "cosine" else "")
                    top = scores.topk(min(5, num_classes), dim=1).indices
                    hit1 = (top[:, 0] == truth).sum().item()
                    correct[f"{name}_top1"] = correct.get(f"{name}_top1", 0) + hit1
                    if num_classes >= 5:
                        hit5 = (top == truth[:, None]).any(dim=1).sum().item()
                        correct[f"{name}_top5"] = correct.get(f"{name}_top5", 0) + hit5
    return {key: 100.0 * value / test.shape[0] for key, value in correct.items()}

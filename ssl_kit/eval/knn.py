"""Weighted k-NN classification on frozen features (solo-learn's ``WeightedKNNClassifier`` protocol).

cosine: both feature sets are L2-normalised, similarity = dot product, the k most similar train
rows vote with weight exp(sim / T). euclidean: L2 distance on the features as given (solo-learn
normalises only for cosine), the k nearest vote with weight 1 / (d + 1e-5); T is not used. A
class's score is the summed weight of its voters. Test rows are processed ``chunk_size`` at a
time, so memory stays at O(chunk_size x n_train) (50k train x 10k test never builds the full matrix).

Differences from solo-learn (none changes the protocol's numbers on well-formed inputs):
- the class count comes from the labels' maximum, not ``unique(test_targets)`` (which breaks
  when a class is missing from the test split);
- ``knn_evaluate`` subtracts each row's best similarity before exp(sim / T). This scales a
  row's scores by one positive factor, so rankings are unchanged, but small T no longer
  overflows float32 (solo-learn's script sweeps T down to 0.01, where exp(1 / T) = inf);
- top-5 counts only classes that received at least one vote. solo-learn ranks all classes,
  so with k < 5, or fewer than 5 distinct labels among the neighbours, the zero-score classes
  fill the top 5 in arbitrary order; it caps the list at min(5, k), which covers k < 5 only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DISTANCES = ("cosine", "euclidean")
EUCLIDEAN_EPSILON = 1e-5  # solo-learn's epsilon in 1 / (d + eps)


def _features(x: Any, name: str) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {tuple(t.shape)}")
    return t


def _labels(y: Any, n: int, name: str, device: torch.device) -> torch.Tensor:
    t = y.detach() if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    t = t.reshape(-1)
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries for {n} feature rows")
    if t.is_floating_point() and not bool((t == t.round()).all()):
        raise ValueError(f"{name} must be integer class indices, got non-integral values")
    t = t.long()
    if bool((t < 0).any()):
        raise ValueError(f"{name} must be non-negative class indices (got {int(t.min())}; unlabelled rows?)")
    return t.to(device)


def _common_dtype(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train and test features differ in width: {train.shape[1]} vs {test.shape[1]}")
    # float64 stays float64 (reference checks); anything else is computed in float32.
    dtype = torch.float64 if torch.float64 in (train.dtype, test.dtype) else torch.float32
    return train.to(dtype), test.to(device=train.device, dtype=dtype)


def _as_list(value: Any) -> list:
    values = [value] if np.ndim(value) == 0 and not isinstance(value, (list, tuple)) else list(value)
    return list(dict.fromkeys(values))  # drop duplicates, keep order: one result key each


def _check(k: Any, temperature: Any, distance: Any, chunk_size: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)) or not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; allowed: {', '.join(DISTANCES)}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")


def _nearest(train: torch.Tensor, test: torch.Tensor, k: int, distance: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the k nearest train rows for each test row, nearest first:
    cosine similarities (inputs already normalised) or euclidean distances."""
    if distance == "cosine":
        return (test @ train.T).topk(k, dim=1)
    return torch.cdist(test, train).topk(k, dim=1, largest=False)


def _vote(
    values: torch.Tensor,
    neighbour_labels: torch.Tensor,
    num_classes: int,
    distance: str,
    temperature: float | None,
    shift: bool,
) -> torch.Tensor:
    """Class scores (n, C): summed weights of the neighbours carrying each label."""
    if distance == "euclidean":
        weights = 1.0 / (values + EUCLIDEAN_EPSILON)
    elif shift:
        weights = ((values - values[:, :1]) / temperature).exp()  # column 0 is each row's best
    else:
        weights = (values / temperature).exp()
    scores = torch.zeros(values.shape[0], num_classes, dtype=values.dtype, device=values.device)
    return scores.scatter_add_(1, neighbour_labels, weights)


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
    """Class scores (n_test, num_classes) of the weighted k-NN vote, on the features' device.

    Scores are the plain sums of exp(sim / T) (cosine) or 1 / (d + 1e-5) (euclidean) over the k
    neighbours with each label; for cosine with T below ~0.012 they overflow float32 (pass
    float64 features, or use ``knn_evaluate``, which is overflow-safe). ``num_classes`` defaults
    to max(train_labels) + 1; k larger than the train set uses the whole train set.
    """
    _check(k, temperature, distance, chunk_size)
    train, test = _common_dtype(_features(train_features, "train_features"), _features(test_features, "test_features"))
    labels = _labels(train_labels, train.shape[0], "train_labels", train.device)
    max_label = int(labels.max())
    if num_classes is None:
        num_classes = max_label + 1
    elif num_classes <= max_label:
        raise ValueError(f"num_classes={num_classes} but train_labels contain class {max_label}")
    k = min(k, train.shape[0])
    if distance == "cosine":
        train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
    scores = []
    for chunk in test.split(chunk_size):
        values, indices = _nearest(train, chunk, k, distance)
        scores.append(_vote(values, labels[indices], num_classes, distance, temperature, shift=False))
    return torch.cat(scores)


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
    """Top-1 (and, with >= 5 distinct classes, top-5) accuracy in percent for every combination
    of k, temperature and distance, in one pass over the test chunks: per chunk and distance the
    similarities are computed once and the max(k) nearest found once; every k and T reuses them.

    Keys name the protocol: ``knn_cosine_k20_t0.07_top1``, ``knn_cosine_k20_t0.07_top5``,
    ``knn_euclidean_k20_top1`` (T does not apply to euclidean). A k above the train-set size
    uses the whole train set but keeps its requested name.
    """
    ks, temperatures, distances = _as_list(k), _as_list(temperature), _as_list(distance)
    if not (ks and temperatures and distances):
        raise ValueError("k, temperature and distance each need at least one value")
    for kk in ks:
        for t in temperatures:
            for d in distances:
                _check(kk, t, d, chunk_size)
    train, test = _common_dtype(_features(train_features, "train_features"), _features(test_features, "test_features"))
    y_train = _labels(train_labels, train.shape[0], "train_labels", train.device)
    y_test = _labels(test_labels, test.shape[0], "test_labels", train.device)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    with_top5 = torch.unique(torch.cat([y_train, y_test])).numel() >= 5
    k_max = min(max(ks), train.shape[0])
    inputs = {"euclidean": (train, test)}
    if "cosine" in distances:
        inputs["cosine"] = (F.normalize(train, dim=1), F.normalize(test, dim=1))

    hits: dict[str, int] = {}
    for start in range(0, test.shape[0], chunk_size):
        truth = y_test[start : start + chunk_size, None]
        for d in distances:
            train_d, test_d = inputs[d]
            values, indices = _nearest(train_d, test_d[start : start + chunk_size], k_max, d)
            neighbour_labels = y_train[indices]
            for kk in ks:
                used = min(kk, k_max)
                for t in temperatures if d == "cosine" else [None]:
                    name = f"knn_{d}_k{kk}" + (f"_t{t:g}" if d == "cosine" else "")
                    scores = _vote(values[:, :used], neighbour_labels[:, :used], num_classes, d, t, shift=True)
                    ranked = scores.topk(min(5, num_classes), dim=1).indices
                    hits[f"{name}_top1"] = hits.get(f"{name}_top1", 0) + int((ranked[:, :1] == truth).sum())
                    if with_top5:
                        # a class nobody voted for has score 0 and an arbitrary rank: never a hit
                        voted = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, neighbour_labels[:, :used], True)
                        hit5 = (ranked == truth) & voted.gather(1, ranked)
                        hits[f"{name}_top5"] = hits.get(f"{name}_top5", 0) + int(hit5.any(dim=1).sum())
    return {key: 100.0 * count / test.shape[0] for key, count in hits.items()}

"""Built-in feature evaluators, as registered components.

A feature evaluator is built as ``factory(cfg)`` and called as
``evaluator(train_features, train_labels, test_features, test_labels) -> dict[str, float]``.
It has ``protocol`` (a human-readable name of what it measures, shown in tables and model cards)
and ``primary`` (the key of its headline number). Every key names its protocol.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ssl_kit.config import knob


@dataclasses.dataclass
class KNNConfig:
    k: list[int] = knob([20], "numbers of neighbours (all computed in one pass)", min=1)
    temperature: list[float] = knob([0.07], "temperatures of the exp(sim/T) weights (cosine)", gt=0)
    distance: list[str] = knob(["cosine"], "'cosine' (exp(sim/T) weights) and/or 'euclidean' (1/(d+1e-5))")
    chunk_size: int = knob(1024, "test rows per chunk (bounds memory)", min=1)

    def __post_init__(self) -> None:
        for d in self.distance:
            if d not in ("cosine", "euclidean"):
                raise ValueError(f"key 'distance' has unknown entry '{d}'; allowed: cosine, euclidean")


class KNNEvaluator:
    """Weighted k-NN on L2-normalised features (solo-learn protocol)."""

    def __init__(self, cfg: KNNConfig) -> None:
        self.cfg = cfg
        d, k, t = cfg.distance[0], cfg.k[0], cfg.temperature[0]
        self.protocol = f"k-NN ({d}, k={k}" + (f", T={t:g})" if d == "cosine" else ")")
        self.primary = f"knn_{d}_k{k}" + (f"_t{t:g}" if d == "cosine" else "") + "_top1"

    def __call__(self, train_features: Any, train_labels: Any, test_features: Any, test_labels: Any) -> dict[str, float]:
        from ssl_kit.eval.knn import knn_evaluate

        return knn_evaluate(
            train_features,
            train_labels,
            test_features,
            test_labels,
            k=self.cfg.k,
            temperature=self.cfg.temperature,
            distance=self.cfg.distance,
            chunk_size=self.cfg.chunk_size,
        )


@dataclasses.dataclass
class LinearConfig:
    C: float = knob(1.0, "inverse L2 regularisation strength of LogisticRegression", gt=0)
    c_grid: list[float] | None = knob(None, "choose C from this grid by cross-validation on the train split", gt=0)
    max_iter: int = knob(1000, "LogisticRegression max_iter", min=1)
    standardize: bool = knob(True, "standardise features (fit on the train split)")
    calibrated: bool = knob(False, "CalibratedClassifierCV(sigmoid) around the classifier (ReLIC's protocol)")
    cv_folds: int = knob(5, "folds for c_grid and calibration", min=2)


class LinearEvaluator:
    """scikit-learn logistic-regression probe on frozen features."""

    def __init__(self, cfg: LinearConfig) -> None:
        self.cfg = cfg
        parts = ["standardised" if cfg.standardize else "raw features"]
        if cfg.calibrated:
            parts.append(f"calibrated sigmoid, {cfg.cv_folds} folds")
        parts.append(f"C grid CV {cfg.cv_folds}" if cfg.c_grid else f"C={cfg.C}")
        self.protocol = f"linear (sklearn LogisticRegression, {', '.join(parts)})"
        self.primary = "linear_calibrated_top1" if cfg.calibrated else "linear_top1"

    def __call__(self, train_features: Any, train_labels: Any, test_features: Any, test_labels: Any) -> dict[str, float]:
        from ssl_kit.eval.linear import linear_probe

        return linear_probe(
            train_features,
            train_labels,
            test_features,
            test_labels,
            C=self.cfg.C,
            max_iter=self.cfg.max_iter,
            standardize=self.cfg.standardize,
            calibrated=self.cfg.calibrated,
            cv_folds=self.cfg.cv_folds,
            c_grid=self.cfg.c_grid,
        )

"""Built-in evaluators, as registered components.

An evaluator is built as ``factory(cfg)``. A feature evaluator is called as
``evaluator(train_features, train_labels, test_features, test_labels) -> dict[str, float]`` on
features from the shared extraction (frozen, eval mode, no augmentation). A model evaluator has
``kind = "model"`` and is called as ``evaluator(encoder, train_set, test_set, ctx)`` where ``ctx``
(:class:`EvalContext`) gives the evaluation ``transform``, an ``augmentation(preset)`` factory,
the ``device`` and the extraction ``batch_size``. Both have
``protocol`` (a human-readable name of what it measures, shown in tables and model cards) and
``primary`` (the key of its headline number). Every key names its protocol.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

from ssl_kit.config import knob
from ssl_kit.eval.knn import knn_evaluate
from ssl_kit.eval.linear import linear_probe
from ssl_kit.eval.linear_torch import train_linear_probe


@dataclasses.dataclass(frozen=True)
class EvalContext:
    """What model evaluators get besides the encoder and the datasets."""

    transform: Callable  # the un-augmented evaluation transform
    device: Any
    batch_size: int  # feature-extraction batch size
    augmentation: Callable[[str], Callable]  # a registered view preset's name -> a training transform


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
    solver: Literal["lbfgs", "saga"] = knob("lbfgs", "LogisticRegression solver (Decoupled Uniformity: saga)")
    scoring: Literal["accuracy", "balanced_accuracy"] = knob(
        "accuracy", "what the C grid maximises; 'balanced_accuracy' (mean per-class recall) is also reported "
        "and becomes the headline number"
    )


class LinearEvaluator:
    """scikit-learn logistic-regression probe on frozen features."""

    def __init__(self, cfg: LinearConfig) -> None:
        self.cfg = cfg
        parts = ["standardised" if cfg.standardize else "raw features"]
        if cfg.calibrated:
            parts.append(f"calibrated sigmoid, {cfg.cv_folds} folds")
        parts.append(f"C grid CV {cfg.cv_folds}" if cfg.c_grid else f"C={cfg.C}")
        if cfg.solver != "lbfgs":
            parts.append(cfg.solver)
        if cfg.scoring != "accuracy":
            parts.append(f"{cfg.scoring.replace('_', ' ')}")
        self.protocol = f"linear (sklearn LogisticRegression, {', '.join(parts)})"
        key = "linear_calibrated" if cfg.calibrated else "linear"
        self.primary = f"{key}_balanced_top1" if cfg.scoring == "balanced_accuracy" else f"{key}_top1"

    def __call__(self, train_features: Any, train_labels: Any, test_features: Any, test_labels: Any) -> dict[str, float]:
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
            solver=self.cfg.solver,
            scoring=self.cfg.scoring,
        )


@dataclasses.dataclass
class LinearTorchConfig:
    optimizer: Literal["sgd", "adam"] = knob("sgd", "optimizer of the linear layer")
    lr: float = knob(0.1, "learning rate (solo-learn 0.1 SGD; CARE/QARe 1e-3 Adam)", gt=0)
    momentum: float = knob(0.9, "SGD momentum", min=0, lt=1)
    weight_decay: float = knob(0.0, "weight decay (CARE: 1e-6)", min=0)
    epochs: int = knob(100, "training epochs", min=1)
    batch_size: int = knob(256, "training batch size (CARE 512, QARe 128)", min=1)
    schedule: Literal["cosine", "step", "constant"] = knob("cosine", "per-epoch lr schedule")
    milestones: list[float] = knob([0.6, 0.8], "'step': decay points, fractions of the epochs (< 1) or epoch numbers", gt=0)
    gamma: float = knob(0.1, "'step': lr factor at each milestone", gt=0, max=1)
    augment: str = knob("", "training augmentation: a view preset name (e.g. 'simclr', 'care'), '' for none")
    seed: int = knob(0, "seed of the layer's initialisation, the batch order and the augmentations")
    weight_decay_grid: list[float] | None = knob(
        None, "choose weight_decay from this grid on a held-out val_fraction of the train split (reported as "
        "linear_torch_wd)", min=0
    )
    val_fraction: float = knob(0.1, "held-out fraction of the train split that scores the weight_decay_grid", gt=0, lt=1)


class LinearTorchEvaluator:
    """Model evaluator: a torch linear layer trained on the frozen encoder (kept in eval mode)."""

    kind = "model"

    def __init__(self, cfg: LinearTorchConfig) -> None:
        self.cfg = cfg
        sched = cfg.schedule if cfg.schedule != "step" else f"step {cfg.milestones} x{cfg.gamma:g}"
        aug = f", '{cfg.augment}' augmentation" if cfg.augment else ", no augmentation"
        wd = (f"wd from {[float(w) for w in cfg.weight_decay_grid]} on {cfg.val_fraction:g} held out"
              if cfg.weight_decay_grid else f"wd={cfg.weight_decay:g}")
        self.protocol = (
            f"linear (torch {cfg.optimizer} lr={cfg.lr:g} {wd}, {cfg.epochs} epochs, "
            f"batch {cfg.batch_size}, {sched}{aug}; frozen encoder in eval mode)"
        )
        self.primary = "linear_torch_top1"

    def __call__(self, encoder: Any, train_set: Any, test_set: Any, ctx: EvalContext) -> dict[str, float]:
        c = self.cfg
        return train_linear_probe(
            encoder, train_set, test_set, ctx.transform,
            augment=ctx.augmentation(c.augment) if c.augment else None,
            optimizer=c.optimizer, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay,
            epochs=c.epochs, batch_size=c.batch_size, schedule=c.schedule, milestones=c.milestones,
            gamma=c.gamma, seed=c.seed, device=ctx.device, extract_batch_size=ctx.batch_size,
            weight_decay_grid=c.weight_decay_grid, val_fraction=c.val_fraction,
        )

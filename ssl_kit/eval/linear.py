"""Linear probes with scikit-learn logistic regression on frozen features.

ReLIC's reported protocol is ``calibrated=True, standardize=False, max_iter=100``: its released
evaluation wraps ``LogisticRegression(max_iter=100)`` in ``CalibratedClassifierCV`` (sigmoid,
5 folds) on the raw target-encoder features, and silences every warning. Decoupled Uniformity's
(below 20,000 training images) is ``solver="saga", c_grid=[...], cv_folds=3,
scoring="balanced_accuracy"``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SOLVERS = ("lbfgs", "saga")
SCORINGS = ("accuracy", "balanced_accuracy")


def _features(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {x.shape}")
    return x


def _labels(y: Any, n: int, name: str) -> np.ndarray:
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries for {n} feature rows")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and (y == np.round(y)).all())):
        raise ValueError(f"{name} must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if (y < 0).any():
        raise ValueError(f"{name} must be non-negative class indices (got {y.min()}; unlabelled rows?)")
    return y


def linear_probe(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    C: float = 1.0,
    max_iter: int = 1000,
    standardize: bool = True,
    calibrated: bool = False,
    cv_folds: int = 5,
    c_grid: list[float] | None = None,
    seed: int = 0,
    solver: str = "lbfgs",
    scoring: str = "accuracy",
) -> dict[str, float]:
    """Logistic-regression probe; test accuracy in percent.

    ``standardize`` puts a StandardScaler (fit on the train split only) in front of the classifier.
    ``c_grid`` picks C by stratified ``cv_folds``-fold cross-validation on the train split (scaler
    refit inside every fold, uncalibrated classifier) and reports it as ``linear_C``; the final
    model is then fit on the whole train split with that C. ``calibrated`` wraps the classifier in
    CalibratedClassifierCV(method="sigmoid", cv=cv_folds), ReLIC's protocol. ``solver``: the
    LogisticRegression solver ("lbfgs" or "saga"). ``scoring``: "accuracy" or "balanced_accuracy"
    (the mean of the per-class recalls): what the C grid maximises, and with "balanced_accuracy"
    the test score is reported as ``linear_balanced_top1`` as well.

    Keys: ``linear_top1`` or ``linear_calibrated_top1``, plus ``linear_C`` when a grid was used and
    ``linear_balanced_top1`` (or ``linear_calibrated_balanced_top1``) for balanced scoring.
    Non-convergence is logged once per call as a warning, not once per fit.
    """
    x_train, x_test = _features(train_features, "train_features"), _features(test_features, "test_features")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"train and test features differ in width: {x_train.shape[1]} vs {x_test.shape[1]}")
    y_train = _labels(train_labels, x_train.shape[0], "train_labels")
    y_test = _labels(test_labels, x_test.shape[0], "test_labels")
    if not C > 0:
        raise ValueError(f"C must be > 0, got {C}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
    if c_grid is not None and (len(c_grid) == 0 or not all(c > 0 for c in c_grid)):
        raise ValueError(f"c_grid must be a non-empty list of values > 0, got {c_grid!r}")
    if c_grid is not None or calibrated:
        if cv_folds < 2:
            raise ValueError(f"cv_folds must be >= 2, got {cv_folds}")
        classes, counts = np.unique(y_train, return_counts=True)
        if counts.min() < cv_folds:
            raise ValueError(
                f"cv_folds={cv_folds} needs >= {cv_folds} train samples per class; "
                f"class {classes[counts.argmin()]} has {counts.min()}"
            )

    # scikit-learn is imported here, not at module level: a training process that never
    # evaluates (and every CLI start) does not pay its import time
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def probe(c: float) -> Any:
        model: Any = LogisticRegression(C=c, max_iter=max_iter, solver=solver, random_state=seed)
        return make_pipeline(StandardScaler(), model) if standardize else model

    out: dict[str, float] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if c_grid is not None:
            param = "logisticregression__C" if standardize else "C"
            search = GridSearchCV(
                probe(C),
                {param: [float(c) for c in c_grid]},
                cv=StratifiedKFold(cv_folds, shuffle=True, random_state=seed),
                scoring=scoring,
                refit=False,  # refit below, possibly calibrated
            )
            search.fit(x_train, y_train)
            C = out["linear_C"] = float(search.best_params_[param])
        model = probe(C)
        if calibrated:
            # The scaler sits inside the calibrated estimator, so each calibration fold fits its own.
            model = CalibratedClassifierCV(model, method="sigmoid", cv=cv_folds)
        model.fit(x_train, y_train)
        predicted = model.predict(x_test)
        accuracy = 100.0 * float((predicted == y_test).mean())
        balanced = 100.0 * float(balanced_accuracy_score(y_test, predicted))

    not_converged = 0
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            not_converged += 1
        else:  # pass every other warning through unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not_converged:
        log.warning(
            "linear_probe: LogisticRegression hit max_iter=%d without converging in %d fit(s); "
            "the accuracy is still reported (raise max_iter or standardize features to converge)",
            max_iter,
            not_converged,
        )
    key = "linear_calibrated" if calibrated else "linear"
    out[f"{key}_top1"] = accuracy
    if scoring == "balanced_accuracy":
        out[f"{key}_balanced_top1"] = balanced
    return out

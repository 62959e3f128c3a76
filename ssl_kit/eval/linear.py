"""Linear probes with scikit-learn on frozen features."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


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
) -> dict[str, float]:
    """Logistic-regression probe; test accuracy in percent.

    ``standardize`` fits a StandardScaler on the train features. ``c_grid`` picks C by stratified
    ``cv_folds``-fold cross-validation on the train split (reported as ``linear_C``).
    ``calibrated`` wraps the classifier in CalibratedClassifierCV(method="sigmoid", cv=cv_folds),
    the protocol ReLIC reports (with ``standardize=False``: raw features).
    Keys: ``linear_top1`` or ``linear_calibrated_top1``.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test = _array(train_features, "train_features"), _array(test_features, "test_features")
    y_train, y_test = np.asarray(train_labels).ravel(), np.asarray(test_labels).ravel()
    if len(y_train) != len(x_train) or len(y_test) != len(x_test):
        raise ValueError("linear_probe: features and labels differ in length")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"train and test features differ in width: {x_train.shape[1]} vs {x_test.shape[1]}")
    if not C > 0:
        raise ValueError(f"C must be > 0, got {C}")
    out: dict[str, float] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if c_grid:
            search = GridSearchCV(
                make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
                if standardize
                else LogisticRegression(max_iter=max_iter),
                {("logisticregression__C" if standardize else "C"): list(c_grid)},
                cv=StratifiedKFold(cv_folds, shuffle=True, random_state=seed),
            )
            search.fit(x_train, y_train)
            C = float(next(iter(search.best_params_.values())))
            out["linear_C"] = C
        classifier: Any = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
        if calibrated:
            classifier = CalibratedClassifierCV(classifier, method="sigmoid", cv=cv_folds)
        model = make_pipeline(StandardScaler(), classifier) if standardize else classifier
        model.fit(x_train, y_train)
        accuracy = float((model.predict(x_test) == y_test).mean()) * 100.0
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        out["linear_converged"] = 0.0  # recorded once instead of a warning per fit
    out["linear_calibrated_top1" if calibrated else "linear_top1"] = accuracy
    return out


def _array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {x.shape}")
    return x

"""k-NN and linear-probe evaluation: brute-force references, chunking, protocols, input errors."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning  # imported here so its ~1 s import is not one test's time
from threadpoolctl import threadpool_limits

from ssl_kit.eval import knn_evaluate, knn_predict, linear_probe

NUM_CLASSES = 7


@pytest.fixture(autouse=True)
def single_threaded():
    """These problems are tiny: with another process busy on the same cores, 2-thread OpenBLAS and
    OpenMP spin-wait and a 0.05 s fit takes 2 s. One thread is the fastest at this size anyway."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


def random_split(seed: int = 0, n_train: int = 80, n_test: int = 30, dim: int = 8, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n_train, dim)).astype(dtype),
        rng.integers(0, NUM_CLASSES, n_train),
        rng.normal(size=(n_test, dim)).astype(dtype),
        rng.integers(0, NUM_CLASSES, n_test),
    )


def reference_scores(train, train_labels, test, k, temperature, distance, num_classes):
    """Weighted k-NN vote, one test sample and one train sample at a time."""
    scores = np.zeros((len(test), num_classes))
    for i, query in enumerate(test):
        candidates = []
        for j, key in enumerate(train):
            if distance == "cosine":
                similarity = float(query @ key) / (math.sqrt(query @ query) * math.sqrt(key @ key))
                candidates.append((-similarity, math.exp(similarity / temperature), train_labels[j]))
            else:
                gap = math.sqrt(sum((a - b) ** 2 for a, b in zip(query, key)))
                candidates.append((gap, 1.0 / (gap + 1e-5), train_labels[j]))
        candidates.sort(key=lambda c: c[0])
        for _, weight, label in candidates[:k]:
            scores[i, label] += weight
    return scores


def reference_accuracy(scores, test_labels):
    top1 = top5 = 0
    for row, truth in zip(scores, test_labels):
        voted = [c for c in range(len(row)) if row[c] > 0]
        ranked = sorted(voted, key=lambda c: -row[c])
        top1 += ranked[0] == truth
        top5 += truth in ranked[:5]
    return 100.0 * top1 / len(test_labels), 100.0 * top5 / len(test_labels)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("k,temperature", [(1, 0.07), (5, 0.07), (17, 0.5), (80, 0.2)])
def test_knn_predict_matches_brute_force_reference(distance, k, temperature):
    train, train_labels, test, _ = random_split()
    expected = reference_scores(train, train_labels, test, k, temperature, distance, NUM_CLASSES)
    scores = knn_predict(train, train_labels, test, k=k, temperature=temperature, distance=distance, chunk_size=7)
    assert scores.dtype == torch.float64 and scores.shape == (30, NUM_CLASSES)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-9, atol=0)


def test_knn_predict_float32_matches_reference_within_float32_precision():
    train, train_labels, test, _ = random_split(dtype=np.float32)
    for distance in ("cosine", "euclidean"):
        expected = reference_scores(train.astype(np.float64), train_labels, test, 10, 0.1, distance, NUM_CLASSES)
        scores = knn_predict(torch.from_numpy(train), torch.from_numpy(train_labels), torch.from_numpy(test),
                             k=10, temperature=0.1, distance=distance, chunk_size=4)
        assert scores.dtype == torch.float32
        np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-4)


def test_knn_evaluate_matches_brute_force_for_every_combination_in_one_call():
    train, train_labels, test, test_labels = random_split(seed=1)
    ks, temperatures = [1, 5, 17], [0.07, 0.5]
    result = knn_evaluate(train, train_labels, test, test_labels, k=ks, temperature=temperatures,
                          distance=["cosine", "euclidean"], chunk_size=7)
    expected = {}
    for k in ks:
        for t in temperatures:
            scores = reference_scores(train, train_labels, test, k, t, "cosine", NUM_CLASSES)
            expected[f"knn_cosine_k{k}_t{t:g}_top1"], expected[f"knn_cosine_k{k}_t{t:g}_top5"] = reference_accuracy(
                scores, test_labels
            )
        scores = reference_scores(train, train_labels, test, k, None, "euclidean", NUM_CLASSES)
        expected[f"knn_euclidean_k{k}_top1"], expected[f"knn_euclidean_k{k}_top5"] = reference_accuracy(
            scores, test_labels
        )
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value), key


def test_knn_top5_is_at_least_top1_and_equals_top1_with_one_neighbour():
    train, train_labels, test, test_labels = random_split(seed=2, n_test=60)
    result = knn_evaluate(train, train_labels, test, test_labels, k=[1, 20], distance=["cosine", "euclidean"])
    for name in ("knn_cosine_k1_t0.07", "knn_cosine_k20_t0.07", "knn_euclidean_k1", "knn_euclidean_k20"):
        assert result[f"{name}_top5"] >= result[f"{name}_top1"]
    # one voter: the other classes have no votes, so they are never counted as top-5 hits
    assert result["knn_cosine_k1_t0.07_top5"] == result["knn_cosine_k1_t0.07_top1"]


def test_knn_chunked_run_equals_unchunked_run():
    train, train_labels, test, test_labels = random_split(seed=3, n_test=50)
    kwargs = dict(k=[3, 10], temperature=[0.05, 0.2], distance=["cosine", "euclidean"])
    chunked = knn_evaluate(train, train_labels, test, test_labels, chunk_size=3, **kwargs)
    whole = knn_evaluate(train, train_labels, test, test_labels, chunk_size=10_000, **kwargs)
    assert chunked == whole
    for distance in ("cosine", "euclidean"):
        a = knn_predict(train, train_labels, test, k=10, distance=distance, chunk_size=3)
        b = knn_predict(train, train_labels, test, k=10, distance=distance, chunk_size=10_000)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=0)


def test_knn_evaluate_perfect_on_clustered_features_and_reports_protocol_keys():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(NUM_CLASSES, 16)) * 10
    train_labels, test_labels = np.arange(140) % NUM_CLASSES, np.arange(35) % NUM_CLASSES
    train = centres[train_labels] + rng.normal(size=(140, 16))
    test = centres[test_labels] + rng.normal(size=(35, 16))
    result = knn_evaluate(torch.tensor(train, dtype=torch.float32), torch.tensor(train_labels),
                          torch.tensor(test, dtype=torch.float32), torch.tensor(test_labels),
                          k=20, distance=["cosine", "euclidean"])
    assert result == {"knn_cosine_k20_t0.07_top1": 100.0, "knn_cosine_k20_t0.07_top5": 100.0,
                      "knn_euclidean_k20_top1": 100.0, "knn_euclidean_k20_top5": 100.0}


def test_knn_evaluate_provides_the_evaluator_primary_key():
    from ssl_kit.eval.evaluators import KNNConfig, KNNEvaluator

    evaluator = KNNEvaluator(KNNConfig())
    assert evaluator.primary in evaluator(*random_split(seed=5))


def test_knn_k_larger_than_train_set_uses_all_rows_and_keeps_requested_name():
    train, train_labels, test, test_labels = random_split(seed=6, n_train=12)
    result = knn_evaluate(train, train_labels, test, test_labels, k=[12, 50])
    assert result["knn_cosine_k50_t0.07_top1"] == result["knn_cosine_k12_t0.07_top1"]
    assert torch.equal(knn_predict(train, train_labels, test, k=50), knn_predict(train, train_labels, test, k=12))


def test_knn_top5_only_reported_with_at_least_five_classes():
    train, train_labels, test, test_labels = random_split(seed=7)
    result = knn_evaluate(train, train_labels % 4, test, test_labels % 4, k=5)
    assert list(result) == ["knn_cosine_k5_t0.07_top1"]


def test_knn_small_temperature_does_not_overflow_in_float32():
    train, train_labels, test, test_labels = random_split(seed=8, dtype=np.float32)
    # exp(1 / 0.005) overflows float32; the float64 scores are the reference
    reference = knn_predict(train.astype(np.float64), train_labels, test, k=20, temperature=0.005)
    top1 = 100.0 * float((reference.argmax(1).numpy() == test_labels).mean())
    result = knn_evaluate(train, train_labels, test, test_labels, k=20, temperature=0.005)
    assert result["knn_cosine_k20_t0.005_top1"] == pytest.approx(top1)


def test_knn_accepts_any_dtype_and_computes_in_float32_unless_float64():
    train, train_labels, test, _ = random_split(seed=9)
    assert knn_predict(train.astype(np.float16), train_labels, test.astype(np.float16)).dtype == torch.float32
    assert knn_predict(torch.tensor(train).int(), train_labels, torch.tensor(test).int()).dtype == torch.float32
    assert knn_predict(train.astype(np.float32), train_labels, test).dtype == torch.float64
    assert knn_predict(train, train_labels.astype(np.float32), test, num_classes=10).shape == (30, 10)


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(train_labels=np.zeros(79, dtype=int)), "train_labels has 79 entries for 80"),
        (dict(test_labels=np.zeros(31, dtype=int)), "test_labels has 31 entries for 30"),
        (dict(train_features=np.zeros((0, 8)), train_labels=np.zeros(0, dtype=int)), "non-empty"),
        (dict(test_features=np.zeros((30, 5))), "differ in width"),
        (dict(train_labels=-np.ones(80, dtype=int)), "non-negative"),
        (dict(train_labels=np.full(80, 0.5)), "integer class indices"),
        (dict(k=0), "k must be an integer >= 1"),
        (dict(k=[5, 0]), "k must be an integer >= 1"),
        (dict(k=[]), "at least one value"),
        (dict(temperature=0.0), "temperature must be > 0"),
        (dict(temperature=-0.1), "temperature must be > 0"),
        (dict(distance="manhattan"), "allowed: cosine, euclidean"),
        (dict(chunk_size=0), "chunk_size"),
    ],
)
def test_knn_evaluate_rejects_bad_inputs_with_clear_message(change, message):
    train, train_labels, test, test_labels = random_split()
    args = dict(train_features=train, train_labels=train_labels, test_features=test, test_labels=test_labels)
    args.update(change)
    with pytest.raises(ValueError, match=message):
        knn_evaluate(**args)


def test_knn_predict_rejects_bad_inputs_with_clear_message():
    train, train_labels, test, _ = random_split()
    with pytest.raises(ValueError, match="allowed: cosine, euclidean"):
        knn_predict(train, train_labels, test, distance="dot")
    with pytest.raises(ValueError, match="num_classes=3"):
        knn_predict(train, train_labels, test, num_classes=3)
    with pytest.raises(ValueError, match="differ in width"):
        knn_predict(train, train_labels, test[:, :4])


# ---------------------------------------------------------------------------------------------
# linear probe


def separable_split(seed: int = 0, classes: int = 4, n_train: int = 200, n_test: int = 100, dim: int = 10):
    """Well-separated Gaussian blobs (linearly separable), offset and scaled away from unit variance."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 4
    train_labels, test_labels = np.arange(n_train) % classes, np.arange(n_test) % classes
    train = (centres[train_labels] + rng.normal(size=(n_train, dim))) * 3 + 5
    test = (centres[test_labels] + rng.normal(size=(n_test, dim))) * 3 + 5
    return train, train_labels, test, test_labels


def test_linear_probe_reaches_full_accuracy_on_linearly_separable_features():
    train, train_labels, test, test_labels = separable_split()
    result = linear_probe(train, train_labels, test, test_labels)
    assert result.keys() == {"linear_top1"}
    assert result["linear_top1"] == 100.0


def test_linear_probe_is_about_chance_on_shuffled_labels():
    rng = np.random.default_rng(1)
    train, test = rng.normal(size=(400, 10)), rng.normal(size=(400, 10))
    result = linear_probe(train, rng.integers(0, 4, 400), test, rng.integers(0, 4, 400))
    assert 15.0 <= result["linear_top1"] <= 35.0


def test_linear_probe_calibrated_protocol_runs_on_raw_features():
    train, train_labels, test, test_labels = separable_split(seed=2)
    result = linear_probe(torch.tensor(train), torch.tensor(train_labels), torch.tensor(test),
                          torch.tensor(test_labels), calibrated=True, standardize=False, max_iter=100)
    assert result.keys() == {"linear_calibrated_top1"}
    assert result["linear_calibrated_top1"] >= 98.0


def test_linear_probe_c_grid_picks_a_c_from_the_grid_deterministically():
    train, train_labels, test, test_labels = separable_split(seed=3)
    grid = [1e-4, 1.0, 100.0]
    args = (train, train_labels, test, test_labels)
    result = linear_probe(*args, c_grid=grid, cv_folds=3)
    assert result["linear_C"] in grid and result["linear_C"] > 1e-4  # 1e-4 underfits separable data
    assert result == linear_probe(*args, c_grid=grid, cv_folds=3)
    calibrated = linear_probe(*args, c_grid=grid, cv_folds=3, calibrated=True)
    assert calibrated.keys() == {"linear_C", "linear_calibrated_top1"}


def test_linear_probe_logs_non_convergence_once_instead_of_warning_per_fit(caplog):
    train, train_labels, test, test_labels = separable_split(seed=4)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, "ssl_kit.eval.linear"):
        warnings.simplefilter("always")
        linear_probe(train * 100, train_labels, test * 100, test_labels,
                     standardize=False, max_iter=2, calibrated=True, cv_folds=3)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    notes = [r for r in caplog.records if "without converging" in r.getMessage()]
    assert len(notes) == 1 and "max_iter=2" in notes[0].getMessage()


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(train_labels=np.zeros(199, dtype=int)), "train_labels has 199 entries for 200"),
        (dict(test_features=np.zeros((0, 10)), test_labels=np.zeros(0, dtype=int)), "non-empty"),
        (dict(test_features=np.zeros((100, 3))), "differ in width"),
        (dict(test_labels=np.full(100, -1)), "non-negative"),
        (dict(C=0.0), "C must be > 0"),
        (dict(c_grid=[]), "c_grid must be a non-empty list"),
        (dict(c_grid=[1.0, -1.0]), "c_grid must be a non-empty list"),
        (dict(calibrated=True, cv_folds=1), "cv_folds must be >= 2"),
        (dict(calibrated=True, cv_folds=500), "needs >= 500 train samples per class"),
    ],
)
def test_linear_probe_rejects_bad_inputs_with_clear_message(change, message):
    train, train_labels, test, test_labels = separable_split()
    args = dict(train_features=train, train_labels=train_labels, test_features=test,
                test_labels=test_labels)
    args.update(change)
    with pytest.raises(ValueError, match=message):
        linear_probe(**args)


def test_linear_probe_balanced_scoring_and_saga_solver():
    # 3 classes, class 2 rare and overlapping class 0: plain accuracy hides its misses, balanced
    # accuracy (the mean per-class recall) does not.
    rng = np.random.default_rng(5)
    counts = [120, 120, 12]
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.5, 0.0]])
    def split():
        y = np.repeat(np.arange(3), counts)
        return centres[y] + rng.normal(size=(len(y), 2)), y
    (train, y_train), (test, y_test) = split(), split()
    out = linear_probe(train, y_train, test, y_test, solver="saga", scoring="balanced_accuracy",
                       c_grid=[0.01, 1.0], cv_folds=3)
    assert out.keys() == {"linear_C", "linear_top1", "linear_balanced_top1"}
    recalls = []
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    model = make_pipeline(StandardScaler(), LogisticRegression(C=out["linear_C"], solver="saga", max_iter=1000,
                                                               random_state=0)).fit(train, y_train)
    predicted = model.predict(test)
    recalls = [(predicted[y_test == c] == c).mean() for c in range(3)]
    assert out["linear_balanced_top1"] == pytest.approx(100 * np.mean(recalls))
    assert out["linear_top1"] == pytest.approx(100 * (predicted == y_test).mean())
    assert out["linear_balanced_top1"] < out["linear_top1"]  # the rare class is the one it misses
    with pytest.raises(ValueError, match="solver must be one of lbfgs, saga"):
        linear_probe(train, y_train, test, y_test, solver="newton")
    with pytest.raises(ValueError, match="scoring must be one of accuracy, balanced_accuracy"):
        linear_probe(train, y_train, test, y_test, scoring="f1")

"""A baseline's digits recipe learns: k-NN >= 96.5% and >= random init + 1 point, and a negative
control does not (the loss with its sign flipped).

Only MoCo v2+ is checked here for now (SimCLR: tests/test_train.py). BYOL and SimSiam are not yet:
a sign flip is a symmetry for them (the predictor can negate its output; measured: flipped BYOL
97.41, SimSiam 97.22), and with a zero-gradient loss they reach 96.85 from batch-norm statistics
alone, against 97.04 trained: their digits recipes need tuning before this test means anything."""

import pytest

from ssl_kit.recipe import load_recipe
from ssl_kit.testing import sign_flipped_plugin, temporary_plugin
from ssl_kit.trainer import train

KEY = "knn_cosine_k20_t0.07_top1"
CONTROL = {"mocov2plus": ("flipped", sign_flipped_plugin)}


def knn(tmp_path, recipe, *overrides):
    overrides = [f"train.output_dir={tmp_path}", "train.progress=false", "train.checkpoint_every=0",
                 "eval.baselines=['random_init']", "eval.evaluators=['knn']", *overrides]
    results = train(load_recipe(recipe, overrides))["results"]
    return results["trained"][KEY], results["random_init"][KEY]


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(CONTROL))
def test_digits_recipe_learns_and_its_negative_control_does_not(tmp_path, method):
    trained, random_init = knn(tmp_path / "ok", f"{method}-digits")
    assert trained >= 96.5 and trained >= random_init + 1.0, (trained, random_init)
    suffix, make_plugin = CONTROL[method]
    with temporary_plugin(make_plugin(method), "control"):
        control, _ = knn(tmp_path / "control", f"{method}-digits", f"method.name={method}_{suffix}")
    assert not (control >= 96.5 and control >= random_init + 1.0), control

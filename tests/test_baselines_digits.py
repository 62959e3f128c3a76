"""Each baseline's digits recipe learns: k-NN >= 96.5% and >= random init + 1 point, and the same
run with the loss sign flipped does not (negative control)."""

import pytest

from ssl_kit.recipe import load_recipe
from ssl_kit.testing import sign_flipped_plugin, temporary_plugin
from ssl_kit.trainer import train

KEY = "knn_cosine_k20_t0.07_top1"


def knn(tmp_path, recipe, *overrides):
    overrides = [f"train.output_dir={tmp_path}", "train.progress=false", "train.checkpoint_every=0",
                 "eval.baselines=['random_init']", "eval.evaluators=['knn']", *overrides]
    results = train(load_recipe(recipe, overrides))["results"]
    return results["trained"][KEY], results["random_init"][KEY]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["byol", "simsiam", "mocov2plus"])
def test_digits_recipe_learns_and_flipped_loss_does_not(tmp_path, method):
    trained, random_init = knn(tmp_path / "ok", f"{method}-digits")
    assert trained >= 96.5 and trained >= random_init + 1.0, (trained, random_init)
    with temporary_plugin(sign_flipped_plugin(method), "flipped"):
        flipped, _ = knn(tmp_path / "flipped", f"{method}-digits", f"method.name={method}_flipped")
    assert not (flipped >= 96.5 and flipped >= random_init + 1.0), flipped

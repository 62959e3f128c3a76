"""A baseline's digits recipe learns: k-NN >= 96.5% and >= random init + 1 point, and a negative
control does not.

MoCo v2+ (contrastive): the same run with the loss sign flipped must fail the thresholds.
BYOL and SimSiam: a sign flip is a symmetry (the predictor can negate its output; measured:
flipped BYOL 97.41, flipped SimSiam 97.22, as high as the real runs), and batch-norm statistics
alone lift k-NN from 95.56 (random init) to 96.85 with a zero-gradient loss, above the random + 1
threshold. Their control is therefore the zero-gradient run, and the trained run must beat it by
0.5 points. With zero gradients only batch-norm running statistics move, and they settle within a
few dozen steps, so the control runs 10 epochs.
"""

import pytest

from ssl_kit.recipe import load_recipe
from ssl_kit.testing import no_gradient_plugin, sign_flipped_plugin, temporary_plugin
from ssl_kit import train

KEY = "knn_cosine_k20_t0.07_top1"


def knn(tmp_path, recipe, *overrides):
    overrides = [f"train.output_dir={tmp_path}", "train.progress=false", "train.checkpoint_every=0",
                 "eval.baselines=['random_init']", "eval.evaluators=['knn']", *overrides]
    results = train(load_recipe(recipe, overrides))["results"]
    return results["trained"][KEY], results["random_init"][KEY]


@pytest.mark.slow
def test_mocov2plus_digits_learns_and_flipped_loss_does_not(tmp_path):
    trained, random_init = knn(tmp_path / "ok", "mocov2plus-digits")
    assert trained >= 96.5 and trained >= random_init + 1.0, (trained, random_init)
    with temporary_plugin(sign_flipped_plugin("mocov2plus"), "control"):
        flipped, _ = knn(tmp_path / "flipped", "mocov2plus-digits", "method.name=mocov2plus_flipped")
    assert not (flipped >= 96.5 and flipped >= random_init + 1.0), flipped


@pytest.mark.slow
@pytest.mark.parametrize("method", ["byol", "simsiam"])
def test_predictor_method_digits_learns_beyond_a_zero_gradient_run(tmp_path, method):
    trained, random_init = knn(tmp_path / "ok", f"{method}-digits")
    assert trained >= 96.5 and trained >= random_init + 1.0, (trained, random_init)
    with temporary_plugin(no_gradient_plugin(method), "control"):
        control, _ = knn(tmp_path / "control", f"{method}-digits", f"method.name={method}_nograd", "train.epochs=10")
    assert trained >= control + 0.5, (trained, control)

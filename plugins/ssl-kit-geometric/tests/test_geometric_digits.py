"""Each geometric-*-digits recipe learns: the mean trained k-NN over seeds 0, 1, 2 beats the mean
of its zero-gradient control over the same seeds by at least 0.5 points, and a negative control of
its own loss (seed 0) does not beat the zero-gradient run (seed 0) by as much.

The zero-gradient control (ssl_kit.testing.no_gradient_plugin: the same forward, the loss times 0)
moves only batch-norm running statistics, which alone lift k-NN from 95.56 (random init, seeds 0
and 1) to about 96.85; they settle within a few dozen steps, so the control runs 3 epochs (60 steps
at batch 64).

Negative controls:
- SimCLR and MoCo v2+: the loss sign-flipped (ssl_kit.testing.sign_flipped_plugin). Maximising the
  geodesic NT-Xent / InfoNCE pulls negatives together and pushes the views of one image apart;
  nothing in the network can undo a flipped sign.
- BYOL and SimSiam: a sign flip is a symmetry (the predictor can negate its output: the
  flipped squared geodesic distance is minimised by p = -z, reached by negating the predictor's
  last layer), so flipping proves nothing. Their control keeps the loss and its sign and breaks
  what it learns from instead: each prediction is regressed on the target of ANOTHER image of the
  batch (the targets rolled by one row). The batches are reshuffled every epoch, so no feature of
  an image predicts its partner's target, and the only way to lower this loss is to make every
  output alike. A method that beats its zero-gradient run this way would be learning from batch
  statistics, not from the two views of an image.

Measured with one torch thread (k-NN cosine k=20 T=0.07, 540 test images): see the plugin README.
"""

import statistics

import pytest

from ssl_kit import hookimpl, train
from ssl_kit.recipe import load_recipe
from ssl_kit.testing import no_gradient_plugin, sign_flipped_plugin, temporary_plugin
from ssl_kit_geometric import GeometricBYOL, GeometricBYOLConfig, GeometricSimSiam, GeometricSimSiamConfig

KEY = "knn_cosine_k20_t0.07_top1"
SEEDS = (0, 1, 2)
MARGIN = 0.5
CONTROL_EPOCHS = 3


class MismatchedBYOL(GeometricBYOL):
    """geometric_byol regressing each prediction on the target of the previous row's image."""

    def regression(self, p, z):
        return super().regression(p, z.roll(1, dims=0))


class MismatchedSimSiam(GeometricSimSiam):
    """geometric_simsiam regressing each prediction on the projection of the previous row's image."""

    def regression(self, p, z):
        return super().regression(p, z.roll(1, dims=0))


class MismatchedPairs:
    @hookimpl
    def register_methods(self, register):
        register("geometric_byol_mismatched", MismatchedBYOL, config=GeometricBYOLConfig)
        register("geometric_simsiam_mismatched", MismatchedSimSiam, config=GeometricSimSiamConfig)


def negative_control(method):
    """(plugin object, method name) of the method's negative control."""
    if method in ("geometric_byol", "geometric_simsiam"):
        return MismatchedPairs(), f"{method}_mismatched"
    return sign_flipped_plugin(method), f"{method}_flipped"


def knn(tmp_path, recipe, seed, *overrides):
    overrides = [f"train.output_dir={tmp_path / f'seed{seed}'}", f"train.seed={seed}", "train.progress=false",
                 "train.checkpoint_every=0", "train.export=false", "eval.plots=false", "eval.evaluators=['knn']",
                 "eval.baselines=[]", "eval.extra_features=[]", *overrides]
    return train(load_recipe(recipe, overrides))["results"]["trained"][KEY]


METHODS = ["simclr", "mocov2plus", "byol", "simsiam"]


def zero_gradient(tmp_path, name, recipe, seed):
    with temporary_plugin(no_gradient_plugin(name), "zero_gradient"):
        return knn(tmp_path / "zero", recipe, seed, f"method.name={name}_nograd", f"train.epochs={CONTROL_EPOCHS}")


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_digits_recipe_beats_its_zero_gradient_run_over_three_seeds(tmp_path, method):
    recipe, name = f"geometric-{method}-digits", f"geometric_{method}"
    trained = [knn(tmp_path / "trained", recipe, seed) for seed in SEEDS]
    zero = [zero_gradient(tmp_path, name, recipe, seed) for seed in SEEDS]
    assert statistics.mean(trained) >= statistics.mean(zero) + MARGIN, {"trained": trained, "zero_gradient": zero}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_digits_negative_control_does_not_beat_the_zero_gradient_run(tmp_path, method):
    """Seed 0 of the negative control against seed 0 of the zero-gradient run (a separate test from
    the three-seed one, so that pytest-xdist runs them side by side)."""
    recipe, name = f"geometric-{method}-digits", f"geometric_{method}"
    plugin, control_name = negative_control(name)
    with temporary_plugin(plugin, "negative_control"):
        control = knn(tmp_path / "control", recipe, 0, f"method.name={control_name}")
    zero = zero_gradient(tmp_path, name, recipe, 0)
    assert not control >= zero + MARGIN, {"negative_control": control, "zero_gradient": zero}

"""Each digits recipe learns: the mean trained k-NN over seeds 0, 1, 2 beats the mean of the same
recipe with its loss multiplied by zero (ssl_kit.testing.no_gradient_plugin: batch-norm statistics,
the key encoder's EMA and the queue still move, no weight learns) by at least half a point, and the
same recipe with its loss sign flipped (ssl_kit.testing.sign_flipped_plugin; CARE has no predictor,
so a flip is no symmetry) does not.

The zero-gradient runs take 2 epochs instead of 6: only running statistics move, and 18 steps of
three forward passes each leave 0.9^54 < 0.5 % of their initial values. The flipped control runs
seed 0 only (a full run each): it is far below the threshold. Measured numbers: the README.
"""

import statistics

import pytest

from ssl_kit import train
from ssl_kit.recipe import load_recipe
from ssl_kit.testing import no_gradient_plugin, sign_flipped_plugin, temporary_plugin

KEY = "knn_cosine_k20_t0.07_top1"
SEEDS = (0, 1, 2)


def knn(tmp_path, recipe, seed, *overrides):
    overrides = [f"train.output_dir={tmp_path / f'{recipe}-{seed}-{len(overrides)}'}", "train.progress=false",
                 "train.checkpoint_every=0", "train.export=false", "eval.evaluators=['knn']", "eval.baselines=[]",
                 "eval.plots=false", f"train.seed={seed}", *overrides]
    return train(load_recipe(recipe, overrides))["results"]["trained"][KEY]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["care-digits", "care-mocov2-digits"])
def test_digits_recipe_beats_its_zero_gradient_run_and_its_flipped_loss_does_not(tmp_path, recipe):
    trained = [knn(tmp_path, recipe, seed) for seed in SEEDS]
    with temporary_plugin(no_gradient_plugin("care"), "control"):
        control = [knn(tmp_path, recipe, seed, "method.name=care_nograd", "train.epochs=2") for seed in SEEDS]
    with temporary_plugin(sign_flipped_plugin("care"), "flipped"):
        flipped = knn(tmp_path, recipe, 0, "method.name=care_flipped")
    numbers = {"trained": trained, "zero-gradient": control, "flipped (seed 0)": flipped}
    assert statistics.mean(trained) >= statistics.mean(control) + 0.5, numbers
    assert flipped < statistics.mean(control) + 0.5, numbers

"""Each digits recipe learns: the mean trained k-NN over seeds 0, 1, 2 beats the mean of the same
recipe with its loss multiplied by zero (ssl_kit.testing.no_gradient_plugin) by at least half a
point, and the same recipe with its loss sign flipped (ssl_kit.testing.sign_flipped_plugin, seed 0)
does not. CARE has no predictor, so a flip is no symmetry: the flipped InfoNCE pulls different
images together.

The zero-gradient control learns no weight; only batch-norm running statistics move (and, for
MoCo v2, the key encoder's EMA and the queue, which the evaluated query backbone does not use). It
runs 20 steps: with three (SimCLR) or four (MoCo v2) backbone passes per step the statistics keep
0.9^60 < 0.2 % of their initial values. Its backbone, views and data order are those of the
trained run of the same seed; the two bases do not share a control, because they pass the global
views through the batch norms differently (one concatenated pass for SimCLR, one pass per view for
MoCo v2). One test per recipe, so that pytest-xdist never computes a control twice.
Measured numbers: the README.
"""

import statistics

import pytest

from ssl_kit import train
from ssl_kit.recipe import load_recipe
from ssl_kit.testing import no_gradient_plugin, sign_flipped_plugin, temporary_plugin

KEY = "knn_cosine_k20_t0.07_top1"
SEEDS = (0, 1, 2)


def knn(out, recipe, seed, *overrides):
    overrides = [f"train.output_dir={out}", f"train.seed={seed}", "train.progress=false", "train.checkpoint_every=0",
                 "train.export=false", "eval.evaluators=['knn']", "eval.baselines=[]", "eval.plots=false", *overrides]
    return train(load_recipe(recipe, overrides))["results"]["trained"][KEY]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["care-digits", "care-mocov2-digits"])
def test_digits_recipe_beats_its_zero_gradient_run_and_its_flipped_loss_does_not(tmp_path, recipe):
    trained = [knn(tmp_path / f"trained{seed}", recipe, seed) for seed in SEEDS]
    with temporary_plugin(no_gradient_plugin("care"), "control"):
        control = [knn(tmp_path / f"control{seed}", recipe, seed, "method.name=care_nograd", "train.max_steps=20")
                   for seed in SEEDS]
    with temporary_plugin(sign_flipped_plugin("care"), "flipped"):
        flipped = knn(tmp_path / "flipped", recipe, 0, "method.name=care_flipped")
    numbers = {"trained": trained, "zero-gradient": control, "flipped (seed 0)": flipped}
    print(f"{recipe}: {numbers}")
    assert statistics.mean(trained) >= statistics.mean(control) + 0.5, numbers
    assert flipped < statistics.mean(control) + 0.5, numbers

"""The digits recipes learn: the mean k-NN over seeds 0, 1, 2 beats a zero-gradient run of the same
recipe by at least 0.5 points, and the same run with the loss sign flipped does not.

The zero-gradient control (ssl_kit.testing.no_gradient_plugin) learns nothing: only batch-norm
running statistics move, and they settle within a few dozen steps, so it runs one epoch (39
steps). Its encoder is Conv4 alone, whose evolution depends on the backbone's initialisation,
the views and the data order, never on the method's head or loss: the three recipes share all
of those (checked below), so one control per seed serves the three methods.

A sign flip is no symmetry here (no predictor): the flipped SimCLR + QARe loss pulls images
together and the flipped SparseCLR loss pushes the views of an image apart. Measured (2 shared
CPU cores, one torch thread; k-NN cosine k=20 T=0.07, 540 test images): see the plugin's README.
"""

import statistics

import pytest
import torch

from ssl_kit import train
from ssl_kit.build import build
from ssl_kit.recipe import load_recipe
from ssl_kit.testing import no_gradient_plugin, sign_flipped_plugin, temporary_plugin

KEY = "knn_cosine_k20_t0.07_top1"
SEEDS = (0, 1, 2)
RECIPES = {"qare-digits": "simclr_qare", "sparseclr-digits": "sparseclr", "sparseclr-qare-digits": "sparseclr_qare"}


def knn(out, recipe, seed, *overrides):
    overrides = [f"train.output_dir={out}", f"train.seed={seed}", "train.progress=false", "train.checkpoint_every=0",
                 "train.export=false", "eval.evaluators=['knn']", "eval.baselines=[]", "eval.plots=false", *overrides]
    return train(load_recipe(recipe, overrides))["results"]["trained"][KEY]


def test_the_three_digits_recipes_share_everything_but_the_method(tmp_path):
    tables = {name: load_recipe(name, [f"train.output_dir={tmp_path}"]).resolved() for name in RECIPES}
    first = tables["qare-digits"]
    for name, table in tables.items():
        assert table["method"]["name"] == RECIPES[name]
        assert {k: v for k, v in table.items() if k not in ("method", "description")} == \
            {k: v for k, v in first.items() if k not in ("method", "description")}, name
    backbones = [build(load_recipe(name, [f"train.output_dir={tmp_path}"])).method.backbone.state_dict() for name in RECIPES]
    for other in backbones[1:]:
        assert all(torch.equal(backbones[0][k], other[k]) for k in backbones[0])  # the same initial Conv4


@pytest.fixture(scope="module")
def zero_gradient_knn(tmp_path_factory):
    out = tmp_path_factory.mktemp("qare-digits-control")
    with temporary_plugin(no_gradient_plugin("simclr_qare"), "control"):
        values = [knn(out / f"seed{seed}", "qare-digits", seed, "method.name=simclr_qare_nograd", "train.epochs=1")
                  for seed in SEEDS]
    print(f"zero-gradient control, seeds {SEEDS}: {values}")
    return statistics.mean(values)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_digits_recipe_beats_the_zero_gradient_run_by_half_a_point(tmp_path, recipe, zero_gradient_knn):
    trained = [knn(tmp_path / f"seed{seed}", recipe, seed) for seed in SEEDS]
    print(f"{recipe} trained, seeds {SEEDS}: {trained}; zero-gradient mean {zero_gradient_knn:.2f}")
    assert statistics.mean(trained) >= zero_gradient_knn + 0.5, (trained, zero_gradient_knn)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_digits_recipe_with_the_loss_sign_flipped_does_not(tmp_path, recipe, zero_gradient_knn):
    method = RECIPES[recipe]
    with temporary_plugin(sign_flipped_plugin(method), "control"):
        flipped = knn(tmp_path, recipe, 0, f"method.name={method}_flipped")
    print(f"{recipe} sign-flipped, seed 0: {flipped}; zero-gradient mean {zero_gradient_knn:.2f}")
    assert not flipped >= zero_gradient_knn + 0.5, (flipped, zero_gradient_knn)

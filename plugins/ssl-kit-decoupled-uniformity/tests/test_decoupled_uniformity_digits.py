"""Both digits recipes learn: the mean trained k-NN over seeds 0, 1, 2 beats the mean of the
zero-gradient control over the same seeds by at least 0.5 points, the same recipe with its loss
sign-flipped does not, and the prior (kernel) recipe is at least as good as the plain one.

The zero-gradient control (ssl_kit.testing.no_gradient_plugin: the same forward, the loss times 0)
moves only batch-norm running statistics, which settle within a few dozen steps, so it runs
CONTROL_EPOCHS epochs. It is one control for both recipes: they share the images, their order,
the views, the network and its initialisation, and with a zero loss the kernel changes nothing.

The sign flip is no symmetry here: the loss depends on the centroids through their pairwise
distances only, and maximising it pulls every centroid onto the others (collapse) and the views
of an image apart; nothing in the network can undo it.

Runs are cached per session in a file shared by the pytest-xdist workers (one lock per run), so
the control and each recipe's trained runs are computed once. Measured numbers: the plugin README.
"""

import json
import os
import statistics
from pathlib import Path

import pytest
from filelock import FileLock

from ssl_kit import train
from ssl_kit.recipe import load_recipe
from ssl_kit.testing import no_gradient_plugin, sign_flipped_plugin, temporary_plugin

KEY = "knn_cosine_k20_t0.07_top1"
SEEDS = (0, 1, 2)
MARGIN = 0.5
CONTROL_EPOCHS = 4
PLAIN, PRIOR = "decoupled-uniformity-digits", "decoupled-uniformity-digits-prior"


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """A folder this pytest session's workers share (the base temp's parent under xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def knn(out: Path, recipe: str, seed: int, *overrides: str) -> float:
    overrides = (f"train.output_dir={out / f'seed{seed}'}", f"train.seed={seed}", "train.progress=false",
                 "train.checkpoint_every=0", "train.export=false", "eval.plots=false", "eval.evaluators=['knn']",
                 "eval.baselines=[]", "eval.extra_features=[]", *overrides)
    return train(load_recipe(recipe, list(overrides)))["results"]["trained"][KEY]


def runs(shared: Path, name: str, recipe: str, control: str = "") -> list[float]:
    """k-NN over SEEDS of ``recipe`` ('' trained, 'nograd' or 'flipped'), computed once per session."""
    cache = shared / f"decoupled-uniformity-{name}.json"
    with FileLock(str(cache) + ".lock"):
        if cache.is_file():
            return json.loads(cache.read_text())
        out = shared / f"decoupled-uniformity-{name}"
        if control == "nograd":
            with temporary_plugin(no_gradient_plugin("decoupled_uniformity"), "du_control"):
                values = [knn(out, recipe, s, "method.name=decoupled_uniformity_nograd",
                              f"train.epochs={CONTROL_EPOCHS}") for s in SEEDS]
        elif control == "flipped":
            with temporary_plugin(sign_flipped_plugin("decoupled_uniformity"), "du_control"):
                values = [knn(out, recipe, s, "method.name=decoupled_uniformity_flipped") for s in SEEDS]
        else:
            values = [knn(out, recipe, s) for s in SEEDS]
        cache.write_text(json.dumps(values))
        return values


def zero_gradient(shared: Path) -> float:
    return statistics.mean(runs(shared, "zero-gradient", PLAIN, "nograd"))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [PLAIN, PRIOR])
def test_digits_recipe_beats_its_zero_gradient_run_by_half_a_point(shared, recipe):
    trained, control = runs(shared, recipe, recipe), zero_gradient(shared)
    assert statistics.mean(trained) >= control + MARGIN, (trained, control)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [PLAIN, PRIOR])
def test_digits_recipe_with_its_loss_sign_flipped_does_not(shared, recipe):
    flipped, control = runs(shared, f"{recipe}-flipped", recipe, "flipped"), zero_gradient(shared)
    assert not statistics.mean(flipped) >= control + MARGIN, (flipped, control)


@pytest.mark.slow
def test_the_prior_recipe_is_at_least_as_good_as_the_plain_one(shared):
    plain, prior = runs(shared, PLAIN, PLAIN), runs(shared, PRIOR, PRIOR)
    assert statistics.mean(prior) >= statistics.mean(plain), (prior, plain)

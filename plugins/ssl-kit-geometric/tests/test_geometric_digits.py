"""Each geometric-*-digits recipe learns: the mean trained k-NN over seeds 0, 1, 2 beats the mean of
its zero-gradient control over the same seeds by at least 0.5 points, and a negative control of
its own loss (seed 0) does not beat the zero-gradient run (seed 0) by as much.

The zero-gradient control (ssl_kit.testing.no_gradient_plugin: the same forward, the loss times 0)
moves only the backbone's batch-norm running statistics; they settle within a few dozen steps, so
the control runs one epoch (39 steps), whatever the recipe's length. The evaluated encoder (the
online backbone, for all four methods) then depends on its initialisation, the views, the data
order, the weight decay (which moves weights even without a gradient; the recipes have none) and
how the backbone is called: SimCLR calls it once on both views concatenated, MoCo v2+, BYOL and
SimSiam once per view. The four recipes share everything but [method], the learning rate and the
epochs (checked below), so one control per seed serves MoCo v2+, BYOL and SimSiam (checked below:
their zero-gradient backbones are bitwise equal after a step) and SimCLR gets its own.

Negative controls:
- SimCLR and MoCo v2+: the loss sign-flipped (ssl_kit.testing.sign_flipped_plugin). Maximising the
  geodesic NT-Xent / InfoNCE pushes the views of an image apart and pulls other images together;
  nothing in the network can undo a flipped sign.
- BYOL and SimSiam: a sign flip is no negative control. The flipped loss -d(p, z)^2 is minimised
  by p = -z, which the predictor reaches by negating its last layer, and a predictor that outputs
  -p turns -d^2 into -(1 - d)^2: the same minimisers as d^2 (the baselines found the same for
  BYOL's and SimSiam's own losses: a flipped run learns as well as a real one). Their control
  keeps the loss and its sign and breaks what it learns from instead: each prediction is regressed
  on the target of ANOTHER image of the batch (the targets rolled by one row). Batches are
  reshuffled every epoch, so no feature of an image predicts its partner's target; the loss can
  only fall by making every output alike.

SimCLR trains 3 epochs, MoCo v2+ 10, BYOL 15 and SimSiam 30 (predictor methods need more steps
than contrastive ones: at 3 epochs neither beat its zero-gradient run, and at 15 SimSiam did not
either); with the views made in batches on the device all of them run in CI (about 3 CPU minutes
for BYOL's and SimSiam's runs together).

Measured with one torch thread (k-NN cosine k=20 T=0.07 on the backbone, 540 test images): see
the plugin README.
"""

import statistics

import pytest
import torch

from ssl_kit import hookimpl, train
from ssl_kit.recipe import load_recipe
from ssl_kit.testing import first_batch, no_gradient_plugin, sign_flipped_plugin, temporary_plugin
from ssl_kit_geometric import GeometricBYOL, GeometricBYOLConfig, GeometricSimSiam, GeometricSimSiamConfig

KEY = "knn_cosine_k20_t0.07_top1"
SEEDS = (0, 1, 2)
MARGIN = 0.5
CONTROL_EPOCHS = 1
METHODS = ("simclr", "mocov2plus", "byol", "simsiam")
#: the method whose zero-gradient run stands for each method's (same backbone calls: see above)
CONTROL = {"simclr": "simclr", "mocov2plus": "simsiam", "byol": "simsiam", "simsiam": "simsiam"}


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
    name = f"geometric_{method}"
    if method in ("byol", "simsiam"):
        return MismatchedPairs(), f"{name}_mismatched"
    return sign_flipped_plugin(name), f"{name}_flipped"


def knn(out, method, seed, *overrides):
    overrides = [f"train.output_dir={out}", f"train.seed={seed}", "train.progress=false", "train.checkpoint_every=0",
                 "train.export=false", "eval.plots=false", "eval.evaluators=['knn']", "eval.baselines=[]",
                 "eval.extra_features=[]", "eval.online_probe=false", *overrides]
    return train(load_recipe(f"geometric-{method}-digits", overrides))["results"]["trained"][KEY]


@pytest.fixture(scope="module")
def zero_gradient(tmp_path_factory):
    """zero_gradient(method, seed): the k-NN of the zero-gradient run standing for the method's,
    computed once per (control, seed) in this process."""
    runs = {}

    def value(method, seed):
        control = CONTROL[method]
        if (control, seed) not in runs:
            name = f"geometric_{control}"
            out = tmp_path_factory.mktemp(f"zero-{control}-{seed}")
            with temporary_plugin(no_gradient_plugin(name), "zero_gradient"):
                runs[control, seed] = knn(out, control, seed, f"method.name={name}_nograd",
                                          f"train.epochs={CONTROL_EPOCHS}")
            print(f"zero-gradient run of geometric_{control}, seed {seed}: {runs[control, seed]:.2f}")
        return runs[control, seed]

    return value


def test_the_four_digits_recipes_share_everything_but_the_method(tmp_path):
    def shared(recipe):  # with no weight decay a zero-gradient run moves no weight at any lr; it runs 1 epoch
        table = {k: v for k, v in recipe.resolved().items() if k not in ("method", "description")}
        return {**table, "optim": {k: v for k, v in table["optim"].items() if k != "lr"},
                "train": {k: v for k, v in table["train"].items() if k != "epochs"}}

    recipes = {m: load_recipe(f"geometric-{m}-digits", [f"train.output_dir={tmp_path}"]) for m in METHODS}
    assert all(shared(recipe) == shared(recipes["simclr"]) for recipe in recipes.values())
    assert recipes["simclr"].optim.weight_decay == 0
    # the zero-gradient runs of MoCo v2+, BYOL and SimSiam are one run: the same initial backbone,
    # and after a zero-gradient step on the same batch the same batch-norm statistics
    initial, stepped = {}, {}
    for method in METHODS:
        name = f"geometric_{method}"
        with temporary_plugin(no_gradient_plugin(name), "zero_gradient"):
            model, batch = first_batch(load_recipe(f"geometric-{method}-digits", [
                f"train.output_dir={tmp_path}", f"method.name={name}_nograd"]))
        initial[method] = {k: v.clone() for k, v in model.backbone.state_dict().items()}
        model.train()
        model(batch)["loss"].backward()
        assert all(p.grad is None or not p.grad.any() for p in model.parameters())
        stepped[method] = model.backbone.state_dict()

    def equal(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    assert all(equal(initial[m], initial["simclr"]) for m in METHODS)
    assert all(equal(stepped[m], stepped[CONTROL[m]]) for m in METHODS)
    assert not equal(stepped["simclr"], stepped["simsiam"])  # SimCLR's one call on both views: its own control


def test_a_digits_recipe_runs_with_the_papers_evaluation(tmp_path):
    """The tests below evaluate the primary k-NN only: one step with the whole [eval] table (k-NN
    k in {20, 1, 10}, T in {0.07, 0.2}, cosine and euclidean (weights 1/distance: no T), backbone and
    projector features)."""
    overrides = [f"train.output_dir={tmp_path}", "train.max_steps=1", "train.progress=false", "train.export=false",
                 "eval.plots=false", "eval.evaluators=['knn']", "eval.baselines=[]", "eval.online_probe=false"]
    results = train(load_recipe("geometric-byol-digits", overrides))["results"]
    for features in ("trained", "trained:projector"):
        for key in ("knn_cosine_k1_t0.2_top1", "knn_cosine_k10_t0.2_top1", "knn_euclidean_k1_top1", "knn_euclidean_k10_top1", KEY):
            assert 10 < results[features][key] <= 100, (features, key)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_digits_recipe_beats_its_zero_gradient_run_over_three_seeds(tmp_path, method, zero_gradient):
    trained = [knn(tmp_path / f"seed{seed}", method, seed) for seed in SEEDS]
    zero = [zero_gradient(method, seed) for seed in SEEDS]
    print(f"geometric-{method}-digits trained, seeds {SEEDS}: {trained}; zero-gradient {zero}")
    assert statistics.mean(trained) >= statistics.mean(zero) + MARGIN, {"trained": trained, "zero_gradient": zero}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_digits_negative_control_does_not_beat_the_zero_gradient_run(tmp_path, method, zero_gradient):
    plugin, name = negative_control(method)
    with temporary_plugin(plugin, "negative_control"):
        control = knn(tmp_path, method, 0, f"method.name={name}")
    print(f"geometric-{method}-digits negative control ({name}), seed 0: {control:.2f}; "
          f"zero-gradient {zero_gradient(method, 0):.2f}")
    assert not control >= zero_gradient(method, 0) + MARGIN, {"negative_control": control,
                                                              "zero_gradient": zero_gradient(method, 0)}

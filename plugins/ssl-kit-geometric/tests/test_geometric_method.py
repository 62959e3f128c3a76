"""The four geometric methods: the switch off is exactly the built-in, the switch on computes the
geodesic losses, config errors, the recipes' paper settings, and ssl_kit's method contract suite
(with one shared 2 processes = 1 process launch for all four methods)."""

import dataclasses
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ssl_kit.backbones import ConvNet, ConvNetConfig
from ssl_kit.errors import RecipeError
from ssl_kit.methods.byol import BYOL, BYOLConfig
from ssl_kit.methods.moco import MoCo, MoCoConfig
from ssl_kit.methods.simclr import SimCLR, SimCLRConfig
from ssl_kit.methods.simsiam import SimSiam, SimSiamConfig
from ssl_kit.recipe import load_recipe
from ssl_kit.testing import MethodContract, assert_same_runs, run_contract
from ssl_kit_geometric import (
    GeometricBYOL,
    GeometricBYOLConfig,
    GeometricMoCo,
    GeometricMoCoConfig,
    GeometricSimCLR,
    GeometricSimCLRConfig,
    GeometricSimSiam,
    GeometricSimSiamConfig,
    geodesic_moco_infonce,
    geodesic_nt_xent,
    released_byol_loss,
    released_simsiam_loss,
    squared_geodesic_loss,
)

HERE = Path(__file__).parent
CONTRACTS = {m: HERE / f"geometric_{m}_contract.toml" for m in ("simclr", "mocov2plus", "byol", "simsiam")}
SMALL = {"simclr": dict(proj_hidden_dim=16, proj_output_dim=8, temperature=0.1),
         "mocov2plus": dict(proj_hidden_dim=16, proj_output_dim=8, queue_size=12, temperature=0.1),
         "byol": dict(proj_hidden_dim=16, proj_output_dim=8, pred_hidden_dim=16),
         "simsiam": dict(proj_hidden_dim=16, proj_output_dim=8, pred_hidden_dim=4)}
PAIRS = {"simclr": (GeometricSimCLR, GeometricSimCLRConfig, SimCLR, SimCLRConfig),
         "mocov2plus": (GeometricMoCo, GeometricMoCoConfig, MoCo, MoCoConfig),
         "byol": (GeometricBYOL, GeometricBYOLConfig, BYOL, BYOLConfig),
         "simsiam": (GeometricSimSiam, GeometricSimSiamConfig, SimSiam, SimSiamConfig)}


def build(cls, cfg, seed=0):
    torch.manual_seed(seed)
    backbone = ConvNet(ConvNetConfig(channels=[4], pool_after=[], output_grid=1, in_channels=1))
    return cls(backbone, cfg)


def batch(n=6, seed=1):
    torch.manual_seed(seed)
    return {"global": [torch.randn(n, 1, 8, 8) for _ in range(2)]}


def loss_and_grads(method, views):
    out = method(views)
    out["loss"].backward()
    return out, {name: p.grad.clone() for name, p in method.named_parameters() if p.grad is not None}


def geometric(method, **cfg):
    cls, config, _, _ = PAIRS[method]
    return build(cls, config(**SMALL[method], **cfg))


# --- the switch --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(PAIRS))
def test_switch_off_is_exactly_the_built_in_method(method):
    cls, config, builtin_cls, builtin_config = PAIRS[method]
    ours = build(cls, config(**SMALL[method], geometric=False))
    builtin = build(builtin_cls, builtin_config(**SMALL[method]))
    views = batch()
    out, grads = loss_and_grads(ours, views)
    expected, expected_grads = loss_and_grads(builtin, views)
    assert torch.equal(out["loss"], expected["loss"])
    assert grads.keys() == expected_grads.keys() and len(grads) > 4
    assert all(torch.equal(grads[name], expected_grads[name]) for name in grads)
    assert out.keys() == expected.keys()
    on = build(cls, config(**SMALL[method]))
    assert not torch.equal(on(views)["loss"], expected["loss"])  # and on, it is another loss


def test_geometric_simclr_loss_is_geodesic_nt_xent_of_its_projections():
    method, views = geometric("simclr", geodesic_eps=1e-6), batch()
    out = method(views)
    with torch.no_grad():
        z = method.projector(method.backbone(torch.cat(views["global"])))
    torch.testing.assert_close(out["loss"], geodesic_nt_xent(z, temperature=0.1, eps=1e-6), rtol=0, atol=0)
    assert out["features"].shape == (12, 4)


@pytest.mark.parametrize("symmetric", [True, False])
def test_geometric_moco_loss_uses_geodesic_logits_and_enqueues_its_keys(symmetric):
    method, views = geometric("mocov2plus", symmetric=symmetric), batch()
    queue = method.queue.queue.clone()
    out = method(views)
    with torch.no_grad():
        q = [F.normalize(method.projector(method.backbone(v)), dim=1) for v in views["global"]]
        k = [F.normalize(method.key_encoder(v), dim=1) for v in views["global"]]
    if symmetric:
        expected = (geodesic_moco_infonce(q[0], k[1], queue[1], 0.1) + geodesic_moco_infonce(q[1], k[0], queue[0], 0.1)) / 2
    else:
        expected = geodesic_moco_infonce(q[0], k[1], queue[0], 0.1)
    torch.testing.assert_close(out["loss"], expected, rtol=0, atol=0)
    out["loss"].backward()
    method.after_step(1, 10)
    newest = method.queue.queue[1 if symmetric else 0, :, :6].T  # the first 6 slots: this step's keys of view 2
    torch.testing.assert_close(newest, k[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method, released", [("byol", released_byol_loss), ("simsiam", released_simsiam_loss)])
@pytest.mark.parametrize("variant", ["geodesic", "released"])
def test_byol_and_simsiam_losses_are_the_chosen_variant(method, released, variant):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geometric(method, geometric_variant=variant)
    views = batch()
    out = model(views)
    with torch.no_grad():
        h = [model.backbone(v) for v in views["global"]]
        z = [model.projector(x) for x in h]
        p = [model.predictor(x) for x in z]
        targets = [model.target(v) for v in views["global"]] if method == "byol" else z
    one = released if variant == "released" else squared_geodesic_loss
    weight = 1.0 if method == "byol" else 0.5  # BYOL sums the two directions, SimSiam averages them
    expected = weight * (one(p[0], targets[1]) + one(p[1], targets[0]))
    torch.testing.assert_close(out["loss"], expected, rtol=1e-6, atol=1e-7)


def test_released_byol_warns_that_it_pushes_predictions_away():
    with pytest.warns(UserWarning, match="pushes the predictions AWAY from their targets"):
        geometric("byol", geometric_variant="released")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        geometric("byol")  # ours: no warning
        geometric("byol", geometric_variant="released", geometric=False)  # the switch off: BYOL itself
        geometric("simsiam", geometric_variant="released")


def test_gradients_reach_the_backbone_in_every_variant():
    for method in ("byol", "simsiam"):
        for variant in ("geodesic", "released"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = geometric(method, geometric_variant=variant)
            model(batch())["loss"].backward()
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters()), (method, variant)


# --- config ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, override, message", [
    ("simclr", "method.similarity='dot'", "key 'similarity' must be 'cosine' when geometric = true"),
    ("simclr", "method.similarity='geodesic'", "key 'similarity' must be 'cosine' | 'dot', got 'geodesic'"),
    ("simclr", "method.geodesic_eps=0", "key 'geodesic_eps' must be > 0, got 0"),
    ("mocov2plus", "method.geodesic_eps=1.5", "key 'geodesic_eps' must be < 1, got 1.5"),
    ("byol", "method.geometric_variant='ours'", "key 'geometric_variant' must be 'geodesic' | 'released', got 'ours'"),
    ("simsiam", "method.geometric=1", "key 'geometric' must be bool, got 1"),
    ("simsiam", "method.geometric_varient='released'", "Did you mean 'geometric_variant'?"),
])
def test_bad_config_values_are_one_line_recipe_errors(method, override, message):
    with pytest.raises(RecipeError) as err:
        load_recipe(str(CONTRACTS[method]), [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_switch_off_accepts_the_dot_similarity():
    assert GeometricSimCLRConfig(geometric=False, similarity="dot").similarity == "dot"


def test_defaults_are_the_papers():
    simclr, moco = GeometricSimCLRConfig(), GeometricMoCoConfig()
    assert (simclr.temperature, simclr.geodesic_eps, simclr.proj_output_dim, simclr.geometric) == (0.05, 1e-7, 128, True)
    assert (moco.temperature, moco.geodesic_eps, moco.queue_size, moco.proj_output_dim) == (0.05, 1e-6, 4096, 128)
    for cfg in (GeometricBYOLConfig(), GeometricSimSiamConfig()):
        assert (cfg.geometric, cfg.geometric_variant, cfg.geodesic_eps) == (True, "geodesic", 1e-7)
    # every other key keeps the built-in's default
    for ours, builtin in ((GeometricBYOLConfig, BYOLConfig), (GeometricSimSiamConfig, SimSiamConfig)):
        assert {f.name: getattr(ours(), f.name) for f in dataclasses.fields(builtin)} == dataclasses.asdict(builtin())


# --- recipes -----------------------------------------------------------------------------------
RECIPES = [f"geometric-{m}-{d}" for m in ("simclr", "mocov2plus", "byol", "simsiam") for d in ("cifar10", "imagenet100", "digits")]


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_validates_and_evaluates_as_the_paper(name):
    recipe = load_recipe(name)
    assert recipe.method_name == "geometric_" + name.split("-")[1] and recipe.method.geometric
    knn = recipe.evaluators["knn"]
    assert {1, 10} <= set(knn.k) and 0.2 in knn.temperature and set(knn.distance) == {"cosine", "euclidean"}
    assert list(recipe.eval.extra_features) == ["projector"] and recipe.eval.features == "encoder"


def test_recipes_carry_the_papers_training_settings():
    simclr = load_recipe("geometric-simclr-cifar10")
    assert (simclr.method.temperature, simclr.optim.name, simclr.optim.lr, simclr.data.batch_size, simclr.train.epochs) == \
        (0.05, "lars", 0.4, 512, 1000)
    moco = load_recipe("geometric-mocov2plus-cifar10")
    assert (moco.method.temperature, moco.method.queue_size, moco.optim.name, moco.optim.lr) == (0.05, 4096, "sgd", 0.3)
    assert load_recipe("geometric-mocov2plus-imagenet100").method.queue_size == 8192
    for name in ("geometric-simclr-imagenet100", "geometric-mocov2plus-imagenet100"):
        recipe = load_recipe(name)
        assert recipe.method.temperature == 0.05 and recipe.train.epochs == 400 and recipe.data.batch_size == 512
    linear = load_recipe("geometric-simclr-cifar10").evaluators["linear_torch"]
    assert (linear.lr, linear.epochs, linear.batch_size, linear.schedule) == (1.0, 100, 256, "step")


# --- the contract suite ------------------------------------------------------------------------
# The kill-and-resume check (three full launches, about 25 s of CPU each) runs for geometric_mocov2plus
# alone, the one whose forward writes state (the keys it stages for after_step). The other three add
# no buffer and no after_step to their built-ins (BYOL's EMA target is the built-in's), so they
# resume as the built-ins, whose check the core runs; the deterministic-loss and safetensors checks
# cover what their forward changes.
RESUME_COVERED = "covered: no state of its own beyond its built-in's, whose resume check the core runs"


class TestGeometricSimCLRContract(MethodContract):
    recipe = str(CONTRACTS["simclr"])
    two_processes = False  # one launch for all four below

    def test_contract_resume_after_sigkill_equals_uninterrupted_run(self, tmp_path):
        pytest.skip(RESUME_COVERED)

    def loss_for_gradcheck(self):
        torch.manual_seed(0)
        z = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
        return (lambda z: geodesic_nt_xent(z, temperature=0.2)), (z,)


class TestGeometricMoCoContract(MethodContract):
    recipe = str(CONTRACTS["mocov2plus"])
    two_processes = False

    def loss_for_gradcheck(self):
        torch.manual_seed(0)
        k = F.normalize(torch.randn(5, 4, dtype=torch.float64), dim=1)
        queue = F.normalize(torch.randn(4, 7, dtype=torch.float64), dim=0)
        q = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
        return (lambda q: geodesic_moco_infonce(F.normalize(q, dim=1), k, queue, 0.2)), (q,)


class TestGeometricBYOLContract(MethodContract):
    recipe = str(CONTRACTS["byol"])
    two_processes = False

    def test_contract_resume_after_sigkill_equals_uninterrupted_run(self, tmp_path):
        pytest.skip(RESUME_COVERED)

    def loss_for_gradcheck(self):
        torch.manual_seed(0)
        p, z = torch.randn(6, 4, dtype=torch.float64, requires_grad=True), torch.randn(6, 4, dtype=torch.float64)
        return (lambda p: squared_geodesic_loss(p, z)), (p,)


class TestGeometricSimSiamContract(MethodContract):
    recipe = str(CONTRACTS["simsiam"])
    two_processes = False

    def test_contract_resume_after_sigkill_equals_uninterrupted_run(self, tmp_path):
        pytest.skip(RESUME_COVERED)

    def loss_for_gradcheck(self):
        torch.manual_seed(0)
        p, z = torch.randn(6, 4, dtype=torch.float64, requires_grad=True), torch.randn(6, 4, dtype=torch.float64)
        return (lambda p: squared_geodesic_loss(p, z)), (p,)


def test_two_processes_equal_one_process_for_all_four_methods(tmp_path):
    """The contract's 2-process check (one SGD step, SyncBN on, the global batch split over two gloo
    processes) with one launch per process count for the four methods, as the core does for its
    built-ins: the geodesic NT-Xent gathers its negatives, MoCo gathers its keys into the queue."""
    recipes = list(CONTRACTS.values())
    run_contract(tmp_path, recipes, processes=1)
    run_contract(tmp_path, recipes, processes=2)
    for recipe in recipes:
        assert_same_runs(tmp_path / recipe.stem / "p1", tmp_path / recipe.stem / "p2", rtol=1e-5, atol=1e-5,
                         what=f"{recipe.stem}: 1 process x the global batch and 2 processes x half of it")

"""The CARE method: config errors, the views it asks for, weight = 0 as the plain baselines (ssl_kit's
SimCLR and asymmetric MoCo v2, exactly), the loss it adds, group sharing within chunks (one
process and two), and ssl_kit's method contract suite for both bases."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ssl_kit import hookimpl
from ssl_kit.backbones import ConvNet, ConvNetConfig
from ssl_kit.build import build, build_views
from ssl_kit.config import knob
from ssl_kit.data import TensorImages
from ssl_kit.data.sampler import EpochBatchSampler
from ssl_kit.errors import RecipeError, UserError
from ssl_kit.methods.moco import MoCo, MoCoConfig
from ssl_kit.methods.simclr import SimCLR, SimCLRConfig
from ssl_kit.recipe import load_recipe
from ssl_kit.spec import ViewSpec
from ssl_kit.testing import MethodContract, assert_same_runs, first_batch, run_contract, temporary_plugin
from ssl_kit_care import CARE, CAREConfig, equivariance_loss

HERE = Path(__file__).parent
SIMCLR_CONTRACT, MOCO_CONTRACT = HERE / "care_contract.toml", HERE / "care_mocov2_contract.toml"


def backbone():
    return ConvNet(ConvNetConfig(channels=[4], pool_after=[], output_grid=1, in_channels=3))


def tiny(**cfg):
    torch.manual_seed(0)
    return CARE(backbone(), CAREConfig(**{"proj_hidden_dim": 8, "proj_output_dim": 4, **cfg}))


def batch_of(n=8, groups=True):
    torch.manual_seed(1)
    out = {"global": [torch.randn(n, 3, 8, 8) for _ in range(2)]}
    if groups:
        out["group"] = [torch.randn(n, 3, 8, 8) for _ in range(2)]
    return out


# --- config and views ----------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("method.base='moco'", "key 'base' must be 'simclr' | 'mocov2', got 'moco'"),
    ("method.weight=-0.1", "key 'weight' must be >= 0, got -0.1"),
    ("method.equiv_splits=0", "key 'equiv_splits' must be >= 1, got 0"),
    ("method.final_tau=0.5", "key 'final_tau' (0.5) must be >= base_tau (0.99)"),
    ("method.wieght=1", "[method] unknown key 'wieght'. Did you mean 'weight'?"),
])
def test_bad_config_values_are_one_line_recipe_errors(override, message):
    with pytest.raises(RecipeError) as err:
        load_recipe(str(SIMCLR_CONTRACT), [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_views_give_each_chunk_its_own_pair_or_share_one_across_the_batch():
    assert tiny(equiv_splits=8).view_spec() == ViewSpec(global_views=2, preset="care", group_views=2, shared_groups=8)
    assert tiny(equiv_splits=8, share_across_groups=True).view_spec().shared_groups == 1
    assert tiny(weight=0.0).view_spec().group_views == 0  # the baseline asks for no group views


@pytest.mark.parametrize("views, message", [
    (ViewSpec(group_views=2, shared_groups=2), r"shared_groups = 2 does not match \[method\] equiv_splits = 4 with "
                                               r"share_across_groups = false: CARE needs shared_groups = 4"),
    (ViewSpec(group_views=1, shared_groups=4), r"group_views = 1: CARE with \[method\] weight > 0 needs 2"),
])
def test_views_that_break_the_chunk_groups_are_refused_when_set(views, message):
    with pytest.raises(UserError, match=message):
        tiny(equiv_splits=4).set_views(views)


def test_a_recipe_that_overrides_shared_groups_fails_when_built(tmp_path):
    with pytest.raises(UserError, match="CARE needs shared_groups = 4"):
        build(load_recipe(str(SIMCLR_CONTRACT), ["views.shared_groups=2", f"train.output_dir={tmp_path}"]))


# --- weight = 0 is the plain baseline ------------------------------------------------------------
def test_weight_zero_equals_ssl_kits_simclr_exactly_and_skips_the_group_passes():
    care = tiny(weight=0.0, temperature=0.5)
    torch.manual_seed(0)
    simclr = SimCLR(backbone(), SimCLRConfig(temperature=0.5, proj_hidden_dim=8, proj_output_dim=4,
                                             proj_batch_norm=True))
    batch = batch_of(groups=False)  # no group views at all: CARE must not touch them
    ours, theirs = care(batch), simclr(batch)
    assert torch.equal(ours["loss"], theirs["loss"]) and torch.equal(ours["features"], theirs["features"])
    ours["loss"].backward(), theirs["loss"].backward()
    reference = dict(simclr.named_parameters())
    assert reference.keys() == dict(care.named_parameters()).keys()
    for name, p in care.named_parameters():
        assert torch.equal(p.grad, reference[name].grad), name
    assert "equivariance" not in ours


def test_weight_zero_on_mocov2_equals_ssl_kits_asymmetric_moco_v2_exactly():
    settings = dict(temperature=0.2, queue_size=16, proj_hidden_dim=8, proj_output_dim=4, base_tau=0.9, final_tau=0.99)
    care = tiny(base="mocov2", weight=0.0, proj_batch_norm=False, **settings)
    torch.manual_seed(0)
    moco = MoCo(backbone(), MoCoConfig(symmetric=False, **settings))
    for step in (1, 2):
        batch = batch_of(groups=False)
        ours, theirs = care(batch), moco(batch)
        assert torch.equal(ours["loss"], theirs["loss"]) and torch.equal(ours["tau"], theirs["tau"])
        for method, out in ((care, ours), (moco, theirs)):
            out["loss"].backward()
            torch.optim.SGD(method.parameters(), lr=0.5).step()
            method.zero_grad()
            method.after_step(step, 10)  # enqueue keys, EMA-update the key encoder
    reference = moco.state_dict()
    assert reference.keys() == care.state_dict().keys()
    for name, value in care.state_dict().items():
        assert torch.equal(value, reference[name]), name
    assert int(care.queue.pointer) == 0  # two batches of 8 keys went round the 16-key queue
    assert not torch.equal(care.key_encoder.target[0].features[0].weight, care.backbone.features[0].weight)  # EMA


# --- the loss CARE adds --------------------------------------------------------------------------
@pytest.mark.parametrize("base", ["simclr", "mocov2"])
def test_loss_is_the_contrastive_term_plus_weight_times_equivariance_on_the_query_encoder(base):
    method = tiny(base=base, weight=0.7, equiv_splits=2, queue_size=16)
    batch = batch_of()
    out = method(batch)
    with torch.no_grad():  # train-mode BN: the same batch statistics as inside forward
        e1, e2 = (F.normalize(method.projector(method.backbone(g)), dim=1) for g in batch["group"])
    expected = equivariance_loss(e1, e2, chunks=2)
    torch.testing.assert_close(out["equivariance"], expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out["loss"], out["contrastive"] + 0.7 * expected, rtol=1e-6, atol=1e-7)
    assert out["equivariance"] > 0 and not out["equivariance"].requires_grad
    assert out["features"].shape == (16, 4)  # both global views' backbone features, view-major


@pytest.mark.parametrize("base", ["simclr", "mocov2"])
def test_equivariance_gradient_reaches_backbone_and_projector(base):
    method, batch = tiny(base=base, weight=1.0, equiv_splits=2, queue_size=16), batch_of()
    out = method(batch)
    (out["loss"] - out["contrastive"]).backward()  # the equivariance term's gradient alone
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.backbone.parameters())
    assert method.projector[0].weight.grad.abs().sum() > 0


def test_mixed_precision_forward_keeps_both_terms_in_float32():
    method = tiny(weight=1.0, equiv_splits=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(batch_of())
    assert out["loss"].dtype == out["equivariance"].dtype == torch.float32 and torch.isfinite(out["loss"])


# --- group sharing: one augmentation pair per chunk ----------------------------------------------
@dataclasses.dataclass
class SameImageConfig:
    num_samples: int = knob(32, "copies of one image")


def same_image(cfg, split):
    """One fixed image, repeated: any difference between two group views comes from augmentation."""
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)).mul(255).round().to(torch.uint8)
    return TensorImages(image.repeat(cfg.num_samples, 1, 1, 1), torch.zeros(cfg.num_samples, dtype=torch.long),
                        mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=1)


class SameImagePlugin:
    @hookimpl
    def register_datasets(self, register):
        register("care_same_image", same_image, config=SameImageConfig)


def same_image_recipe(tmp_path, *overrides):
    return load_recipe(str(SIMCLR_CONTRACT), ["data.name='care_same_image'", f"train.output_dir={tmp_path}",
                                              *overrides])


def assert_shared_within_chunks_only(views, chunk):
    for view in views:
        for i in range(len(view)):
            for j in range(len(view)):
                assert torch.equal(view[i], view[j]) == (i // chunk == j // chunk), (i, j)
    assert not torch.equal(views[0][0], views[1][0])  # t1 and t2 are two draws


def test_group_views_are_shared_within_each_chunk_and_differ_between_chunks(tmp_path):
    with temporary_plugin(SameImagePlugin(), "same_image"):
        method, batch = first_batch(same_image_recipe(tmp_path))
        assert method.views.shared_groups == 4 and batch["group_index"].tolist() == [k for k in range(4) for _ in range(4)]
        assert_shared_within_chunks_only(batch["group"], chunk=4)
        _, shared = first_batch(same_image_recipe(tmp_path, "method.share_across_groups=true"))
    assert_shared_within_chunks_only(shared["group"], chunk=16)  # the released code: one pair for the batch


def test_chunks_of_the_gathered_batch_are_the_groups_across_two_processes(tmp_path):
    with temporary_plugin(SameImagePlugin(), "same_image"):
        parts = build(same_image_recipe(tmp_path))
        views = build_views(parts)

        def first(rank, world):
            keys = next(iter(EpochBatchSampler(len(parts.dataset), 16, 0, 1, rank=rank, world_size=world)))
            return torch.utils.data.default_collate([views[k] for k in keys])

        whole, halves = first(0, 1), [first(r, 2) for r in range(2)]
    gathered = [torch.cat([h["group"][v] for h in halves]) for v in range(2)]  # rank-major, as distributed.gather
    for v in range(2):
        assert torch.equal(gathered[v], whole["group"][v])
    assert torch.cat([h["group_index"] for h in halves]).tolist() == [i // 4 for i in range(16)]  # chunk i // m
    assert_shared_within_chunks_only(gathered, chunk=4)


def write_same_image_folder(root):
    image = Image.fromarray(torch.randint(0, 256, (16, 16, 3), generator=torch.Generator().manual_seed(0),
                                          dtype=torch.uint8).numpy())
    for split, n in (("train", 32), ("test", 4)):
        (root / split / "a").mkdir(parents=True)
        for i in range(n):
            image.save(root / split / "a" / f"{i}.png")


def logged(run, key):
    return [json.loads(line)[key] for line in (run / "log.jsonl").read_text().splitlines()]


def test_two_processes_equal_one_process_for_both_bases_and_chunks_hold_one_augmentation_each(tmp_path):
    """One launch per process count for every check (each launch costs a start-up): the contract's
    2 processes = 1 process comparison for both bases, and, on identical images, an equivariance
    term of 0 on 1 and 2 processes: every chunk of the gathered batch holds copies under one pair
    (t1, t2), i.e. chunks and groups coincide across processes."""
    write_same_image_folder(tmp_path / "images")
    same = tmp_path / "care_same_images.toml"
    same.write_text(f'extends = "{SIMCLR_CONTRACT}"\n[data]\nname = "image_folder"\nroot = "{tmp_path / "images"}"\n'
                    "batch_size = 16\n")
    recipes = [SIMCLR_CONTRACT, MOCO_CONTRACT, same]
    run_contract(tmp_path / "runs", recipes, processes=1)
    run_contract(tmp_path / "runs", recipes, processes=2)
    for recipe in recipes:
        runs = tmp_path / "runs" / recipe.stem
        assert_same_runs(runs / "p1", runs / "p2", what=f"{recipe.stem}: one optimizer step (adam, SyncBN on) of 1 "
                         "process x the global batch and 2 processes x half of it")
    for processes in ("p1", "p2"):
        (equivariance,) = logged(tmp_path / "runs" / "care_same_images" / processes, "equivariance")
        assert 0 <= equivariance < 1e-8, (processes, equivariance)
    (different,) = logged(tmp_path / "runs" / "care_contract" / "p2", "equivariance")
    assert different > 1e-3  # distinct images: the same check is not trivially 0


# --- the contract suite ----------------------------------------------------------------------------
class TestCARESimCLRContract(MethodContract):
    recipe = str(SIMCLR_CONTRACT)
    two_processes = False  # one shared launch above covers both bases

    def loss_for_gradcheck(self):
        torch.manual_seed(0)
        e1 = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
        e2 = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
        return (lambda a, b: equivariance_loss(F.normalize(a, dim=1), F.normalize(b, dim=1), chunks=2)), (e1, e2)


class TestCAREMoCoContract(MethodContract):
    recipe = str(MOCO_CONTRACT)
    two_processes = False

    def loss_for_gradcheck(self):
        torch.manual_seed(1)
        e1 = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
        e2 = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
        return (lambda a, b: equivariance_loss(a, b, chunks=4)), (e1, e2)

    def test_the_evaluated_encoder_is_the_query_backbone_not_the_key_encoder(self, tmp_path):
        method, _ = first_batch(self.load(tmp_path))
        assert method.encoder() is method.backbone
        assert not any(p.requires_grad for p in method.key_encoder.parameters())

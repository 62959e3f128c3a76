"""The batched view path (ssl_kit.data.batched): torchvision's outputs for fixed parameters,
torchvision's parameter distributions, views that depend on their sample alone, every registered
preset compiled, the fallback and its refusal, and training on it (resume, 2 processes = 1)."""

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from scipy import stats
from torchvision import transforms as v1
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ssl_kit.build import build, build_loader
from ssl_kit.data import batched_ops as B
from ssl_kit.data.batched import BatchedViews, compile_preset
from ssl_kit.data.presets import preset_digits, preset_simclr
from ssl_kit.errors import DataError, UserError
from ssl_kit.hooks import hookimpl
from ssl_kit.plugins import get_registry
from ssl_kit.recipe import load_recipe
from ssl_kit.spec import ViewContext, ViewSpec
from ssl_kit.testing import compare_runs, run_contract

ROOT = Path(__file__).resolve().parent
TINY = ROOT / "tiny.toml"
TOL = 1 / 255


@pytest.fixture(scope="module")
def images():
    return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def per_image(fn, x, *columns):
    return torch.stack([fn(x[i], *(c[i] for c in columns)) for i in range(len(x))])


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [32, 13, 48])
def test_resized_crop_matches_torchvision(images, mode, size):
    top, left = torch.tensor([0, 3, 5, 0, 10, 2]), torch.tensor([0, 1, 7, 4, 0, 9])
    h, w = torch.tensor([32, 10, 20, 28, 5, 23]), torch.tensor([32, 12, 25, 28, 7, 19])
    ours = B.resized_crop(images, top, left, h, w, (size, size), mode)
    ref = per_image(lambda x, t, l, hh, ww: TF.resized_crop(x, int(t), int(l), int(hh), int(ww), [size, size],
                                                             interpolation=v2.InterpolationMode(mode), antialias=True),
                    images, top, left, h, w)
    assert (ours - ref).abs().max() < TOL * 2 and (ours - ref).abs().max() < 1e-5


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation", "hue"])
def test_colour_adjustments_match_torchvision(images, name):
    factors = torch.tensor([-0.3, -0.05, 0.0, 0.1, 0.25, 0.5]) if name == "hue" else \
        torch.tensor([0.2, 0.5, 1.0, 1.5, 1.8, 0.0])
    ref = per_image(lambda x, f: getattr(TF, f"adjust_{name}")(x, float(f)), images, factors)
    assert (getattr(B, name)(images, factors) - ref).abs().max() < min(TOL, 1e-5)


@pytest.mark.parametrize("kernel", [3, 5])
def test_blur_grayscale_solarize_affine_match_torchvision(images, kernel):
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 0.3])
    ref = per_image(lambda x, s: TF.gaussian_blur(x, [kernel, kernel], [float(s)] * 2), images, sigma)
    assert (B.gaussian_blur(images, kernel, sigma) - ref).abs().max() < 1e-5
    ref = per_image(lambda x: TF.rgb_to_grayscale(x, 3), images)
    assert (B.grayscale(images).expand(-1, 3, -1, -1) - ref).abs().max() < 1e-6
    assert torch.equal(B.solarize(images, 0.5), TF.solarize(images, 0.5))
    angle, shear = torch.tensor([-10.0, 0, 5, 10, 3.3, -7]), torch.tensor([0.0, 5, -10, 2, 9, -3])
    tx, ty = torch.tensor([0, 1, -2, 3, 0, -1]), torch.tensor([1, 0, 2, -3, 0, 0])
    ours = B.affine_nearest(images, angle, tx, ty, shear, torch.zeros(6), torch.ones(6))
    ref = per_image(lambda x, a, x0, y0, s: TF.affine(x, angle=float(a), translate=[int(x0), int(y0)], scale=1.0,
                                                      shear=[float(s), 0.0], fill=0), images, angle, tx, ty, shear)
    assert (ours - ref).abs().max() < TOL


def test_uniform_is_a_pure_function_of_stream_key_and_draw():
    keys = torch.arange(20_000)
    u = B.uniform(12345, keys, 3)
    assert torch.equal(B.uniform(12345, keys[[7, 3, 19_999]], 3), u[[7, 3, 19_999]])  # batch-independent
    assert not torch.equal(B.uniform(12346, keys[:5], 3), u[:5])
    for column in u.T:
        assert stats.kstest(column.numpy(), "uniform").pvalue > 0.01
    assert abs(float(torch.corrcoef(u.T)[0, 1])) < 0.03  # draws of one key are unrelated
    assert abs(float(torch.corrcoef(torch.stack([u[:-1, 0], u[1:, 0]]))[0, 1])) < 0.03  # neighbouring keys too


def test_crop_parameters_follow_torchvision_distribution():
    n, size, scale, ratio = 10_000, 32, (0.08, 1.0), (3 / 4, 4 / 3)
    top, left, h, w = B.random_crop_boxes(B.uniform(99, torch.arange(n), 22), size, size, scale, ratio)
    torch.manual_seed(0)
    canvas = torch.empty(1, size, size)
    ref = torch.tensor([v1.RandomResizedCrop.get_params(canvas, list(scale), list(ratio)) for _ in range(n)])
    assert ((top + h <= size) & (left + w <= size) & (top >= 0) & (left >= 0)).all()
    for ours, theirs in ((h * w, ref[:, 2] * ref[:, 3]), (w / h, ref[:, 3] / ref[:, 2]), (top, ref[:, 0])):
        assert stats.ks_2samp(ours.double().numpy(), theirs.double().numpy()).pvalue > 0.01


def test_jitter_factors_order_and_application_rates():
    """ColorJitter's factors are uniform on torchvision's ranges, applied at p 0.8 in a uniformly
    random order; flip p 0.5, grayscale p 0.2 (binomial 4-sigma bounds on 10^4 images)."""
    n = 10_000
    recorded = {}
    original = {name: getattr(B, name) for name in ("brightness", "contrast", "saturation", "hue")}

    def recorder(name):
        def fn(x, factor):
            recorded.setdefault(name, []).append(factor.clone())
            return original[name](x, factor)
        return fn

    ops = compile_preset(preset_simclr(ViewContext("global", 0, 8, (0.08, 1.0), 3)), 3, 8, 8)
    jitter = next(op for op in ops if op.name == "ColorJitter")
    u = B.uniform(5, torch.arange(n), jitter.draws)
    mp = pytest.MonkeyPatch()
    for name in original:
        mp.setattr(B, name, recorder(name))
    try:
        from ssl_kit.data import batched
        batched_ops = batched._jitter(v2.ColorJitter(0.8, 0.8, 0.8, 0.2), 0.8)
        batched_ops.fn(torch.rand(n, 3, 2, 2), u)
    finally:
        mp.undo()
    b = recorded["brightness"][0]
    assert stats.kstest(((b - 0.2) / 1.6).numpy(), "uniform").pvalue > 0.01
    h = recorded["hue"][0]
    assert stats.kstest(((h + 0.2) / 0.4).numpy(), "uniform").pvalue > 0.01
    order = u[:, 5:9].argsort(1)
    counts = torch.bincount(order[:, 0], minlength=4).double()
    assert ((counts - n / 4).abs() < 4 * math.sqrt(n * 3 / 16)).all()
    applied = (u[:, 0] < 0.8).double().mean()
    assert abs(float(applied) - 0.8) < 4 * math.sqrt(0.16 / n)
    flip = next(op for op in ops if op.name == "RandomHorizontalFlip")
    x = torch.arange(2.0).view(1, 1, 1, 2).expand(n, 3, 1, 2)
    rate = float((flip.fn(x, B.uniform(6, torch.arange(n), 1))[:, 0, 0, 0] == 1).double().mean())
    assert abs(rate - 0.5) < 4 * math.sqrt(0.25 / n)


def spec(**kw):
    return ViewSpec(**{"global_views": 2, "preset": "simclr", **kw})


def test_a_view_depends_on_its_sample_alone_not_on_its_batch():
    views = BatchedViews(spec(local_views=2, local_size=6), preset_simclr, 3, 16, 16, (0.5,) * 3, (0.25,) * 3, seed=3)
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    index = torch.arange(100, 110)
    whole = views(images, index, epoch=2)
    halves = [views(images[s], index[s], epoch=2) for s in (slice(0, 4), slice(4, 10))]
    for kind in ("global", "local"):
        for v in range(2):
            joined = torch.cat([h[kind][v] for h in halves])
            assert (joined - whole[kind][v]).abs().max() < 1e-6
    assert whole["local"][0].shape == (10, 3, 6, 6)
    assert not torch.equal(views(images, index, epoch=3)["global"][0], whole["global"][0])  # epochs differ
    assert not torch.equal(whole["global"][0], whole["global"][1])  # views differ


def test_group_views_share_parameters_within_a_group():
    views = BatchedViews(spec(group_views=1, shared_groups=2), preset_simclr, 3, 16, 16, None, None, seed=0)
    image = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8).expand(8, -1, -1, -1)
    out = views(image, torch.arange(8), epoch=0, step=5, position=torch.arange(8), global_batch=8)
    group = out["group"][0]
    assert torch.equal(out["group_index"], torch.tensor([0] * 4 + [1] * 4))
    assert all(torch.equal(group[i], group[0]) for i in range(4)) and all(torch.equal(group[i], group[4]) for i in range(4, 8))
    assert not torch.equal(group[0], group[4])


@pytest.mark.parametrize("channels,size", [(3, 32), (1, 8)])
def test_every_registered_preset_has_a_batched_form(channels, size):
    presets = get_registry().names("view_presets")
    assert {"simclr", "byol", "relic", "digits", "care"} <= set(presets)
    for name in presets:
        factory = get_registry().get("view_presets", name).factory
        for kind, view, vsize in (("global", 0, size), ("global", 1, size), ("local", 0, max(4, size // 2)),
                                  ("group", 0, size)):
            compiled = compile_preset(factory(ViewContext(kind, view, vsize, (0.2, 1.0), channels)), channels, size, size)
            assert not isinstance(compiled, str), f"preset '{name}' ({kind}): no batched form for {compiled}"


def test_digits_views_match_the_per_sample_shapes_and_range():
    views = BatchedViews(spec(preset="digits", global_size=16, global_scale=(0.5, 1.0)), preset_digits, 1, 8, 8,
                         None, None, seed=0)
    out = views(torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8), torch.arange(5), epoch=0)
    assert out["global"][0].shape == (5, 1, 16, 16)
    assert 0.0 <= float(out["global"][0].min()) and float(out["global"][0].max()) <= 1.0


def train(tmp_path, *overrides, check=True):
    cmd = [sys.executable, "-m", "ssl_kit", str(TINY), f"train.output_dir={tmp_path}", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


class Rotations:
    """A third-party preset with an op the batched path does not know."""

    @hookimpl
    def register_view_presets(self, register):
        register("test_rotations", lambda ctx: [v2.RandomResizedCrop(ctx.size, antialias=True), v2.RandomRotation(10)])


def test_an_op_without_batched_form_falls_back_with_a_notice_or_refuses(tmp_path):
    ops = [v2.RandomApply([v2.ColorJitter(0.4), v2.RandomGrayscale()], p=0.5)]
    assert compile_preset(ops, 3, 8, 8) == "RandomApply"
    registry = get_registry()
    registry.add_plugin(Rotations(), "test-rotations")
    try:
        for mode in ("auto", "on"):
            recipe = load_recipe(str(TINY), [f"train.output_dir={tmp_path}", "views.preset=test_rotations",
                                              f"data.batched_views={mode}"])
            parts = build(recipe)
            said = []
            if mode == "auto":
                loader = build_loader(parts, 0, 1, say=said.append)
                assert isinstance(loader, torch.utils.data.DataLoader)
                assert len(said) == 1 and "per sample" in said[0] and "RandomRotation" in said[0], said
            else:
                with pytest.raises(DataError, match="batched_views = 'on'.*RandomRotation"):
                    build_loader(parts, 0, 1, say=said.append)
    finally:
        registry.remove_plugin("test-rotations")


def hybrid_views(views, images, index, epoch, step=0, position=None, global_batch=0):
    """The hybrid path by hand: each image cropped alone (the workers' part), then finished."""
    group = position // (global_batch // views.shared_groups) if views.group_ops else torch.zeros_like(index)
    crops = [views.crop(image, int(i), epoch, step, int(g)) for image, i, g in zip(images, index, group)]
    stacked = {kind: [torch.stack([c[kind][v] for c in crops]) for v in range(len(views_of_kind))]
               for kind, views_of_kind in crops[0].items()}  # only the kinds that have views
    return views.finish(stacked, index, epoch, step, group if views.group_ops else None)


@pytest.mark.parametrize("preset, kw", [
    (preset_simclr, {"local_views": 2, "local_size": 6}),
    (preset_simclr, {"group_views": 1, "shared_groups": 2}),
    (preset_digits, {"preset": "digits", "global_scale": (0.5, 1.0)}),
])
def test_hybrid_views_equal_the_whole_split_views_up_to_the_crops_rounding(preset, kw):
    """Same draws, same ops: the only difference is the crop rounded to uint8 in the worker (at
    most half a level), which the later ops carry on (solarize's threshold can flip a pixel)."""
    views = BatchedViews(spec(global_size=12, **kw), preset, 3, 16, 16, None, None, seed=5, global_batch=8)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    index, position = torch.arange(40, 48), torch.arange(8)
    whole = views(images, index, epoch=1, step=3, position=position, global_batch=8)
    hybrid = hybrid_views(views, images, index, epoch=1, step=3, position=position, global_batch=8)
    for kind in ("global", "local", "group"):
        assert len(hybrid.get(kind, [])) == len(whole.get(kind, []))
        for a, b in zip(whole.get(kind, []), hybrid.get(kind, [])):
            gap = (a - b).abs()
            assert a.shape == b.shape and float(gap.mean()) < 0.5 / 255 and float((gap > 2 / 255).float().mean()) < 0.01, kind


def test_hybrid_crops_take_images_of_any_size_with_the_same_draws():
    views = BatchedViews(spec(global_size=8), preset_simclr, 3, None, None, None, None, seed=0)
    small = torch.randint(0, 256, (3, 10, 14), dtype=torch.uint8)
    large = torch.randint(0, 256, (3, 40, 24), dtype=torch.uint8)
    a, b = views.crop(small, 7, epoch=0), views.crop(large, 7, epoch=0)
    assert [c.shape for c in a["global"]] == [c.shape for c in b["global"]] == [(3, 8, 8)] * 2
    assert all(c.dtype == torch.uint8 for c in a["global"])
    assert torch.equal(views.crop(small, 7, epoch=0)["global"][0], a["global"][0])  # a pure function of the key
    assert not torch.equal(views.crop(small, 8, epoch=0)["global"][0], a["global"][0])


def test_auto_takes_the_hybrid_path_for_images_of_different_sizes(tmp_path):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for i, (h, w) in enumerate([(20, 24), (32, 32), (18, 30), (26, 20)] * 4):
        folder = tmp_path / "images" / "train" / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()).save(folder / f"{i}.png")
    child = tmp_path / "folder.toml"
    child.write_text(f'extends = "{TINY}"\n[data]\nname = "image_folder"\nbatch_size = 8\nroot = "{tmp_path / "images"}"\n'
                     '[views]\nglobal_size = 16\n')
    parts = build(load_recipe(str(child), [f"train.output_dir={tmp_path / 'run'}"]))
    said = []
    batches = iter(build_loader(parts, 0, 1, say=said.append))
    batch = next(batches)
    assert len(said) == 1 and "cropped per sample" in said[0] and "different sizes" in said[0], said
    assert [v.shape for v in batch["global"]] == [(8, 3, 16, 16)] * 2 and batch["label"].shape == (8,)
    again = next(iter(build_loader(parts, 0, 1)))
    assert all(torch.equal(a, b) for a, b in zip(batch["global"], again["global"]))
    with pytest.raises(DataError, match="batched_views = 'on'.*different sizes"):
        build_loader(build(load_recipe(str(child), [f"train.output_dir={tmp_path / 'run'}", "data.batched_views=on"])), 0, 1)


@pytest.mark.parametrize("mode, notice", [("on", "views made in batches"), ("hybrid", "cropped per sample")])
def test_training_on_the_batched_path_resumes_bitwise_after_sigkill(tmp_path, mode, notice):
    common = (f"data.batched_views={mode}", "train.epochs=2", "train.checkpoint_every=1", "train.export=false")
    whole = train(tmp_path / "whole", *common)
    assert notice in whole.stdout + whole.stderr
    killed = [sys.executable, "-m", "ssl_kit", str(TINY), f"train.output_dir={tmp_path / 'killed'}", *common]
    proc = subprocess.run(killed, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SSL_KIT_TEST_KILL_AT": "save:model@3"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    train(tmp_path / "killed", *common)
    last = sorted((tmp_path / "whole" / "checkpoints").glob("step_*"), key=lambda p: int(p.name[5:]))[-1].name
    a = load_file(str(tmp_path / "whole" / "checkpoints" / last / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "checkpoints" / last / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("mode", ["on", "hybrid"])
def test_two_processes_equal_one_on_the_batched_path(tmp_path, mode):
    recipe = [ROOT / "contract" / "simclr.toml"]
    run_contract(tmp_path, recipe, processes=1, overrides=(f"data.batched_views={mode}",))
    run_contract(tmp_path, recipe, processes=2, overrides=(f"data.batched_views={mode}",))
    gap = compare_runs(tmp_path / "simclr" / "p1", tmp_path / "simclr" / "p2")
    assert gap["loss"] < 1e-5 and gap["weights"] < 1e-5, gap


def test_groups_that_do_not_divide_the_global_batch_are_refused_at_build_time():
    with pytest.raises(UserError, match="shared_groups 3 does not divide the global batch"):
        BatchedViews(spec(group_views=1, shared_groups=3), preset_simclr, 3, 16, 16, None, None, seed=0, global_batch=8)

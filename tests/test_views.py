"""The batch contract: views depend on (seed, epoch, index, view) only; group views on (seed,
epoch, step, group, view); the presets do what their docstrings (and the papers they cite) say."""

import pickle
import struct

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ssl_kit.cli import main
from ssl_kit.data import sample_ops as S
from ssl_kit.data import torchvision_sources as tvs
from ssl_kit.data.sources import FakeConfig, TensorImages, fake
from ssl_kit.data.presets import BUILTIN_PRESETS, build_transform
from ssl_kit.data.sampler import EpochBatchSampler
from ssl_kit.data.views import MultiViewDataset, SampleKey, SharedTransform, multi_view, mix_seed
from ssl_kit.errors import UserError
from ssl_kit.plugins import get_registry
from ssl_kit.spec import ViewContext, ViewSpec

GROUPS = ViewSpec(global_views=2, group_views=2, shared_groups=4, preset="care")


def build_view_dataset(data, spec, seed, global_batch=None):
    """The views of ssl_kit.build.build_views, from a dataset and a spec (presets by name)."""
    registry = get_registry()
    group = registry.get("view_presets", spec.group_preset, "[views] group_preset:").factory if spec.group_preset else None
    return multi_view(data, spec, registry.get("view_presets", spec.preset).factory, seed, group_preset=group,
                      global_batch=global_batch)


def loader(num_workers=0, seed=0, world_size=1, rank=0, start_step=0, spec=None, data=None, batch=8, epochs=2):
    data = data if data is not None else fake(FakeConfig(num_samples=24, image_size=16), "train")
    spec = spec or ViewSpec(global_views=2, local_views=1, preset="simclr")
    views = build_view_dataset(data, spec, seed, global_batch=batch)
    sampler = EpochBatchSampler(len(data), batch, seed, epochs, rank=rank, world_size=world_size, start_step=start_step)
    return torch.utils.data.DataLoader(views, batch_sampler=sampler, num_workers=num_workers)


def same_image_data(n=16, size=16):
    """``n`` copies of one image: any difference between their views comes from augmentation."""
    image = fake(FakeConfig(num_samples=1, image_size=size), "train").images[:1]
    return TensorImages(image.repeat(n, 1, 1, 1), None, mean=(0.5,) * 3, std=(0.25,) * 3)


def test_batches_have_the_contract_layout():
    batch = next(iter(loader(0)))
    assert set(batch) == {"global", "local", "index", "label"}
    assert len(batch["global"]) == 2 and batch["global"][0].shape == (8, 3, 16, 16)
    assert len(batch["local"]) == 1 and batch["local"][0].shape == (8, 3, 6, 6)
    assert not torch.equal(batch["global"][0], batch["global"][1])


def test_same_sample_gets_same_views_whatever_num_workers():
    a, b = list(loader(0)), list(loader(2))
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert torch.equal(x["index"], y["index"])
        for v, w in zip(x["global"] + x["local"], y["global"] + y["local"]):
            assert torch.equal(v, w)


def test_two_processes_see_the_halves_of_the_one_process_batch():
    whole = list(loader(0))
    halves = [list(loader(0, world_size=2, rank=r)) for r in range(2)]
    for step, batch in enumerate(whole):
        for kind in ("global", "local"):
            for v in range(len(batch[kind])):
                joined = torch.cat([halves[0][step][kind][v], halves[1][step][kind][v]])
                assert torch.equal(joined, batch[kind][v])


def test_resume_inside_an_epoch_skips_without_replaying():
    whole = list(loader(0))
    resumed = list(loader(0, start_step=4))
    assert len(resumed) == 2
    for x, y in zip(whole[4:], resumed):
        assert torch.equal(x["global"][0], y["global"][0])


def test_epochs_and_seeds_change_views_and_order():
    batches = list(loader(0))
    assert not torch.equal(batches[0]["index"], batches[3]["index"])  # epoch 1 reshuffles
    other = list(loader(0, seed=1))
    assert not torch.equal(batches[0]["global"][0], other[0]["global"][0])
    assert mix_seed(0, 0, 1, 0) != mix_seed(0, 0, 0, 1)


# --- group-shared views (CARE) -----------------------------------------------------------------
def test_group_views_are_shared_within_a_group_and_differ_between_groups():
    batch = next(iter(loader(spec=GROUPS, data=same_image_data())))
    assert batch["group_index"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len(batch["group"]) == 2 and batch["group"][0].shape == (8, 3, 16, 16)
    for view in batch["group"]:
        for i in range(8):
            for j in range(8):
                assert torch.equal(view[i], view[j]) == (i // 2 == j // 2), (i, j)
    assert not torch.equal(batch["group"][0][0], batch["group"][1][0])  # t1 and t2 are two draws
    assert not torch.equal(batch["global"][0][0], batch["global"][0][1])  # per-sample views are not shared


def coordinate_image(size, offset):
    """Red = x, green = y (both relative to the side, so images of any size agree), blue = ``offset``."""
    ramp = (torch.arange(size) + 0.5) / size
    x, y = ramp.expand(size, size), ramp[:, None].expand(size, size)
    return torch.stack([x, y, torch.full((size, size), offset)]).mul(255).round().to(torch.uint8)


def test_group_crop_boxes_match_for_different_images_and_sizes():
    crop_only = SharedTransform(
        [v2.RandomResizedCrop(8, scale=(0.1, 1.0), interpolation=v2.InterpolationMode.BILINEAR), v2.RandomHorizontalFlip()],
        None, None, canvas=16,
    )
    items = [{"image": coordinate_image(16 if i % 2 == 0 else 32, i / 10)} for i in range(8)]
    views = MultiViewDataset(items, [], [], 0, [crop_only], shared_groups=2)
    out = [views[SampleKey(0, i, 3, i, global_batch=8)]["group"][0] for i in range(8)]
    assert all(not torch.equal(out[i][2], out[i + 1][2]) for i in range(7))  # different images
    for i in range(1, 8):
        gap = (out[i][:2] - out[0][:2]).abs().max()
        assert (gap < 0.03) if i < 4 else (gap > 0.1), (i, gap)  # same box within the group only
    assert torch.equal(out[0][:2], out[2][:2])  # same size, same box: equal coordinates exactly


def test_ops_after_an_unshared_crop_still_share_their_draws():
    # A crop inside a Compose is not made relative: it draws as often as the image's shape needs (a
    # 4 x 64 strip fails most attempts). The jitter after it still gets the same draws.
    ops = [v2.Compose([v2.RandomResizedCrop(8, scale=(0.5, 1.0))]), v2.ColorJitter(0.8, 0.8, 0.8, 0.2)]
    shared = SharedTransform(ops, None, None, canvas=64)
    colour = torch.tensor([200, 50, 100], dtype=torch.uint8)[:, None, None]
    with torch.random.fork_rng(devices=[]):
        square, strip = (shared(colour.expand(3, h, 64).contiguous(), 7) for h in (64, 4))
        other = shared(colour.expand(3, 64, 64).contiguous(), 8)
    assert torch.allclose(square, strip, atol=1e-5) and not torch.allclose(square, other, atol=0.01)


def test_group_views_get_fresh_draws_every_step():
    spec = ViewSpec(group_views=1, shared_groups=1, preset="care")
    batches = list(loader(spec=spec, data=same_image_data()))
    assert len(batches) == 4
    firsts = [b["group"][0][0] for b in batches]
    assert all(torch.equal(b["group"][0][0], b["group"][0][7]) for b in batches)
    assert all(not torch.equal(firsts[i], firsts[j]) for i in range(4) for j in range(i))


@pytest.mark.parametrize("shared_groups", [1, 3, 6])  # groups of 12 (spanning both processes), 4 (some span), 2
def test_group_views_equal_across_processes(shared_groups):
    spec = ViewSpec(group_views=2, shared_groups=shared_groups, preset="care")
    whole = list(loader(spec=spec, batch=12, epochs=1))
    halves = [list(loader(spec=spec, batch=12, epochs=1, world_size=2, rank=r)) for r in range(2)]
    for step, batch in enumerate(whole):
        parts = [halves[r][step] for r in range(2)]
        assert torch.equal(torch.cat([p["group_index"] for p in parts]), batch["group_index"])
        assert batch["group_index"].tolist() == [i * shared_groups // 12 for i in range(12)]
        for v in range(2):
            assert torch.equal(torch.cat([p["group"][v] for p in parts]), batch["group"][v])


def test_group_views_equal_across_num_workers():
    a, b = list(loader(0, spec=GROUPS)), list(loader(2, spec=GROUPS))
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        for v, w in zip(x["group"] + x["global"], y["group"] + y["global"]):
            assert torch.equal(v, w)


def test_group_preset_overrides_the_preset_of_group_views():
    data = fake(FakeConfig(num_samples=8, image_size=16), "train")
    spec = ViewSpec(global_views=1, group_views=1, shared_groups=2, preset="simclr", group_preset="none")
    batch = next(iter(loader(spec=spec, data=data, batch=4, epochs=1)))
    plain = (data.images[batch["index"]].float() / 255 - 0.5) / 0.25  # resize to 16 px = identity
    assert torch.allclose(batch["group"][0], plain, atol=1e-5)
    assert not torch.allclose(batch["global"][0], plain, atol=0.1)
    with pytest.raises(UserError, match=r"\[views\] group_preset: unknown view preset 'carre'. Did you mean 'care'"):
        loader(spec=ViewSpec(group_views=1, group_preset="carre"))


def test_shared_groups_must_divide_the_global_batch(tmp_path, capsys):
    with pytest.raises(UserError) as err:
        loader(spec=ViewSpec(group_views=2, shared_groups=3), batch=8)
    assert "[views] shared_groups 3" in str(err.value) and "batch_size 8" in str(err.value)
    assert "\n" not in str(err.value)
    untold = build_view_dataset(fake(FakeConfig(num_samples=8), "train"), ViewSpec(group_views=1, shared_groups=3), 0)
    assert untold[SampleKey(0, 0, 0, 0, global_batch=9)]["group_index"] == 0  # told by the key instead
    with pytest.raises(UserError, match=r"\[views\] shared_groups 3 does not divide the global batch \(\[data\] batch_size 8"):
        untold[SampleKey(0, 0, 0, 0, global_batch=8)]
    code = main(["quickstart", "views.group_views=2", "views.shared_groups=3", f"train.output_dir={tmp_path}"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and "[views] shared_groups 3" in lines[0] and "batch_size 128" in lines[0]


# --- presets (solo-learn's presets and the papers' augmentations) ------------------------------
def ops_of(preset, kind="global", view=0, size=32, channels=3):
    """The preset's ops, with those inside RandomApply flattened in: [(op, RandomApply p or None)]."""
    flat = []
    for op in BUILTIN_PRESETS[preset](ViewContext(kind, view, size, (0.08, 1.0), channels)):
        inner = getattr(op, "transforms", None) if isinstance(op, v2.RandomApply) else None
        flat += [(t, op.p) for t in inner] if inner else [(op, None)]
    return flat


def test_k_global_views_and_multi_crop_local_sizes():
    data = fake(FakeConfig(num_samples=8, image_size=28), "train")
    spec = ViewSpec(global_views=3, local_views=2, preset="simclr")
    batch = next(iter(loader(spec=spec, data=data, batch=4)))
    assert [v.shape for v in batch["global"]] == [(4, 3, 28, 28)] * 3
    assert [v.shape for v in batch["local"]] == [(4, 3, 12, 12)] * 2  # 3/7 of the global size
    sized = ViewSpec(global_views=1, global_size=21, local_views=1, local_size=5, preset="simclr")
    batch = next(iter(loader(spec=sized, data=data, batch=4)))
    assert batch["global"][0].shape == (4, 3, 21, 21) and batch["local"][0].shape == (4, 3, 5, 5)
    assert not torch.equal(batch["global"][0][0], batch["global"][0][1])


@pytest.mark.parametrize("preset,p", [("simclr", 0.5), ("mocov2", 0.5), ("relic", 1.0)])
def test_blur_kernel_scales_with_image_size(preset, p):
    for size, kernel in ((32, 3), (96, 9), (224, 23)):
        blurs = [(op, q) for op, q in ops_of(preset, size=size) if isinstance(op, v2.GaussianBlur)]
        assert [(tuple(op.kernel_size), q) for op, q in blurs] == [((kernel, kernel), p)]


def test_care_blurs_with_a_fixed_3px_kernel_and_byol_never_blurs():
    for size in (32, 224):
        assert [tuple(op.kernel_size) for op, _ in ops_of("care", size=size) if isinstance(op, v2.GaussianBlur)] == [(3, 3)]
        for preset in ("byol", "decoupled_uniformity", "qare"):
            assert not any(isinstance(op, v2.GaussianBlur) for op, _ in ops_of(preset, size=size))


def test_simclr_cifar_is_simclrs_list_at_colour_strength_half_without_blur():
    """SimCLR's CIFAR-10 views: colour distortion strength 0.5 (0.8 s, 0.8 s, 0.8 s, 0.2 s), no blur."""
    def jitter(preset):
        return [(op.brightness, op.contrast, op.saturation, op.hue, q) for op, q in ops_of(preset)
                if isinstance(op, v2.ColorJitter)]
    assert jitter("simclr_cifar") == [((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1), 0.8)]
    assert not any(isinstance(op, v2.GaussianBlur) for op, _ in ops_of("simclr_cifar"))
    strong = [type(op) for op, _ in ops_of("simclr") if not isinstance(op, v2.GaussianBlur)]
    assert [type(op) for op, _ in ops_of("simclr_cifar")] == strong


def test_byol_solarizes_only_the_second_global_view():
    def solarize(kind, view):
        return [(op.threshold, op.p) for op, _ in ops_of("byol", kind, view) if isinstance(op, v2.RandomSolarize)]

    assert solarize("global", 0) == [] and solarize("global", 1) == [(0.5, 0.2)]
    assert solarize("local", 0) == solarize("local", 1) == []
    jitter = [op for op, _ in ops_of("byol") if isinstance(op, v2.ColorJitter)]
    assert [(*j.brightness, *j.contrast, *j.saturation, *j.hue) for j in jitter] == [
        pytest.approx((0.6, 1.4, 0.6, 1.4, 0.8, 1.2, -0.1, 0.1))
    ]


def test_relic_feeds_unnormalised_pixels():
    relic = pytest.importorskip("ssl_kit_relic.method")
    spec = relic.ReLIC.views
    assert spec.normalize is False and spec.preset == "relic"
    data = fake(FakeConfig(num_samples=8, image_size=16), "train")
    raw = next(iter(loader(spec=spec, data=data, batch=4)))
    assert all(v.min() >= 0 and v.max() <= 1 for v in raw["global"] + raw["local"])
    normalised = next(iter(loader(spec=ViewSpec(preset="relic"), data=data, batch=4)))
    assert min(float(v.min()) for v in normalised["global"]) < -0.5  # (x - 0.5) / 0.25 goes below 0


def test_views_normalise_with_the_dataset_statistics():
    assert (tvs.CIFAR10_MEAN, tvs.CIFAR10_STD) == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    assert (tvs.CIFAR100_MEAN, tvs.CIFAR100_STD) == ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
    assert (tvs.STL10_MEAN, tvs.STL10_STD) == ((0.4406, 0.4273, 0.3858), (0.2312, 0.2265, 0.2237))
    mean, std = tvs.CIFAR10_MEAN, tvs.CIFAR10_STD
    flat = torch.tensor(mean).mul(255).round().to(torch.uint8)[None, :, None, None].expand(4, 3, 8, 8)
    data = TensorImages(flat.contiguous(), None, mean=mean, std=std)
    spec = ViewSpec(global_views=1, group_views=1, shared_groups=1, preset="none")
    batch = next(iter(loader(spec=spec, data=data, batch=4, epochs=1)))
    for view in (batch["global"][0], batch["group"][0]):  # a mean-coloured image becomes about 0
        assert view.abs().max() < 0.01
    raw = next(iter(loader(spec=ViewSpec(global_views=1, preset="none", normalize=False), data=data, batch=4)))
    assert torch.allclose(raw["global"][0][0, :, 0, 0], torch.tensor(mean), atol=0.003)


@pytest.mark.parametrize("preset", ["simclr", "simclr_cifar", "mocov2", "byol", "relic", "care", "decoupled_uniformity"])
def test_bicubic_crops_of_sharp_edges_stay_in_range_and_never_give_nan(preset):
    # Black and white stripes one pixel wide: bicubic upsampling overshoots below 0 and above 1,
    # and colour jitter's hue step turned such pixels into NaN before the crop was clamped.
    stripes = torch.zeros(16, 3, 32, 32, dtype=torch.uint8)
    stripes[:, :, :, ::2] = 255
    stripes[:, 0] = 0  # a zero red channel beside 255 green/blue: the hue step divides by max - min
    data = TensorImages(stripes, None, mean=(0.5,) * 3, std=(0.25,) * 3)
    spec = ViewSpec(global_views=2, local_views=2, local_size=13, local_scale=(0.05, 0.2), preset=preset,
                    normalize=False)
    for batch in loader(spec=spec, data=data, batch=16, epochs=1):
        for view in batch["global"] + batch["local"]:
            # (blur weights sum to 1 up to rounding: a few ulps above 1 are not an overshoot)
            assert torch.isfinite(view).all() and view.min() >= 0 and view.max() <= 1 + 1e-6


# --- the fused per-sample executor (build_transform): torchvision's draws and results ------------
def plain(transform):
    """The same transforms run by torchvision's own Compose (what build_transform returned before
    it fused them)."""
    return v2.Compose(list(transform.transforms))


def sample_images(channels, size=32, n=4):
    """Random pixels, a flat image, and one-pixel black/white stripes (bicubic overshoot, hue ties)."""
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    images[1] = 128
    images[2] = 0
    images[2, :, :, ::2] = 255
    images[2, 0] = 0
    return images


def same_draws_and_views(fused, reference, images, seeds, atol):
    """Per image and seed: the generator ends in the same state (the same draws, as many) and the
    views agree to ``atol``."""
    generator = torch.default_generator
    with torch.random.fork_rng(devices=[]):
        for i, image in enumerate(images):
            for seed in seeds:
                generator.manual_seed(mix_seed(seed, i))
                ours = fused(image)
                after = generator.get_state()
                generator.manual_seed(mix_seed(seed, i))
                theirs = reference(image)
                assert torch.equal(generator.get_state(), after), (seed, i)
                assert type(ours) is torch.Tensor and ours.shape == theirs.shape
                torch.testing.assert_close(ours, theirs.as_subclass(torch.Tensor), atol=atol, rtol=0, equal_nan=True)


@pytest.mark.parametrize("preset", get_registry().names("view_presets"))
@pytest.mark.parametrize("channels", [3, 1])
def test_fused_views_equal_torchvision_with_the_same_draws(preset, channels):
    """Every registered preset: the fused path draws exactly what torchvision draws (so the
    parameter distributions are torchvision's) and makes the same views to 1e-5."""
    factory = get_registry().get("view_presets", preset).factory
    images = sample_images(channels)
    for kind, view, size, scale in (("global", 0, 32, (0.08, 1.0)), ("global", 1, 24, (0.2, 1.0)),
                                    ("local", 0, 13, (0.05, 0.4)), ("group", 0, 32, (0.2, 1.0))):
        ops = factory(ViewContext(kind, view, size, scale, channels))
        for mean, std in ((None, None), ((0.5,) * channels, (0.25,) * channels)):
            fused = build_transform(ops, mean, std)
            same_draws_and_views(fused, plain(fused), images, range(6), atol=1e-5 / (std or (1,))[0])


def test_fused_views_of_pil_images_and_pickled_transforms():
    fused = build_transform(BUILTIN_PRESETS["simclr"](ViewContext("global", 0, 16, (0.08, 1.0), 3)), (0.5,) * 3, (0.25,) * 3)
    pil = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in sample_images(3, size=20)]
    same_draws_and_views(fused, plain(fused), pil, range(8), atol=4e-5)
    copy = pickle.loads(pickle.dumps(fused))  # DataLoader workers under spawn/forkserver
    same_draws_and_views(copy, fused, sample_images(3), range(4), atol=0)


def test_group_views_take_the_unfused_ops_draws_and_views():
    ops = BUILTIN_PRESETS["care"](ViewContext("group", 0, 16, (0.2, 1.0), 3))
    shared = SharedTransform(ops, (0.5,) * 3, (0.25,) * 3, canvas=32)
    steps = list(shared.transform.transforms)  # what SharedTransform ran before the fused steps
    generator = torch.default_generator
    with torch.random.fork_rng(devices=[]):
        for image in sample_images(3):
            for seed in range(8):
                ours = shared(image, seed)
                theirs = image
                for k, step in enumerate(steps):
                    generator.manual_seed(mix_seed(seed, k))
                    theirs = step(theirs)
                assert (ours - theirs).abs().max() < 4e-5, seed


class InputType(nn.Module):
    """A third-party op: records what it is given."""

    seen: list = []

    def forward(self, image):
        InputType.seen.append(type(image))
        return image * 0.5


def test_ops_the_executor_does_not_know_run_as_themselves():
    ops = [InputType(), v2.RandomRotation(20), v2.RandomApply([v2.RandomInvert(p=1.0)], p=0.5),
           v2.RandomResizedCrop(12, scale=(0.3, 1.0), interpolation=v2.InterpolationMode.NEAREST),
           v2.RandomResizedCrop(10, antialias=False), v2.ColorJitter(hue=0.3)]
    fused = build_transform(ops, None, None)
    InputType.seen.clear()
    same_draws_and_views(fused, plain(fused), sample_images(3), range(6), atol=1e-5)
    assert set(InputType.seen) == {tv_tensors.Image}  # as torchvision's Compose gives it
    fused.transforms.append(v2.RandomVerticalFlip(p=1.0))  # a changed list is compiled again
    same_draws_and_views(fused, plain(fused), sample_images(3), range(2), atol=1e-5)


def test_hue_outside_the_unit_range_falls_back_to_torchvision():
    # Bicubic overshoot without ClampUnit: pixels below 0 and above 1, where torchvision's HSV round
    # trip clamps (or gives NaN); the fused jitter hands those images to torchvision's kernel.
    ops = [v2.RandomResizedCrop(24, scale=(0.05, 0.3), interpolation=v2.InterpolationMode.BICUBIC),
           v2.ColorJitter(hue=0.4)]
    fused = build_transform(ops, None, None)
    images = sample_images(3)
    assert not S.in_unit_range(TF.resize(images[2].float() / 255, [96, 96], interpolation=v2.InterpolationMode.BICUBIC))
    same_draws_and_views(fused, plain(fused), images, range(16), atol=1e-5)


def test_p_tests_compare_in_float32_as_torchvision(monkeypatch):
    # torch.rand(1) >= p compares in float32: a draw equal to float32(0.7) (below 0.7) skips.
    edge = struct.unpack("f", struct.pack("f", 0.7))[0]
    monkeypatch.setattr(torch, "rand", lambda *size, **kw: torch.full(size, edge))
    image = sample_images(3)[0]
    fused = build_transform([v2.RandomHorizontalFlip(p=0.7)], None, None)
    unflipped = TF.to_dtype_image(image, torch.float32, scale=True)
    assert torch.equal(fused(image), plain(fused)(image)) and torch.equal(fused(image), unflipped)


# the kernels against torchvision's functional ops at fixed parameters
@pytest.fixture(scope="module")
def unit_images():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x[1, :, :8] = 0.5  # grey pixels
    x[1, 1, 8:16] = x[1, 0, 8:16]  # ties between the largest channels
    x[2] = x[2].round()  # only 0 and 1
    return x


def test_hue_equals_torchvision(unit_images):
    for factor in torch.linspace(-0.5, 0.5, 21).tolist():
        for x in unit_images:
            assert (S.hue(x, factor) - TF.adjust_hue_image(x, factor)).abs().max() < 1e-5, factor
    assert torch.equal(S.hue(unit_images[0, :1], 0.3), unit_images[0, :1])


@pytest.mark.parametrize("kernel", [(3, 3), (5, 5), (9, 9), (3, 7), (23, 23)])
def test_blur_equals_torchvision(unit_images, kernel):
    for sigma in (0.1, 0.7, 2.0):
        ours = S.gaussian_blur(unit_images[0], kernel, (sigma, sigma))
        assert (ours - TF.gaussian_blur_image(unit_images[0], list(kernel), [sigma, sigma])).abs().max() < 1e-5
    impulse = torch.zeros(1, 1, 11)
    impulse[..., 5] = 1.0  # its blur is the kernel
    weights = TF.gaussian_blur_image(impulse, [5, 1], [1.3, 1.3])[0, 0, 3:8]
    assert torch.allclose(torch.tensor(S.gaussian_kernel(5, 1.3), dtype=torch.float32), weights, atol=1e-7)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("antialias", [True, False])
def test_resized_crop_and_colour_ops_make_torchvision_s_bits(unit_images, mode, antialias):
    x = unit_images[0]
    for top, left, h, w, size in ((0, 0, 32, 32, 32), (3, 1, 10, 12, 32), (5, 7, 20, 25, 13), (0, 4, 28, 28, 48)):
        ours = S.resized_crop(x, top, left, h, w, (size, size), mode, antialias)
        theirs = TF.resized_crop_image(x, top, left, h, w, [size, size], interpolation=v2.InterpolationMode(mode),
                                       antialias=antialias)
        assert torch.equal(ours, theirs)
    for factor in (0.0, 0.3, 1.0, 1.8):
        assert torch.equal(S.brightness(x, factor), TF.adjust_brightness_image(x, factor))
        assert torch.equal(S.contrast(x, factor), TF.adjust_contrast_image(x, factor))
        assert torch.equal(S.saturation(x, factor), TF.adjust_saturation_image(x, factor))
        assert torch.equal(S.contrast(x[:1], factor), TF.adjust_contrast_image(x[:1], factor))
    assert torch.equal(S.grayscale(x).expand_as(x), TF.rgb_to_grayscale_image(x, 3))
    assert torch.equal(S.solarize(x, 0.5), TF.solarize_image(x, 0.5))

"""Views: the batch contract between data and methods.

A method declares a :class:`ViewSpec` (how many global and local views, their sizes and crop
scales, the augmentation preset). The trainer turns dataset items into views and hands the method
one dict per step::

    {"global": [Tensor(B, C, H, W), ...],   # global_views tensors
     "local":  [Tensor(B, C, h, w), ...],   # local_views tensors (multi-crop), maybe empty
     "index":  LongTensor(B),               # dataset indices
     "label":  LongTensor(B),               # only when the dataset is labelled
     "prior":  Tensor(B, P),                # only when the dataset provides one
     "group":  [Tensor(B, C, H, W), ...],   # only when group_views > 0 (group-shared augmentation)
     "group_index": LongTensor(B)}          # only when group_views > 0: each row's group

Randomness of every view derives from ``(seed, epoch, index, view)`` alone, never from a worker's
global RNG, so a resumed run, a different ``num_workers`` and 1 vs 2 processes see identical views
for the same sample. Where views are built (DataLoader workers today) is an implementation detail.

Group views (CARE's group-augmented copies, METHODS.md section 3): the GLOBAL batch is cut into
``shared_groups`` contiguous groups by position; every image of a group gets the same augmentation
parameters for a group view, drawn afresh per group, step and view from
``(seed, epoch, step, group, view)``. As that depends on global positions only, a group may span
processes (its parts on each process get the same parameters); ``group_index`` tells a method that
computes a per-group loss on one process where its groups start and end. The crop of a group view
is drawn in coordinates relative to the image (see :class:`SharedResizedCrop`), so images of
different sizes in one group get the same relative box.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import nn
from torchvision import transforms as transforms_v1
from torchvision.transforms import v2

from ssl_kit.config import knob
from ssl_kit.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class ViewSpec:
    """The views a method needs; a recipe's ``[views]`` table overrides any field."""

    global_views: int = knob(2, "number of global views per image", min=1)
    global_size: int | None = knob(None, "global crop size in px (default: the dataset's image size)", min=1)
    global_scale: tuple[float, float] = knob((0.08, 1.0), "RandomResizedCrop area range of global views", gt=0, max=1)
    local_views: int = knob(0, "number of local (multi-crop) views per image", min=0)
    local_size: int | None = knob(None, "local crop size in px (default: 3/7 of global_size)", min=1)
    local_scale: tuple[float, float] = knob((0.05, 0.4), "RandomResizedCrop area range of local views", gt=0, max=1)
    preset: str = knob("simclr", "augmentation preset (python -m ssl_kit plugins lists them)")
    normalize: bool = knob(True, "normalise with the dataset's mean and std after augmentation")
    group_views: int = knob(
        0,
        "extra copies of every image whose augmentation parameters are shared within a group "
        "(batch['group'], at the global size; CARE uses 2: t1 and t2)",
        min=0,
    )
    shared_groups: int = knob(
        1,
        "number of groups the GLOBAL batch ([data] batch_size, which it must divide) is cut into, contiguous "
        "by position; every image of a group gets the same group-view augmentation, drawn afresh per group and step",
        min=1,
    )
    group_preset: str = knob("", "augmentation preset of the group views ('' = the same as preset)")

    def __post_init__(self) -> None:
        for name in ("global_scale", "local_scale"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"key '{name}' must be [low, high] with low <= high, got {[low, high]}")


@dataclasses.dataclass(frozen=True)
class ViewContext:
    """What a preset factory is told about the view it builds."""

    kind: str  # "global", "local" or "group" (group-shared views, at the global size)
    view: int  # view number within its kind, from 0
    size: int  # output size in px
    scale: tuple[float, float]  # crop area range
    channels: int  # image channels (1 or 3)


def _color_ops(ctx: ViewContext, jitter: tuple[float, float, float, float]) -> list[nn.Module]:
    if ctx.channels != 3:
        return []  # colour jitter and grayscale are meaningless on one channel
    return [v2.RandomApply([v2.ColorJitter(*jitter)], p=0.8), v2.RandomGrayscale(p=0.2)]


def _blur(size: int, p: float) -> nn.Module:
    kernel = max(3, int(0.1 * size) // 2 * 2 + 1)  # odd, about 10% of the image side
    return v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=p)


class ClampUnit(nn.Module):
    """Clamp float pixels to [0, 1]. Bicubic resampling overshoots at sharp edges (PIL clips its
    uint8 result; float tensors keep values below 0 and above 1), and colour jitter's hue and
    saturation steps divide by the largest channel: a pixel whose largest channel is 0 while
    another is negative becomes NaN."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.clamp(0.0, 1.0)


def _crop(ctx: ViewContext, flip: bool = True) -> list[nn.Module]:
    ops: list[nn.Module] = [
        v2.RandomResizedCrop(ctx.size, scale=ctx.scale, interpolation=v2.InterpolationMode.BICUBIC),
        ClampUnit(),
    ]
    return ops + [v2.RandomHorizontalFlip()] if flip else ops


def preset_simclr(ctx: ViewContext) -> list[nn.Module]:
    """solo-learn's symmetric SimCLR augmentation (METHODS.md section 0)."""
    return _crop(ctx) + _color_ops(ctx, (0.8, 0.8, 0.8, 0.2)) + [_blur(ctx.size, 0.5)]


def preset_mocov2(ctx: ViewContext) -> list[nn.Module]:
    """solo-learn's symmetric_weak preset (MoCo): weaker colour jitter."""
    return _crop(ctx) + _color_ops(ctx, (0.4, 0.4, 0.4, 0.1)) + [_blur(ctx.size, 0.5)]


def preset_byol(ctx: ViewContext) -> list[nn.Module]:
    """BYOL's asymmetric preset: no blur, solarize (p 0.2) on the second global view only."""
    ops = _crop(ctx) + _color_ops(ctx, (0.4, 0.4, 0.2, 0.1))
    if ctx.kind == "global" and ctx.view % 2 == 1:
        ops.append(v2.RandomSolarize(threshold=0.5, p=0.2))
    return ops


def preset_relic(ctx: ViewContext) -> list[nn.Module]:
    """ReLIC (METHODS.md section 1): strong jitter, Gaussian blur always, solarize (p 0.2, threshold
    127/255) on global views only. ReLIC trains without mean/std normalisation (its method sets
    ``normalize = false``); its recipes set the crop scales (global 0.1-1, local 0.05-1)."""
    ops = _crop(ctx) + _color_ops(ctx, (0.8, 0.8, 0.8, 0.2)) + [_blur(ctx.size, 1.0)]
    if ctx.kind == "global":
        ops.append(v2.RandomSolarize(threshold=127 / 255, p=0.2))
    return ops


def preset_decoupled_uniformity(ctx: ViewContext) -> list[nn.Module]:
    """Decoupled Uniformity (METHODS.md section 5): SimCLR's jitter, no blur, no solarize."""
    return _crop(ctx) + _color_ops(ctx, (0.8, 0.8, 0.8, 0.2))


def preset_qare(ctx: ViewContext) -> list[nn.Module]:
    """QARe / SparseCLR (METHODS.md section 4): the same list as Decoupled Uniformity's."""
    return preset_decoupled_uniformity(ctx)


def preset_care(ctx: ViewContext) -> list[nn.Module]:
    """CARE (METHODS.md section 3), for its InfoNCE views and its group-augmented copies alike:
    weak jitter, blur with a fixed 3 px kernel at p 0.5."""
    blur = v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 2.0))], p=0.5)
    return _crop(ctx) + _color_ops(ctx, (0.4, 0.4, 0.4, 0.1)) + [blur]


def preset_digits(ctx: ViewContext) -> list[nn.Module]:
    """Small digit images: resize, mild crops and affine jitter; never flipped (a flipped 2 is
    not a 2)."""
    return [
        v2.Resize(ctx.size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.RandomResizedCrop(ctx.size, scale=ctx.scale, ratio=(0.8, 1.25), antialias=True),
        v2.RandomAffine(degrees=10, translate=(0.1, 0.1), shear=10),
    ]


def preset_none(ctx: ViewContext) -> list[nn.Module]:
    """No augmentation: resize only (also what evaluation uses)."""
    return [v2.Resize((ctx.size, ctx.size), antialias=True)]


BUILTIN_PRESETS: dict[str, Callable[[ViewContext], list[nn.Module]]] = {
    "simclr": preset_simclr,
    "mocov2": preset_mocov2,
    "byol": preset_byol,
    "relic": preset_relic,
    "decoupled_uniformity": preset_decoupled_uniformity,
    "qare": preset_qare,
    "care": preset_care,
    "digits": preset_digits,
    "none": preset_none,
}


def build_transform(
    ops: list[nn.Module], mean: tuple[float, ...] | None, std: tuple[float, ...] | None
) -> v2.Compose:
    """uint8/PIL image -> float tensor in [0, 1] -> ops -> optional normalisation."""
    head: list[nn.Module] = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    tail: list[nn.Module] = [v2.Normalize(mean, std)] if mean is not None and std is not None else []
    return v2.Compose(head + ops + tail)


class SharedResizedCrop(nn.Module):
    """``crop`` (a ``v2.RandomResizedCrop``) with its box drawn on a ``canvas`` x ``canvas`` square
    and scaled to each image, so that one seed gives every image the same relative box (and the
    same number of random draws, whatever the image's size). For an image of the canvas size the
    box is the one ``crop`` itself would draw."""

    def __init__(self, crop: v2.RandomResizedCrop, canvas: int) -> None:
        super().__init__()
        self.crop, self.canvas = crop, canvas

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        c = self.crop
        canvas = torch.empty(1, 1, 1).expand(1, self.canvas, self.canvas)
        top, left, h, w = transforms_v1.RandomResizedCrop.get_params(canvas, list(c.scale), list(c.ratio))
        height, width = v2.functional.get_size(image)
        sy, sx = height / self.canvas, width / self.canvas
        h, w = min(height, max(1, round(h * sy))), min(width, max(1, round(w * sx)))
        top, left = min(round(top * sy), height - h), min(round(left * sx), width - w)
        return v2.functional.resized_crop(
            image, top, left, h, w, size=list(c.size), interpolation=c.interpolation, antialias=c.antialias
        )


class SharedTransform:
    """A group view's transform: ``build_transform(ops, mean, std)`` whose random draws depend on the
    ``seed`` passed with each image alone. Every op draws from the CPU generator seeded with
    ``(seed, op number)``, and ``RandomResizedCrop`` ops become :class:`SharedResizedCrop` on a
    ``canvas`` square, so the same seed means the same parameters for every image."""

    def __init__(
        self, ops: list[nn.Module], mean: tuple[float, ...] | None, std: tuple[float, ...] | None, canvas: int
    ) -> None:
        ops = [SharedResizedCrop(op, canvas) if isinstance(op, v2.RandomResizedCrop) else op for op in ops]
        self.steps = build_transform(ops, mean, std).transforms

    def __call__(self, image: Any, seed: int) -> torch.Tensor:
        generator = torch.default_generator  # the caller saves and restores its state
        for k, step in enumerate(self.steps):
            generator.manual_seed(mix_seed(seed, k))
            image = step(image)
        return image


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 mixing): nearby inputs give unrelated seeds."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class SampleKey(NamedTuple):
    """What the batch sampler hands a dataset worker: enough to seed every view."""

    epoch: int
    index: int
    step: int  # global batch number since the start of training
    position: int  # row within the global batch
    global_batch: int = 0  # rows of the global batch (0: not told; group views need it)


class MultiViewDataset(torch.utils.data.Dataset):
    """Wraps a dataset of dict items and returns the views of the batch contract."""

    def __init__(
        self,
        dataset: Any,
        global_transforms: list[Callable],
        local_transforms: list[Callable],
        seed: int,
        group_transforms: list[SharedTransform] | None = None,
        shared_groups: int = 1,
        global_batch: int | None = None,
    ) -> None:
        """``group_transforms`` (one per group view) cut the global batch that each
        :class:`SampleKey` names (``global_batch`` rows) into ``shared_groups`` groups; a
        ``global_batch`` given here is checked at once."""
        self.dataset = dataset
        self.global_transforms = global_transforms
        self.local_transforms = local_transforms
        self.seed = seed
        self.group_transforms = list(group_transforms or [])
        self.shared_groups = shared_groups
        if self.group_transforms and global_batch is not None:
            self.group_size(global_batch)

    def group_size(self, global_batch: int) -> int:
        """Images per group of a global batch of ``global_batch`` rows."""
        if global_batch < 1:
            raise ValueError("group views need SampleKey.global_batch (the rows of the global batch)")
        if global_batch % self.shared_groups:
            raise UserError(
                f"[views] shared_groups {self.shared_groups} does not divide the global batch ([data] batch_size "
                f"{global_batch}): every group needs as many images; use a divisor of {global_batch}"
            )
        return global_batch // self.shared_groups

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        item = self.dataset[key.index]
        image = item["image"]
        out: dict[str, Any] = {"index": key.index}
        # torchvision draws from the global CPU generator: seed it per view and restore it after
        # (generator.manual_seed is ~100x cheaper than torch.manual_seed, which seeds every device).
        generator = torch.default_generator
        saved = generator.get_state()
        try:
            for kind, transforms in (("global", self.global_transforms), ("local", self.local_transforms)):
                views = []
                for v, transform in enumerate(transforms):
                    view_id = v if kind == "global" else 1000 + v
                    generator.manual_seed(mix_seed(self.seed, key.epoch, key.index, view_id))
                    views.append(transform(image))
                out[kind] = views
            if self.group_transforms:
                group = key.position // self.group_size(key.global_batch)
                out["group"] = [
                    transform(image, mix_seed(self.seed, key.epoch, key.step, group, 2000 + v))
                    for v, transform in enumerate(self.group_transforms)
                ]
                out["group_index"] = group
        finally:
            generator.set_state(saved)
        for extra in ("label", "prior"):
            if extra in item:
                out[extra] = item[extra]
        return out


class EpochBatchSampler(torch.utils.data.Sampler):
    """Yields this process's share of every global batch, epoch after epoch.

    Epoch ``e`` visits ``randperm(n)`` drawn from ``(seed, e)``; each global batch of
    ``global_batch`` rows is cut into ``world_size`` contiguous slices and process ``rank`` gets
    slice ``rank``, so the gathered batch of N processes equals the batch of one process. The last
    incomplete global batch of an epoch is dropped. ``start_step`` resumes inside an epoch without
    replaying the batches before it.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        seed: int,
        epochs: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by {world_size} processes")
        self.n, self.global_batch, self.seed, self.epochs = num_samples, global_batch, seed, epochs
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self.steps_per_epoch = num_samples // global_batch

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch * self.epochs - self.start_step)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        local = self.global_batch // self.world_size
        first_epoch = self.start_step // max(1, self.steps_per_epoch)
        for epoch in range(first_epoch, self.epochs):
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0x5A3))
            order = torch.randperm(self.n, generator=g).tolist()
            for b in range(self.steps_per_epoch):
                step = epoch * self.steps_per_epoch + b
                if step < self.start_step:
                    continue
                lo = b * self.global_batch + self.rank * local
                yield [
                    SampleKey(epoch, order[lo + i], step, self.rank * local + i, self.global_batch)
                    for i in range(local)
                ]

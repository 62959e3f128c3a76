"""Augmentation presets: ``factory(ViewContext) -> list of torchvision v2 transforms``.

The papers' augmentations (each docstring names its source), registered by name through
``register_view_presets``;
:func:`build_transform` wraps a preset's list into the full per-image transform.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.transforms import v2

from ssl_kit.spec import DatasetInfo, ViewContext, ViewSpec


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
        """``image`` clamped to [0, 1]."""
        return image.clamp(0.0, 1.0)


def _crop(ctx: ViewContext, flip: bool = True) -> list[nn.Module]:
    ops: list[nn.Module] = [
        v2.RandomResizedCrop(ctx.size, scale=ctx.scale, interpolation=v2.InterpolationMode.BICUBIC),
        ClampUnit(),
    ]
    return ops + [v2.RandomHorizontalFlip()] if flip else ops


def preset_simclr(ctx: ViewContext) -> list[nn.Module]:
    """SimCLR's augmentation as solo-learn's ``symmetric`` CIFAR preset: crop (scale 0.08-1, bicubic),
    flip, colour jitter (0.8, 0.8, 0.8, 0.2) at p 0.8, grayscale p 0.2, Gaussian blur p 0.5."""
    return _crop(ctx) + _color_ops(ctx, (0.8, 0.8, 0.8, 0.2)) + [_blur(ctx.size, 0.5)]


def preset_mocov2(ctx: ViewContext) -> list[nn.Module]:
    """MoCo v2's augmentation as solo-learn's ``symmetric_weak`` preset: SimCLR's with weaker colour
    jitter (0.4, 0.4, 0.4, 0.1)."""
    return _crop(ctx) + _color_ops(ctx, (0.4, 0.4, 0.4, 0.1)) + [_blur(ctx.size, 0.5)]


def preset_byol(ctx: ViewContext) -> list[nn.Module]:
    """BYOL's augmentation as solo-learn's ``asymmetric`` CIFAR preset: jitter (0.4, 0.4, 0.2, 0.1), no
    blur, solarize (p 0.2) on the second global view only."""
    ops = _crop(ctx) + _color_ops(ctx, (0.4, 0.4, 0.2, 0.1))
    if ctx.kind == "global" and ctx.view % 2 == 1:
        ops.append(v2.RandomSolarize(threshold=0.5, p=0.2))
    return ops


def preset_relic(ctx: ViewContext) -> list[nn.Module]:
    """ReLIC (Mitrovic et al., ICLR 2021; as its reference code, relic-pytorch 0.4.1): strong jitter,
    Gaussian blur always, solarize (p 0.2, threshold 127/255) on global views only. ReLIC trains without mean/std normalisation (its method sets
    ``normalize = false``); its recipes set the crop scales (global 0.1-1, local 0.05-1)."""
    ops = _crop(ctx) + _color_ops(ctx, (0.8, 0.8, 0.8, 0.2)) + [_blur(ctx.size, 1.0)]
    if ctx.kind == "global":
        ops.append(v2.RandomSolarize(threshold=127 / 255, p=0.2))
    return ops


def preset_decoupled_uniformity(ctx: ViewContext) -> list[nn.Module]:
    """Decoupled Uniformity (Dufumier et al., ICML 2023; as its reference code's CIFAR transforms):
    SimCLR's jitter, no blur, no solarize."""
    return _crop(ctx) + _color_ops(ctx, (0.8, 0.8, 0.8, 0.2))


def preset_qare(ctx: ViewContext) -> list[nn.Module]:
    """QARe / SparseCLR (Moskalev et al., ECCV 2022; as its reference code): the same list as
    Decoupled Uniformity's."""
    return preset_decoupled_uniformity(ctx)


def preset_care(ctx: ViewContext) -> list[nn.Module]:
    """CARE (Gupta et al., "Structuring Representation Geometry with Rotationally Equivariant
    Contrastive Learning"; as its reference code), for its InfoNCE views and its group-augmented
    copies alike: weak jitter, blur with a fixed 3 px kernel at p 0.5."""
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


def eval_transform(info: DatasetInfo, spec: ViewSpec, size: int | None = None) -> v2.Compose:
    """No augmentation: resize to ``size`` (default: the global view size) and normalise as
    training did (what evaluation and feature extraction use)."""
    size = size or spec.sizes(info.image_size)[0]
    mean, std = info.normalisation(spec.normalize)
    return build_transform(preset_none(ViewContext("global", 0, size, (1.0, 1.0), info.channels)), mean, std)

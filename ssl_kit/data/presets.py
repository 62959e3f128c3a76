"""Augmentation presets: ``factory(ViewContext) -> list of torchvision v2 transforms``.

The papers' augmentations (each docstring names its source), registered by name through
``register_view_presets``;
:func:`build_transform` wraps a preset's list into the full per-image transform.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ssl_kit.data import sample_ops
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


def preset_simclr_cifar(ctx: ViewContext) -> list[nn.Module]:
    """SimCLR's CIFAR-10 augmentation (Chen et al. 2020, appendix B.9; the released CIFAR-10 command,
    ``--color_jitter_strength=0.5 --use_blur=False``): crop (scale 0.08-1, bicubic), flip, colour
    jitter of strength 0.5 (0.4, 0.4, 0.4, 0.1) at p 0.8, grayscale p 0.2, no blur."""
    return _crop(ctx) + _color_ops(ctx, (0.4, 0.4, 0.4, 0.1))


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
    "simclr_cifar": preset_simclr_cifar,
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
    """uint8/PIL image -> float tensor in [0, 1] -> ops -> optional normalisation.

    A ``v2.Compose`` of ``ToImage``, ``ToDtype``, ``ops`` and ``Normalize`` whose call runs each op
    as a fused step: the op's own random draws (``make_params``, ``torch.rand(1) >= p``) from the
    global generator in torchvision's order, then a kernel on the plain tensor, without v2's
    per-call dispatch. The views equal the plain ``v2.Compose``'s to 1e-5 (the same parameters;
    :mod:`ssl_kit.data.sample_ops` has the kernels); an op it does not know runs as itself.
    ``steps()`` gives the steps, one per op of ``transforms``."""
    head: list[nn.Module] = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    tail: list[nn.Module] = [v2.Normalize(mean, std)] if mean is not None and std is not None else []
    return _FusedCompose(head + ops + tail)


# --- the fused per-sample executor ---------------------------------------------------------------
Step = Callable[[Any], Any]


class _FusedCompose(v2.Compose):
    """``v2.Compose`` whose call runs :func:`_step` of each transform (compiled on first use and
    again when ``transforms`` changes; never pickled: DataLoader workers compile their own)."""

    def __init__(self, transforms: list[nn.Module]) -> None:
        super().__init__(transforms)
        self._steps: tuple[tuple[int, ...], list[Step]] | None = None

    def steps(self) -> list[Step]:
        """One step per transform: draws as the transform does, returns a plain tensor."""
        key = tuple(map(id, self.transforms))
        if self._steps is None or self._steps[0] != key:
            self._steps = (key, [_step(op) for op in self.transforms])
        return self._steps[1]

    def forward(self, *inputs: Any) -> Any:
        if len(inputs) != 1:
            return super().forward(*inputs)
        return _run_steps(self.steps(), inputs[0])

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_steps"] = None
        return state


def _run_steps(steps: list[Step], x: Any) -> Any:
    for step in steps:
        x = step(x)
    return x


def _float32(p: float) -> float:
    return struct.unpack("f", struct.pack("f", p))[0]


def _skips(p: float) -> bool:
    """torchvision's ``torch.rand(1) >= p`` (compared in float32), one draw."""
    return torch.rand(1).item() >= _float32(p)


def _as_itself(op: Callable) -> Step:
    """The op called as the plain ``v2.Compose`` calls it (on a ``tv_tensors.Image``); a tensor
    result comes back plain."""
    def step(x: Any) -> Any:
        out = op(x.as_subclass(tv_tensors.Image) if type(x) is torch.Tensor else x)
        return out.as_subclass(torch.Tensor) if isinstance(out, torch.Tensor) else out
    return step


def _image(x: Any, float_only: bool = True) -> bool:
    """Whether the fused kernels take ``x``: a plain (C, H, W) tensor (floating point)."""
    return type(x) is torch.Tensor and x.ndim == 3 and (x.is_floating_point() or not float_only)


def _crop_step(op: v2.RandomResizedCrop, fallback: Step) -> Step:
    def step(x: Any) -> Any:
        if not _image(x):
            return fallback(x)
        params = op.make_params([x])
        top, left, height, width = params["top"], params["left"], params["height"], params["width"]
        mode = str(getattr(op.interpolation, "value", op.interpolation))
        if mode not in ("bilinear", "bicubic") or min(top, left) < 0 or top + height > x.shape[-2] \
                or left + width > x.shape[-1]:
            return op.transform(x, params)
        size = (int(op.size[0]), int(op.size[1]))
        return sample_ops.resized_crop(x, top, left, height, width, size, mode, bool(op.antialias))
    return step


def _jitter_step(op: v2.ColorJitter, fallback: Step) -> Step:
    def step(x: Any) -> Any:
        if not _image(x) or x.shape[0] not in (1, 3):
            return fallback(x)
        params = op.make_params([x])
        clamped = False  # brightness, contrast and saturation clamp to [0, 1]
        for fn_id in params["fn_idx"].tolist():
            if fn_id == 0 and params["brightness_factor"] is not None:
                x, clamped = sample_ops.brightness(x, params["brightness_factor"]), True
            elif fn_id == 1 and params["contrast_factor"] is not None:
                x, clamped = sample_ops.contrast(x, params["contrast_factor"]), True
            elif fn_id == 2 and params["saturation_factor"] is not None:
                x, clamped = sample_ops.saturation(x, params["saturation_factor"]), True
            elif fn_id == 3 and params["hue_factor"] is not None:
                if clamped or sample_ops.in_unit_range(x):
                    x = sample_ops.hue(x, params["hue_factor"])
                else:
                    x = TF.adjust_hue_image(x, params["hue_factor"])
        return x
    return step


def _blur_step(op: v2.GaussianBlur, fallback: Step) -> Step:
    def step(x: Any) -> Any:
        kx, ky = op.kernel_size
        if not _image(x) or kx // 2 >= x.shape[-1] or ky // 2 >= x.shape[-2]:
            return fallback(x)
        return sample_ops.gaussian_blur(x, (kx, ky), op.make_params([x])["sigma"])
    return step


def _random_step(op: nn.Module, kernel: Callable[[torch.Tensor], torch.Tensor], fallback: Step,
                 float_only: bool = True) -> Step:
    """A ``p``-test op (flip, grayscale, solarize): one draw, then ``kernel`` when applied."""
    def step(x: Any) -> Any:
        if not _image(x, float_only):
            return fallback(x)
        return x if _skips(op.p) else kernel(x)
    return step


def _gray(x: torch.Tensor) -> torch.Tensor:
    return sample_ops.grayscale(x).expand_as(x) if x.shape[0] == 3 else TF.rgb_to_grayscale_image(x, x.shape[0])


def _normalize_step(op: v2.Normalize, fallback: Step) -> Step:
    if not all(op.std):
        return fallback  # torchvision's error
    stats: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def step(x: Any) -> Any:
        if not _image(x):
            return fallback(x)
        key = (x.dtype, x.device)
        if key not in stats:
            stats[key] = tuple(torch.as_tensor(v, dtype=x.dtype, device=x.device).view(-1, 1, 1)
                               for v in (op.mean, op.std))
        mean, std = stats[key]
        return (x.sub_(mean) if op.inplace else x.sub(mean)).div_(std)
    return step


def _step(op: Callable) -> Step:
    """The fused step of one transform: the same draws in the same order as ``op(x)``, and its
    result (to 1e-5) as a plain tensor; inputs the kernels do not take go to ``op`` itself."""
    fallback = _as_itself(op)
    kind = type(op)
    if kind in (v2.Compose, _FusedCompose):
        inner = [_step(t) for t in op.transforms]
        return lambda x: _run_steps(inner, x)
    if kind is v2.RandomApply:
        inner = [_step(t) for t in op.transforms]
        return lambda x: x if _skips(op.p) else _run_steps(inner, x)
    if kind is v2.ToImage:
        return lambda x: x if type(x) is torch.Tensor and x.ndim >= 3 else fallback(x)
    if kind is v2.ToDtype and isinstance(op.dtype, torch.dtype):
        return lambda x: TF.to_dtype_image(x, op.dtype, scale=op.scale) if type(x) is torch.Tensor else fallback(x)
    if kind is v2.Normalize:
        return _normalize_step(op, fallback)
    if kind is ClampUnit:
        return lambda x: x.clamp(0.0, 1.0) if type(x) is torch.Tensor else fallback(x)
    if kind is v2.RandomResizedCrop:
        return _crop_step(op, fallback)
    if kind is v2.ColorJitter:
        return _jitter_step(op, fallback)
    if kind is v2.GaussianBlur:
        return _blur_step(op, fallback)
    if kind is v2.RandomHorizontalFlip:
        return _random_step(op, lambda x: x.flip(-1), fallback, float_only=False)
    if kind is v2.RandomGrayscale:
        return _random_step(op, _gray, fallback)
    if kind is v2.RandomSolarize and op.threshold <= 1.0:
        return _random_step(op, lambda x: sample_ops.solarize(x, op.threshold), fallback)
    if kind in (v2.Resize, v2.CenterCrop, v2.RandomAffine):  # torchvision's kernels, without the dispatch
        def standard(x: Any) -> Any:
            if type(x) is not torch.Tensor:
                return fallback(x)
            op.check_inputs([x])
            return op.transform(x, op.make_params([x]))
        return standard
    return fallback


def eval_transform(info: DatasetInfo, spec: ViewSpec, size: int | None = None) -> v2.Compose:
    """No augmentation: resize to ``size`` (default: the global view size) and normalise as
    training did (what evaluation and feature extraction use)."""
    size = size or spec.sizes(info.image_size)[0]
    mean, std = info.normalisation(spec.normalize)
    return build_transform(preset_none(ViewContext("global", 0, size, (1.0, 1.0), info.channels)), mean, std)

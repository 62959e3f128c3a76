"""One image's view ops for the per-sample path, in fewer tensor operations than torchvision's.

Each function takes one image ``x`` of shape (C, H, W), float, and returns what the torchvision v2
functional op its docstring names returns for it: the same bits where it makes the same tensor
operations, else within a few 1e-6 (the tests compare them to 1e-5). At 32 px an op's cost is mostly the fixed
cost of each tensor operation (and of each multithreaded kernel, at more than one thread), so the
same result in fewer, single-threaded operations is the speed-up. The caller
(:func:`ssl_kit.data.presets.build_transform`) draws the parameters and keeps torchvision's
kernels for the inputs these do not take (other dtypes, pixels outside [0, 1] for the hue).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
_HUE_OFFSETS: dict = {}  # (dtype, device) -> the offsets 5, 3, 1 of R, G, B on the hue circle, (3, 1, 1)


# --- geometry ----------------------------------------------------------------------------------
def resized_crop(x: torch.Tensor, top: int, left: int, height: int, width: int, size: tuple[int, int],
                 mode: str, antialias: bool) -> torch.Tensor:
    """``resized_crop`` of a box inside the image with ``mode`` 'bilinear' or 'bicubic': the
    call torchvision's ``resize`` makes for a float image (the same bits), without its checks."""
    crop = x[..., top:top + height, left:left + width]
    if (height, width) == tuple(size):
        return crop  # torchvision returns the crop unresized
    return F.interpolate(crop.unsqueeze(0), size=list(size), mode=mode, align_corners=False, antialias=antialias)[0]


# --- colour ------------------------------------------------------------------------------------
def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma (1, H, W) of an RGB image, as ``rgb_to_grayscale`` computes it (same operations)."""
    return x[0].mul(_GRAY[0]).add_(x[1], alpha=_GRAY[1]).add_(x[2], alpha=_GRAY[2]).unsqueeze(0)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: float) -> torch.Tensor:
    return x.mul(ratio).add_(other, alpha=1.0 - ratio).clamp_(0.0, 1.0)


def brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``adjust_brightness`` (same operations)."""
    return x.mul(factor).clamp_(0.0, 1.0)


def contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``adjust_contrast``: blend with the mean luma (same operations)."""
    gray = grayscale(x) if x.shape[0] == 3 else x
    return _blend(x, gray.mean(dim=(-3, -2, -1), keepdim=True), factor)


def saturation(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``adjust_saturation``: blend with the luma; one channel: unchanged (same operations)."""
    return x if x.shape[0] == 1 else _blend(x, grayscale(x), factor)


def hue(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``adjust_hue`` of an image with pixels in [0, 1]; one channel: unchanged.

    torchvision converts to HSV, shifts H and converts back (with a gather over the six sectors).
    The shift keeps V (the largest channel) and S, so each channel comes back as
    ``V - (V - min) * clamp(min(k, 4 - k), 0, 1)`` with ``k = (6 H + 6 factor + n) mod 6`` and
    n = 5, 3, 1 for R, G, B: the closed form of the same HSV to RGB map, in about 25 tensor
    operations instead of about 70 (within 2e-6)."""
    if x.shape[0] == 1:
        return x
    r, g, b = x[0], x[1], x[2]
    maxc = torch.maximum(torch.maximum(r, g), b)
    span = maxc - torch.minimum(torch.minimum(r, g), b)
    safe = span.clamp(min=1e-30)  # a grey pixel (span 0): any hue, the result is V
    h6 = torch.where(maxc == r, (g - b).div_(safe),  # 6 H in [-1, 5], torchvision's sectors
                     torch.where(maxc == g, (b - r).div_(safe).add_(2.0), (r - g).div_(safe).add_(4.0)))
    key = (x.dtype, x.device)
    offsets = _HUE_OFFSETS.get(key)
    if offsets is None:
        offsets = _HUE_OFFSETS[key] = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(3, 1, 1)
    k = (h6 + (offsets + 6.0 * factor)).remainder_(6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc - ramp.mul_(span)


def in_unit_range(x: torch.Tensor) -> bool:
    """Whether every pixel is in [0, 1] (where :func:`hue` equals torchvision's)."""
    lo, hi = torch.aminmax(x)
    return bool(lo >= 0.0) and bool(hi <= 1.0)


def gaussian_kernel(size: int, sigma: float) -> list[float]:
    """torchvision's 1-D Gaussian weights: ``softmax(-(t / sigma)^2)`` at ``size`` points ``t``
    evenly spaced on [-(size - 1) / (2 sqrt 2), (size - 1) / (2 sqrt 2)] (in double precision)."""
    lim = (size - 1) / (2.0 * math.sqrt(2.0))
    taps = [-lim + 2.0 * lim * i / (size - 1) if size > 1 else 0.0 for i in range(size)]
    weights = [math.exp(-((t / sigma) ** 2)) for t in taps]
    total = sum(weights)
    return [w / total for w in weights]


_REFLECT: dict = {}  # (length, pad, device) -> the indices of a line reflect-padded by pad


def _reflect(x: torch.Tensor, dim: int, pad: int) -> torch.Tensor:
    """``x`` padded by ``pad`` on both sides of ``dim`` as ``F.pad(mode="reflect")`` does, by one
    gather (``F.pad``'s reflection kernel starts threads: 40x slower at 2 threads on 32 px)."""
    length = x.shape[dim]
    key = (length, pad, x.device)
    index = _REFLECT.get(key)
    if index is None:
        if pad >= length:
            raise ValueError(f"reflect padding {pad} needs a side longer than {pad}, got {length}")
        line = list(range(pad, 0, -1)) + list(range(length)) + list(range(length - 2, length - 2 - pad, -1))
        if len(_REFLECT) > 4096:  # images of many sizes: keep the cache small
            _REFLECT.clear()
        index = _REFLECT[key] = torch.tensor(line, device=x.device)
    return x.index_select(dim, index)


def _pass(x: torch.Tensor, weights: list[float], dim: int, length: int) -> torch.Tensor:
    out = x.narrow(dim, 0, length).mul(weights[0])
    for t in range(1, len(weights)):
        out.add_(x.narrow(dim, t, length), alpha=weights[t])
    return out


def gaussian_blur(x: torch.Tensor, kernel_size: tuple[int, int], sigma: tuple[float, float]) -> torch.Tensor:
    """``gaussian_blur`` (reflect padding; ``kernel_size`` and ``sigma`` as (x, y)), as two
    separable passes of shifted sums instead of one 2-D convolution."""
    kx, ky = kernel_size
    h, w = x.shape[-2:]
    rows = _pass(_reflect(x, -1, kx // 2), gaussian_kernel(kx, sigma[0]), -1, w)
    return _pass(_reflect(rows, -2, ky // 2), gaussian_kernel(ky, sigma[1]), -2, h)


def solarize(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """``solarize`` of a float image: invert the pixels at or above ``threshold`` (same operations)."""
    return torch.where(x >= threshold, 1.0 - x, x)

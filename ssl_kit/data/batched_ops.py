"""Batched image ops with per-image parameters, and the counter-based generator that draws them.

Every function takes a float batch ``x`` of shape (B, C, H, W) in [0, 1] and per-image parameters
(tensors of shape (B,)) and returns what torchvision's functional op would return for each image
with its own parameters (the tests compare them). Nothing here reads a global RNG: parameters
come from :func:`uniform`, a pure function of ``(stream, key, draw)``, so a view depends only on
the integers that name it, whatever the batch it is made in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_M32 = 0xFFFFFFFF
_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xorshift-multiply) on int64 tensors holding values in [0, 2**32).
    Both multipliers are below 2**31, so no product overflows int64 on any device."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x68E31DA5) & _M32
    return x ^ (x >> 16)


def uniform(stream: int, keys: torch.Tensor, draws: int) -> torch.Tensor:
    """Uniform floats in [0, 1) of shape (B, draws): entry (b, d) is a pure function of
    ``(stream, keys[b], d)`` (``stream`` a non-negative integer below 2**64, ``keys`` non-negative
    int64 of shape (B,)). float32 with 24 random bits, on ``keys``' device."""
    s0, s1 = stream & _M32, (stream >> 32) & _M32
    h = _mix32((keys & _M32) ^ s0)
    h = _mix32(h ^ ((keys >> 32) & _M32) ^ s1)
    d = torch.arange(draws, device=keys.device, dtype=torch.int64)
    h = _mix32(_mix32(h[:, None] ^ d) ^ s0)
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


# --- geometry ----------------------------------------------------------------------------------
def _filter(x: torch.Tensor, mode: str) -> torch.Tensor:
    x = x.abs()
    if mode == "bilinear":
        return (1.0 - x).clamp(min=0.0)
    a = -0.5  # the antialiased bicubic kernel of torch (and PIL)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def resample_weights(start: torch.Tensor, length: torch.Tensor, size_in: int, size_out: int, mode: str) -> torch.Tensor:
    """(B, size_out, size_in) weights that crop pixels ``[start, start + length)`` of a line of
    ``size_in`` pixels and resize them to ``size_out`` as ``torch.nn.functional.interpolate(mode,
    antialias=True)`` does (torchvision's resize): the kernel widens by the scale when shrinking,
    and the taps outside the crop are dropped and the rest renormalised."""
    device = start.device
    scale = (length.to(torch.float32) / size_out)[:, None]  # (B, 1)
    half = 1.0 if mode == "bilinear" else 2.0
    shrink = scale >= 1.0
    support = torch.where(shrink, half * scale, torch.full_like(scale, half))
    invscale = torch.where(shrink, 1.0 / scale, torch.ones_like(scale))
    center = scale * (torch.arange(size_out, device=device, dtype=torch.float32)[None] + 0.5)  # (B, out)
    lo = torch.floor(center - support + 0.5).clamp(min=0.0)
    hi = torch.minimum(torch.floor(center + support + 0.5), length.to(torch.float32)[:, None])
    j = torch.arange(size_in, device=device, dtype=torch.float32)[None, None] - start.to(torch.float32)[:, None, None]
    inside = (j >= lo[..., None]) & (j < hi[..., None])
    w = _filter((j - center[..., None] + 0.5) * invscale[..., None], mode) * inside
    return w / w.sum(-1, keepdim=True).clamp(min=1e-12)


def resized_crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor, width: torch.Tensor,
                 size: tuple[int, int], mode: str) -> torch.Tensor:
    """Crop box (top, left, height, width) of each image, resized to ``size`` (h, w) with
    ``mode`` ('bilinear' or 'bicubic', antialiased): two batched matrix products."""
    wy = resample_weights(top, height, x.shape[-2], size[0], mode).to(x.dtype)
    wx = resample_weights(left, width, x.shape[-1], size[1], mode).to(x.dtype)
    return wy[:, None] @ x @ wx[:, None].transpose(-1, -2)


def random_crop_boxes(u: torch.Tensor, height: int, width: int, scale: tuple[float, float],
                      ratio: tuple[float, float]) -> tuple[torch.Tensor, ...]:
    """RandomResizedCrop's boxes from ``u`` (B, 22) uniforms: up to 10 tries of (area, log-ratio)
    as torchvision draws them, the first that fits, else its centre-crop fallback; then the
    box's position. Returns (top, left, h, w), int64 tensors of shape (B,)."""
    area = height * width
    log_lo, log_hi = torch.log(torch.tensor(ratio, dtype=torch.float64)).tolist()
    target = area * (scale[0] + (scale[1] - scale[0]) * u[:, 0:20:2].double())  # (B, 10)
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1:20:2].double())
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(fits.any(1), fits.long().argmax(1), -1)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    pick = first.clamp(min=0)[:, None]
    found = first >= 0
    bh = torch.where(found, h.gather(1, pick)[:, 0], torch.full_like(first, fh))
    bw = torch.where(found, w.gather(1, pick)[:, 0], torch.full_like(first, fw))
    top = torch.where(found, (u[:, 20].double() * (height - bh + 1)).long(), (height - bh) // 2)
    left = torch.where(found, (u[:, 21].double() * (width - bw + 1)).long(), (width - bw) // 2)
    return top, left, bh, bw


def affine_nearest(x: torch.Tensor, angle: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
                   shear_x: torch.Tensor, shear_y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """torchvision's ``affine`` (centre of the image, nearest neighbour, zero fill) with per-image
    angle and shears in degrees, translations in pixels and scale: its inverse matrix and grid."""
    h, w = x.shape[-2:]
    rot, sx, sy = (torch.deg2rad(t.double()) for t in (angle, shear_x, shear_y))
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m = torch.stack([d, -b, -c, a], 1) / scale.double()[:, None]  # rows (m0, m1), (m3, m4)
    txd, tyd = tx.double(), ty.double()
    m2 = m[:, 0] * -txd + m[:, 1] * -tyd
    m5 = m[:, 2] * -txd + m[:, 3] * -tyd
    theta = torch.stack([m[:, 0], m[:, 1], m2, m[:, 2], m[:, 3], m5], 1).view(-1, 2, 3).to(x.dtype)
    base = torch.empty(1, h, w, 3, dtype=x.dtype, device=x.device)
    base[..., 0].copy_(torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, steps=w, device=x.device))
    base[..., 1].copy_(torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, steps=h, device=x.device).unsqueeze(-1))
    base[..., 2].fill_(1)
    rescaled = theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h], dtype=x.dtype, device=x.device)
    grid = base.view(1, h * w, 3).expand(len(x), -1, -1).bmm(rescaled).view(-1, h, w, 2)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


# --- colour ------------------------------------------------------------------------------------
def _per_image(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).view(-1, 1, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images (B, 1, H, W) with torchvision's weights."""
    r, g, b = x.unbind(-3)
    return (r * _GRAY[0] + g * _GRAY[1] + b * _GRAY[2]).unsqueeze(-3)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = _per_image(factor).to(x.dtype)
    return (f * x + (1.0 - f) * other).clamp(0.0, 1.0)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``adjust_brightness`` per image."""
    return _blend(x, torch.zeros_like(x), factor)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``adjust_contrast`` per image: blend with the mean luma."""
    gray = grayscale(x) if x.shape[-3] == 3 else x
    return _blend(x, gray.mean(dim=(-3, -2, -1), keepdim=True), factor)


def saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``adjust_saturation`` per image: blend with the luma (one channel: unchanged)."""
    return x if x.shape[-3] == 1 else _blend(x, grayscale(x), factor)


def hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``adjust_hue`` per image: rotate the hue in HSV space (one channel: unchanged)."""
    if x.shape[-3] == 1:
        return x
    minc, maxc = torch.aminmax(x, dim=-3)
    eqc = maxc == minc
    span = maxc - minc
    ones = torch.ones_like(maxc)
    s = span / torch.where(eqc, ones, maxc)
    rc, gc, bc = ((maxc.unsqueeze(-3) - x) / torch.where(eqc, ones, span).unsqueeze(-3)).unbind(-3)
    r, g, _ = x.unbind(-3)
    not_r, is_g = maxc != r, maxc == g
    h = (bc - gc) * ~not_r + (rc + 2.0 - bc) * (is_g & not_r) + (gc + 4.0 - rc) * (not_r & ~is_g)
    h = (h / 6.0 + 1.0).fmod(1.0)
    h = (h + factor.to(x.dtype).view(-1, 1, 1)).remainder(1.0)
    h6 = h * 6
    i = torch.floor(h6)
    f = h6 - i
    i = i.to(torch.int64).remainder(6)
    q = ((1.0 - s * f) * maxc).clamp(0.0, 1.0)
    t = ((s * f + 1.0 - s) * maxc).clamp(0.0, 1.0)
    p = ((1.0 - s) * maxc).clamp(0.0, 1.0)
    vpqt = torch.stack((maxc, p, q, t), dim=-3)
    select = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], device=x.device)
    return vpqt.gather(-3, select[:, i].moveaxis(0, -3))


def gaussian_blur(x: torch.Tensor, kernel: int, sigma: torch.Tensor) -> torch.Tensor:
    """``gaussian_blur`` (square ``kernel``, reflect padding) with a per-image sigma, as two
    separable passes."""
    half = (kernel - 1) * 0.5
    taps = torch.linspace(-half, half, kernel, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (taps[None] / sigma.to(x.dtype)[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).view(-1, 1, 1, kernel)
    pad = kernel // 2
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    h, w = x.shape[-2:]
    rows = sum(k[..., t:t + 1] * xp[..., :, t:t + w] for t in range(kernel))  # (B, C, H + 2 pad, W)
    return sum(k[..., t:t + 1] * rows[..., t:t + h, :] for t in range(kernel))


def solarize(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """``solarize``: invert the pixels at or above ``threshold``."""
    return torch.where(x >= threshold, 1.0 - x, x)

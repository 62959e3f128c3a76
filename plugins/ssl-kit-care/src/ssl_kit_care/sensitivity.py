"""How far embeddings move under colour changes and under crops: the sensitivity CARE claims to
keep (Gupta et al., ICLR 2024: CARE's embeddings stay sensitive to colour, which invariance-based
SimCLR discards). A model evaluator, usable with any method (``[eval] evaluators =
["colour_sensitivity"]``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from ssl_kit.config import knob
from ssl_kit.data.views import mix_seed

KEY = "colour_sensitivity"


def sensitivity_scores(clean: torch.Tensor, colour: torch.Tensor, crop: torch.Tensor) -> dict[str, float]:
    """The scores of features ``clean``, ``colour`` and ``crop`` (N, D): row i is image i as it is,
    after a colour change, after a crop. With f̂ = f / ‖f‖ and d(a, b) = 1 − â·b̂ (in float64):

        shift_colour = mean_i d(clean_i, colour_i),   shift_crop = mean_i d(clean_i, crop_i)
        spread       = mean_{i≠j} d(clean_i, clean_j)          (how far apart different images are)

    Returns (percent, except the spread; the ``_score`` suffix lets benchmark tables pick them up):
        ``colour_sensitivity_score``          100 · shift_colour / spread
        ``colour_sensitivity_crop_score``     100 · shift_crop / spread
        ``colour_sensitivity_vs_crop_score``  100 · shift_colour / shift_crop   (0: colour is ignored)
        ``colour_sensitivity_spread``         spread
    A ratio whose denominator is 0 is NaN (an encoder with constant output)."""
    if clean.ndim != 2 or clean.shape != colour.shape or clean.shape != crop.shape or len(clean) < 2:
        raise ValueError(f"sensitivity_scores expects three (N, D) feature tensors with N >= 2, got "
                         f"{tuple(clean.shape)}, {tuple(colour.shape)}, {tuple(crop.shape)}")
    f, c, r = (F.normalize(x.double(), dim=1) for x in (clean, colour, crop))
    shift_colour = float((1 - (f * c).sum(1)).mean())
    shift_crop = float((1 - (f * r).sum(1)).mean())
    n, total = len(f), f.sum(0)
    # sum_{i != j} f_i . f_j = |sum_i f_i|^2 - sum_i |f_i|^2, without the (N, N) matrix
    spread = 1 - float(total @ total - (f * f).sum()) / (n * (n - 1))

    def percent(a: float, b: float) -> float:
        return 100 * a / b if b > 0 else float("nan")

    return {f"{KEY}_score": percent(shift_colour, spread), f"{KEY}_crop_score": percent(shift_crop, spread),
            f"{KEY}_vs_crop_score": percent(shift_colour, shift_crop), f"{KEY}_spread": spread}


class OwnSizeCrop(nn.Module):
    """RandomResizedCrop back to the image's own size (bilinear, antialiased)."""

    def __init__(self, scale: tuple[float, float]) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = list(v2.functional.get_size(image))
        return v2.RandomResizedCrop(size, scale=self.scale, antialias=True)(image)


@torch.no_grad()
def measure_sensitivity(
    encoder: nn.Module,
    dataset: Any,
    transform: Callable,
    *,
    images: int = 1000,
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
    crop_scale: tuple[float, float] = (0.08, 1.0),
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """:func:`sensitivity_scores` of ``encoder`` (in eval mode, restored afterwards) on ``images``
    images of ``dataset`` (a fixed random subset drawn from ``seed``; all of them if fewer).

    Each image (pixels in [0, 1]) is encoded three times through ``transform`` (the evaluation
    transform: resize, normalisation): as it is; after ``ColorJitter(*jitter)`` (brightness,
    contrast, saturation, hue; always applied; saturation and hue leave one-channel images
    unchanged); after a ``RandomResizedCrop`` of area ``crop_scale`` resized back to the image's
    size. The draws of image i depend on ``(seed, i)`` only, so the numbers do not depend on
    ``batch_size`` or on the global RNG (which is left as it was)."""
    n = min(images, len(dataset))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    to_float = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    colour_change, crop_change = v2.ColorJitter(*jitter), OwnSizeCrop(crop_scale)
    generator = torch.default_generator
    features: dict[str, list[torch.Tensor]] = {"clean": [], "colour": [], "crop": []}
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            for start in range(0, n, batch_size):
                batch: dict[str, list[torch.Tensor]] = {kind: [] for kind in features}
                for index in order[start:start + batch_size]:
                    image = to_float(dataset[index]["image"])
                    batch["clean"].append(transform(image))
                    generator.manual_seed(mix_seed(seed, index, 1))
                    batch["colour"].append(transform(colour_change(image)))
                    generator.manual_seed(mix_seed(seed, index, 2))
                    batch["crop"].append(transform(crop_change(image)))
                for kind, views in batch.items():
                    features[kind].append(encoder(torch.stack(views).to(device)).float().flatten(1).cpu())
    finally:
        encoder.train(was_training)
    return sensitivity_scores(*(torch.cat(features[kind]) for kind in ("clean", "colour", "crop")))


@dataclasses.dataclass(frozen=True)
class ColourSensitivityConfig:
    images: int = knob(1000, "test images measured (a fixed random subset; all if the split is smaller)", min=2)
    brightness: float = knob(0.4, "colour change: ColorJitter brightness (CARE's augmentation: 0.4)", min=0)
    contrast: float = knob(0.4, "colour change: ColorJitter contrast", min=0)
    saturation: float = knob(0.4, "colour change: ColorJitter saturation (no effect on one-channel images)", min=0)
    hue: float = knob(0.1, "colour change: ColorJitter hue (no effect on one-channel images)", min=0, max=0.5)
    crop_scale: tuple[float, float] = knob((0.08, 1.0), "crop change: RandomResizedCrop area range", gt=0, max=1)
    seed: int = knob(0, "seed of the subset and of every draw")

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if low > high:
            raise ValueError(f"key 'crop_scale' must be [low, high] with low <= high, got {[low, high]}")


class ColourSensitivity:
    """Model evaluator: :func:`measure_sensitivity` of the evaluated encoder on the test split."""

    kind = "model"

    def __init__(self, cfg: ColourSensitivityConfig) -> None:
        self.cfg = cfg
        jitter = ", ".join(f"{v:g}" for v in (cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue))
        self.protocol = (
            f"colour vs crop sensitivity: mean 1 - cos of L2-normalised features under ColorJitter({jitter}) vs "
            f"RandomResizedCrop(scale {cfg.crop_scale[0]:g}-{cfg.crop_scale[1]:g}), in % ({KEY}_score, {KEY}_crop_score: of "
            f"the mean 1 - cos between different images; {KEY}_vs_crop_score: colour / crop); {cfg.images} test images, "
            f"seed {cfg.seed}"
        )
        self.primary = f"{KEY}_vs_crop_score"

    def __call__(self, encoder: nn.Module, train_set: Any, test_set: Any, ctx: Any) -> dict[str, float]:
        c = self.cfg
        return measure_sensitivity(encoder, test_set, ctx.transform, images=c.images,
                                   jitter=(c.brightness, c.contrast, c.saturation, c.hue), crop_scale=c.crop_scale,
                                   seed=c.seed, batch_size=ctx.batch_size, device=ctx.device)

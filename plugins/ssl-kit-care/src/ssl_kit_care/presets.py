"""The augmentations of CARE's ImageNet-100 scripts (github.com/Sharut/CARE, imagenet100/main.py and
main_lincls.py), as view presets. CIFAR and STL-10 use ssl_kit's ``care`` preset."""

from __future__ import annotations

from torch import nn
from torchvision.transforms import v2

from ssl_kit.data.presets import ClampUnit
from ssl_kit.spec import ViewContext


def _colour(ctx: ViewContext) -> list[nn.Module]:
    """MoCo v2's colour ops with CARE's blur: jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2,
    Gaussian blur with a fixed 5 px kernel (sigma 0.1-2) p 0.5, then a horizontal flip."""
    ops: list[nn.Module] = []
    if ctx.channels == 3:
        ops += [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]
    return ops + [v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 2.0))], p=0.5), v2.RandomHorizontalFlip()]


def preset_care_imagenet(ctx: ViewContext) -> list[nn.Module]:
    """CARE's ImageNet-100 InfoNCE views: RandomResizedCrop (the recipe's scale, 0.2-1; bilinear),
    then the colour ops of :func:`_colour`."""
    return [v2.RandomResizedCrop(ctx.size, scale=ctx.scale, antialias=True), ClampUnit(), *_colour(ctx)]


def preset_care_imagenet_group(ctx: ViewContext) -> list[nn.Module]:
    """CARE's ImageNet-100 group-augmented copies: no random crop (the released script resizes to
    256 and centre-crops 224 first), then the colour ops of :func:`_colour`, shared within a group."""
    return [v2.Resize(ctx.size * 8 // 7, antialias=True), v2.CenterCrop(ctx.size), *_colour(ctx)]


def preset_care_lincls(ctx: ViewContext) -> list[nn.Module]:
    """The ImageNet-100 linear probe's training augmentation (MoCo's main_lincls.py):
    RandomResizedCrop with torchvision's default scale 0.08-1 (whatever the recipe's), flip."""
    return [v2.RandomResizedCrop(ctx.size, scale=(0.08, 1.0), antialias=True), ClampUnit(), v2.RandomHorizontalFlip()]


PRESETS = {
    "care_imagenet": preset_care_imagenet,
    "care_imagenet_group": preset_care_imagenet_group,
    "care_lincls": preset_care_lincls,
}

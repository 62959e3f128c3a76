"""Backbones: ``nn.Module`` mapping images (B, C, H, W) to features (B, D), with ``num_features``.

Built-ins: torchvision ResNets with the CIFAR stem option, any timm model by name, and a small
convnet for digits and tests. ``in_channels = None`` means "take it from the dataset".
"""

from __future__ import annotations

import dataclasses

import torch
import torchvision
from torch import nn

from ssl_kit.config import knob
from ssl_kit.errors import UserError, did_you_mean


# --- torchvision ResNets -----------------------------------------------------------------------
@dataclasses.dataclass
class ResNetConfig:
    cifar_stem: bool = knob(False, "3x3 stride-1 conv1 without bias and no max-pool (CIFAR papers)")
    stem_padding: int = knob(1, "padding of the CIFAR-stem conv1 (1: CARE/ReLIC, 2: solo-learn)", min=0)
    zero_init_residual: bool = knob(False, "zero-init the last BN of each residual block")
    in_channels: int | None = knob(None, "input channels (default: the dataset's)", min=1)


def _resnet(depth: int):
    def factory(cfg: ResNetConfig) -> nn.Module:
        model = getattr(torchvision.models, f"resnet{depth}")(
            weights=None, zero_init_residual=cfg.zero_init_residual
        )
        in_channels = cfg.in_channels or 3
        if cfg.cifar_stem:
            model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, cfg.stem_padding, bias=False)
            model.maxpool = nn.Identity()
        elif in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        model.num_features = model.fc.in_features
        model.fc = nn.Identity()
        return model

    factory.__doc__ = f"torchvision ResNet-{depth} (no weights), fc removed; optional CIFAR stem."
    return factory


resnet18, resnet34, resnet50 = _resnet(18), _resnet(34), _resnet(50)


# --- timm --------------------------------------------------------------------------------------
@dataclasses.dataclass
class TimmConfig:
    model: str = knob(help="timm model name, e.g. 'resnet18', 'vit_small_patch16_224'")
    pretrained: bool = knob(False, "load timm's pretrained weights (needs the network)")
    in_channels: int | None = knob(None, "input channels (default: the dataset's)", min=1)
    kwargs: dict = knob({}, "extra keyword arguments for timm.create_model (e.g. img_size)")


def timm_backbone(cfg: TimmConfig) -> nn.Module:
    """Any timm model by name, as ``timm.create_model(model, num_classes=0)``."""
    import timm  # heavy to import: only timm backbones need it

    known = timm.list_models()
    if ":" not in cfg.model and cfg.model not in known:
        raise UserError(f"[backbone] unknown timm model '{cfg.model}'.{did_you_mean(cfg.model, known)}")
    model = timm.create_model(
        cfg.model, pretrained=cfg.pretrained, num_classes=0, in_chans=cfg.in_channels or 3, **cfg.kwargs
    )
    return model


# --- small convnet -----------------------------------------------------------------------------
@dataclasses.dataclass
class ConvNetConfig:
    channels: list[int] = knob([32, 64, 128], "output channels of each conv3x3-BN-ReLU block", min=1)
    pool_after: list[int] = knob([0, 1], "block numbers (from 0) followed by a 2x2 max-pool", min=0)
    output_grid: int = knob(1, "average-pool the last feature map to a g x g grid and flatten (1: global average pooling)", min=1)
    in_channels: int | None = knob(None, "input channels (default: the dataset's)", min=1)


class ConvNet(nn.Module):
    """Blocks of Conv3x3(pad 1)-BN-ReLU, optional 2x2 max-pools, then average pooling to a g x g
    grid, flattened (g = 1: global average pooling). A small grid keeps where strokes are, which
    matters for tiny images such as digits."""

    def __init__(self, cfg: ConvNetConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = cfg.in_channels or 3
        for i, width in enumerate(cfg.channels):
            layers += [nn.Conv2d(previous, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if i in cfg.pool_after:
                layers.append(nn.MaxPool2d(2))
            previous = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(cfg.output_grid)
        self.num_features = previous * cfg.output_grid**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

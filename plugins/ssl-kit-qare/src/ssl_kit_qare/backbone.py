"""Conv4, the four-block convnet of the QARe and relational-reasoning papers (reference:
backbones/conv4.py of github.com/amoskalev/contrasting_quadratic)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ssl_kit.config import knob


@dataclasses.dataclass(frozen=True)
class Conv4Config:
    channels: list[int] = knob([8, 16, 32, 64], "output channels of each Conv3x3-BN-ReLU-AvgPool block; the last is the feature dimension (reference: 8, 16, 32, 64)", min=1)
    in_channels: int | None = knob(None, "input channels (default: the dataset's)", min=1)

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("key 'channels' needs at least one block, e.g. [8, 16, 32, 64]")


class Conv4(nn.Module):
    """Blocks of Conv3x3 (stride 1, padding 1, no bias)-BN-ReLU-AvgPool(2), the last block's pool
    global (adaptive average pooling to 1 x 1), flattened: (B, C, H, W) -> (B, channels[-1]).

    Initialisation as the reference: conv weights N(0, 2 / (9 * out_channels)) (He, fan-out),
    batch-norm weights 1 and biases 0. The spatial size must allow the pools: at least
    2^(blocks - 1) px (8 px for four blocks; 32 px CIFAR images end at 4 x 4 before the last pool).
    """

    def __init__(self, cfg: Conv4Config) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        previous = cfg.in_channels or 3
        for i, width in enumerate(cfg.channels):
            last = i == len(cfg.channels) - 1
            blocks.append(nn.Sequential(
                nn.Conv2d(previous, width, kernel_size=3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.AdaptiveAvgPool2d(1) if last else nn.AvgPool2d(kernel_size=2, stride=2),
            ))
            previous = width
        self.blocks = nn.Sequential(*blocks)
        self.num_features = previous
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).flatten(1)

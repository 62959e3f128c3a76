"""Time one checkpoint save and one load (model + optimizer + scheduler + RNG) for a few models.

    python benchmarks/checkpoint_overhead.py
"""

import tempfile
import time
from pathlib import Path

import torch

from ssl_kit.backbones import ConvNet, ConvNetConfig, ResNetConfig, resnet18, resnet50
from ssl_kit.checkpoint import load_checkpoint, save_checkpoint
from ssl_kit.methods.simclr import SimCLR, SimCLRConfig


def measure(name, backbone, repeats=3):
    method = SimCLR(backbone, SimCLRConfig())
    optimizer = torch.optim.SGD(method.parameters(), lr=0.1, momentum=0.9)
    for p in method.parameters():  # populate the momentum buffers
        p.grad = torch.zeros_like(p)
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        saves, loads = [], []
        for step in range(1, repeats + 1):
            t = time.perf_counter()
            path = save_checkpoint(Path(tmp), step, {"": method}, optimizer, scheduler, {"step": step, "skipped_nonfinite": 0},
                                   keep=2, is_main=True, rank=0, barrier=lambda: None)
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            load_checkpoint(path, {"": method}, optimizer, scheduler, rank=0)
            loads.append(time.perf_counter() - t)
        size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    params = sum(p.numel() for p in method.parameters()) / 1e6
    print(f"| {name} | {params:.1f} M | {size:.1f} MiB | {1000 * min(saves):.0f} ms | {1000 * min(loads):.0f} ms |")


if __name__ == "__main__":
    print("| method (SimCLR head) | parameters | checkpoint size | save | load |")
    print("|---|---|---|---|---|")
    measure("convnet (quickstart)", ConvNet(ConvNetConfig(in_channels=1)))
    measure("ResNet-18 CIFAR stem", resnet18(ResNetConfig(cifar_stem=True)))
    measure("ResNet-50", resnet50(ResNetConfig()))

"""ssl_kit plugin: a method with its own loss, a backbone, a dataset and a recipe."""

import dataclasses
from importlib.resources import files

import torch

from ssl_kit import hookimpl, register_recipe_folder
from ssl_kit.config import knob
from ssl_kit.data import TensorImages

from ssl_kit_example.method import AlignUniform, AlignUniformConfig, align_uniform_loss

__all__ = ["AlignUniform", "AlignUniformConfig", "align_uniform_loss"]


@dataclasses.dataclass
class TinyMLPConfig:
    hidden: int = knob(64, "hidden width", min=1)
    in_channels: int | None = knob(None, "input channels (default: the dataset's)", min=1)
    image_size: int = knob(16, "input side in px", min=1)


def tiny_mlp(cfg: TinyMLPConfig) -> torch.nn.Module:
    """Flatten -> Linear -> ReLU: a backbone small enough for tests."""
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear((cfg.in_channels or 3) * cfg.image_size**2, cfg.hidden), torch.nn.ReLU()
    )
    net.num_features = cfg.hidden
    return net


@dataclasses.dataclass
class StripesConfig:
    num_samples: int = knob(128, "images in the train split (test: half)", min=2)
    image_size: int = knob(16, "side in px", min=4)


def stripes(cfg: StripesConfig, split: str) -> TensorImages:
    """Horizontal (label 0) or vertical (label 1) stripes of random period and phase."""
    n = cfg.num_samples if split == "train" else cfg.num_samples // 2
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    labels = torch.arange(n) % 2
    period = torch.randint(2, 6, (n, 1, 1), generator=g)
    phase = torch.randint(0, 6, (n, 1, 1), generator=g)
    grid = torch.arange(cfg.image_size).view(1, -1, 1).expand(n, -1, cfg.image_size)
    grid = torch.where(labels.view(-1, 1, 1) == 0, grid, grid.transpose(1, 2))
    images = (((grid + phase) // period) % 2 * 255).to(torch.uint8).unsqueeze(1).expand(-1, 3, -1, -1)
    return TensorImages(images.contiguous(), labels, mean=(0.5,) * 3, std=(0.5,) * 3, num_classes=2,
                        description=f"stripes, {split} split ({n} images)")


@hookimpl
def register_methods(register):
    register("align_uniform", AlignUniform, config=AlignUniformConfig)


@hookimpl
def register_backbones(register):
    register("tiny_mlp", tiny_mlp, config=TinyMLPConfig)


@hookimpl
def register_datasets(register):
    register("stripes", stripes, config=StripesConfig)


@hookimpl
def register_recipes(register):
    register_recipe_folder(register, files("ssl_kit_example") / "recipes")

"""ssl_kit's built-in components, registered through the same hooks as any plugin.

The registry imports this module by name (``ssl_kit.plugins.BUILTIN_PLUGINS``), exactly as it
loads an installed plugin's entry point; no other module imports it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ssl_kit import backbones as b
from ssl_kit.data import folders, hf, presets, sources
from ssl_kit.data import torchvision_sources as tv
from ssl_kit.eval import evaluators as e
from ssl_kit.hooks import Register, hookimpl, register_recipe_folder
from ssl_kit.methods.byol import BYOL, BYOLConfig
from ssl_kit.methods.moco import MoCo, MoCoConfig
from ssl_kit.methods.simclr import SimCLR, SimCLRConfig
from ssl_kit.methods.simsiam import SimSiam, SimSiamConfig


@hookimpl
def register_methods(register: Register) -> None:
    register("simclr", SimCLR, config=SimCLRConfig)
    register("mocov2plus", MoCo, config=MoCoConfig)
    register("byol", BYOL, config=BYOLConfig)
    register("simsiam", SimSiam, config=SimSiamConfig)


@hookimpl
def register_backbones(register: Register) -> None:
    register("resnet18", b.resnet18, config=b.ResNetConfig)
    register("resnet34", b.resnet34, config=b.ResNetConfig)
    register("resnet50", b.resnet50, config=b.ResNetConfig)
    register("timm", b.timm_backbone, config=b.TimmConfig)
    register("convnet", b.ConvNet, config=b.ConvNetConfig)


@hookimpl
def register_datasets(register: Register) -> None:
    register("digits", sources.digits, config=sources.DigitsConfig)
    register("fake", sources.fake, config=sources.FakeConfig)
    register("image_folder", sources.image_folder, config=sources.ImageFolderConfig)
    register("cifar10", tv.cifar10, config=tv.TorchvisionConfig)
    register("cifar100", tv.cifar100, config=tv.TorchvisionConfig)
    register("stl10", tv.stl10, config=tv.TorchvisionConfig)
    register("imagenet100", folders.imagenet100, config=folders.ImageNet100Config)
    register("tinyimagenet", folders.tinyimagenet, config=folders.TinyImageNetConfig)
    register("hf", hf.hf, config=hf.HFConfig)


@hookimpl
def register_evaluators(register: Register) -> None:
    register("knn", e.KNNEvaluator, config=e.KNNConfig)
    register("linear", e.LinearEvaluator, config=e.LinearConfig)
    register("linear_torch", e.LinearTorchEvaluator, config=e.LinearTorchConfig)


@hookimpl
def register_view_presets(register: Register) -> None:
    for name, factory in presets.BUILTIN_PRESETS.items():
        register(name, factory)


def recipe_folder() -> Path | None:
    """Where ssl_kit's own recipes are: package data in an installed wheel (ssl_kit.recipes,
    built from the clone's recipes/ folder), or the clone's recipes/ folder in an editable install."""
    spec = importlib.util.find_spec("ssl_kit.recipes")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    clone = Path(__file__).resolve().parent.parent / "recipes"
    return clone if clone.is_dir() else None


@hookimpl
def register_recipes(register: Register) -> None:
    folder = recipe_folder()
    if folder is not None:
        register_recipe_folder(register, folder)

"""ssl_kit's built-in components, registered through the same hooks as any plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ssl_kit.plugins import hookimpl

Register = Callable[..., Any]


@hookimpl
def register_methods(register: Register) -> None:
    from ssl_kit.methods.byol import BYOL, BYOLConfig
    from ssl_kit.methods.moco import MoCo, MoCoConfig
    from ssl_kit.methods.simclr import SimCLR, SimCLRConfig
    from ssl_kit.methods.simsiam import SimSiam, SimSiamConfig

    register("simclr", SimCLR, config=SimCLRConfig)
    register("mocov2plus", MoCo, config=MoCoConfig)
    register("byol", BYOL, config=BYOLConfig)
    register("simsiam", SimSiam, config=SimSiamConfig)


@hookimpl
def register_backbones(register: Register) -> None:
    from ssl_kit import backbones as b

    register("resnet18", b.resnet18, config=b.ResNetConfig)
    register("resnet34", b.resnet34, config=b.ResNetConfig)
    register("resnet50", b.resnet50, config=b.ResNetConfig)
    register("timm", b.timm_backbone, config=b.TimmConfig)
    register("convnet", b.ConvNet, config=b.ConvNetConfig)


@hookimpl
def register_datasets(register: Register) -> None:
    from ssl_kit.data import sources as s

    register("digits", s.digits, config=s.DigitsConfig)
    register("fake", s.fake, config=s.FakeConfig)
    register("image_folder", s.image_folder, config=s.ImageFolderConfig)

    from ssl_kit.data import folders, hf
    from ssl_kit.data import torchvision_sources as tv

    register("cifar10", tv.cifar10, config=tv.TorchvisionConfig)
    register("cifar100", tv.cifar100, config=tv.TorchvisionConfig)
    register("stl10", tv.stl10, config=tv.TorchvisionConfig)
    register("imagenet100", folders.imagenet100, config=folders.ImageNet100Config)
    register("tinyimagenet", folders.tinyimagenet, config=folders.TinyImageNetConfig)
    register("hf", hf.hf, config=hf.HFConfig)


@hookimpl
def register_evaluators(register: Register) -> None:
    from ssl_kit.eval import evaluators as e

    register("knn", e.KNNEvaluator, config=e.KNNConfig)
    register("linear", e.LinearEvaluator, config=e.LinearConfig)
    register("linear_torch", e.LinearTorchEvaluator, config=e.LinearTorchConfig)


@hookimpl
def register_view_presets(register: Register) -> None:
    from ssl_kit.data.views import BUILTIN_PRESETS

    for name, factory in BUILTIN_PRESETS.items():
        register(name, factory)


def recipe_folder() -> Path | None:
    """Where ssl_kit's own recipes are: package data in an installed wheel (ssl_kit.recipes,
    built from the clone's recipes/ folder), or the clone's recipes/ folder in an editable install."""
    import importlib.util

    spec = importlib.util.find_spec("ssl_kit.recipes")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    clone = Path(__file__).resolve().parent.parent / "recipes"
    return clone if clone.is_dir() else None


def _is_pointer(path: Path) -> bool:
    """A clone's ``recipes/<name>.toml`` holding ``extends = "<name>"`` points at a plugin's recipe
    of that name (ssl_kit.recipe's module doc); it is not a recipe of ssl_kit's own."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f).get("extends") == path.stem
    except (OSError, ValueError):
        return False  # reading it as a recipe reports the problem


@hookimpl
def register_recipes(register: Register) -> None:
    folder = recipe_folder()
    for path in sorted(folder.glob("*.toml")) if folder else []:
        # partial recipes (used only through `extends`) and pointers to plugins' recipes
        if not path.name.startswith("_") and not _is_pointer(path):
            register(path.stem, str(path))

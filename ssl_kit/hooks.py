"""The plugin API: hook specifications, the ``hookimpl`` marker, and a recipe-folder helper.

A plugin is any module with ``@hookimpl`` functions, found through the entry-point group
``ssl_kit``::

    [project.entry-points.ssl_kit]
    relic = "ssl_kit_relic"

Each hook receives a ``register`` callback: ``register(name, factory, config=ConfigDataclass)``.
ssl_kit's own built-ins (the module ``ssl_kit.builtin``) are loaded by name and register through
the very same hooks. This module is a leaf: components import it, it imports no component.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pluggy

from ssl_kit.errors import RecipeError
from ssl_kit.io import read_toml

PROJECT = "ssl_kit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``register(name, factory, config=None)``: what every hook receives.
Register = Callable[..., None]

#: Component kinds, each with its hook ``register_<kind>``.
KINDS = ("methods", "backbones", "datasets", "evaluators", "view_presets", "recipes")
SINGULAR = {
    "methods": "method",
    "backbones": "backbone",
    "datasets": "dataset",
    "evaluators": "evaluator",
    "view_presets": "view preset",
    "recipes": "recipe",
}


class HookSpecs:
    """Hook specifications. Each hook gets ``register(name, factory, config=None)``."""

    @hookspec
    def register_methods(self, register: Register) -> None:
        """Register methods: ``factory(backbone, cfg) -> ssl_kit.Method``."""

    @hookspec
    def register_backbones(self, register: Register) -> None:
        """Register backbones: ``factory(cfg) -> nn.Module`` with ``num_features``."""

    @hookspec
    def register_datasets(self, register: Register) -> None:
        """Register datasets: ``factory(cfg, split) -> ssl_kit.data.ImageDataset`` (items are dicts,
        ``dataset.info`` a :class:`ssl_kit.spec.DatasetInfo`)."""

    @hookspec
    def register_evaluators(self, register: Register) -> None:
        """Register evaluators: ``factory(cfg) -> evaluator`` (see ssl_kit.eval.evaluators)."""

    @hookspec
    def register_view_presets(self, register: Register) -> None:
        """Register augmentation presets: ``factory(ViewContext) -> list of transforms``."""

    @hookspec
    def register_recipes(self, register: Register) -> None:
        """Register recipes by name: ``register(name, path_to_toml)``."""


def is_pointer(path: Path) -> bool:
    """Whether a recipe file only points at another package's recipe of its own name: a clone's
    ``recipes/relic.toml`` holding ``extends = "relic"`` (see ssl_kit.recipe)."""
    try:
        return read_toml(path).get("extends") == path.stem
    except RecipeError:
        return False  # reading it as a recipe reports the problem


def register_recipe_folder(register: Register, folder: str | os.PathLike[str]) -> list[str]:
    """Register every ``*.toml`` of ``folder`` by its stem, and return the names.

    Skipped: files starting with ``_`` (partial recipes, used only through ``extends``) and
    pointers (:func:`is_pointer`). A plugin calls it from its ``register_recipes`` hook::

        @hookimpl
        def register_recipes(register):
            register_recipe_folder(register, importlib.resources.files("ssl_kit_mymethod") / "recipes")
    """
    names: list[str] = []
    for path in sorted(Path(str(folder)).glob("*.toml")):  # files("pkg") / "recipes" is a Path once installed
        if not path.name.startswith("_") and not is_pointer(path):
            names.append(path.stem)
            register(path.stem, str(path))
    return names

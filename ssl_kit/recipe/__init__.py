"""Recipes: TOML -> validated, typed configuration.

A recipe has one table per component (``[method]``, ``[backbone]``, ``[data]``, ``[views]``,
``[optim]``, ``[train]``, ``[eval]``, ``[expected]``, ``[hub]``). ``[method]``, ``[backbone]`` and ``[data]``
name a registered component (``name = "simclr"``) and add that component's own keys; every table
is checked against its config dataclass, so an unknown key, a wrong type or an out-of-range value is
an error naming the file, the table, the key and what is allowed.

``extends = "base"`` (a path relative to the recipe, or a registered recipe name) deep-merges the
recipe over its base; cycles are an error. A file whose ``extends`` names its own stem (the clone's
``recipes/relic.toml`` holding ``extends = "relic"``) is a pointer to the registered recipe of that
name, which a plugin ships as package data: one copy of each recipe, runnable by path from a clone. Command-line overrides ``section.key=value`` are applied
last; values are parsed as TOML (``train.epochs=5``, ``eval.baselines=["raw"]``) and fall back to
plain strings (``data.name=digits``).
"""

from ssl_kit.recipe.loading import apply_override, deep_merge, find_recipe, load_recipe, parse_override, recipe_from_tree
from ssl_kit.recipe.schema import (
    SECTIONS,
    DataConfig,
    EvalConfig,
    ExpectedConfig,
    HubConfig,
    OptimConfig,
    Recipe,
    TrainConfig,
)

__all__ = [
    "SECTIONS",
    "DataConfig",
    "EvalConfig",
    "ExpectedConfig",
    "HubConfig",
    "OptimConfig",
    "Recipe",
    "TrainConfig",
    "apply_override",
    "deep_merge",
    "find_recipe",
    "load_recipe",
    "parse_override",
    "recipe_from_tree",
]

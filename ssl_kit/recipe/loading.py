"""Reading recipes: find a file or a registered name, read TOML, merge ``extends``, apply
command-line overrides, then validate (:mod:`ssl_kit.recipe.validation`)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ssl_kit.errors import RecipeError, UserError, did_you_mean
from ssl_kit.io import TOMLDecodeError, loads_toml, read_toml
from ssl_kit.plugins import get_registry
from ssl_kit.recipe.schema import SECTIONS, Recipe
from ssl_kit.recipe.validation import validate


def find_recipe(source: str) -> Path:
    """A recipe path, or the file of a registered recipe name."""
    path = Path(source)
    if path.is_file():
        return path
    if path.suffix == ".toml" or "/" in source or "\\" in source:
        raise UserError(f"recipe file '{source}' not found")
    registry = get_registry()
    names = registry.names("recipes")
    if source in names:
        return Path(registry.get("recipes", source).factory)
    raise UserError(
        f"'{source}' is neither a recipe file nor a registered recipe.{did_you_mean(source, names)} "
        f"Registered recipes: {', '.join(names) or '(none)'} (python -m ssl_kit recipes)"
    )


COMPONENT_TABLES = ("method", "backbone", "data")


def deep_merge(base: dict[str, Any], child: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """``child`` over ``base``; tables merge key by key, anything else is replaced. A component
    table ([method], [backbone], [data]) whose ``name`` changes replaces the base table: the base's
    keys belong to another component."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        base_value = out.get(key)
        renamed = (
            top and key in COMPONENT_TABLES and isinstance(value, dict) and isinstance(base_value, dict)
            and "name" in value and value["name"] != base_value.get("name")
        )
        if renamed:
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(base_value, dict):
            out[key] = deep_merge(base_value, value, top=False)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_tree(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise RecipeError(f"{path}: 'extends' forms a cycle: {cycle}")
    tree = read_toml(path)
    base = tree.pop("extends", None)
    if base is None:
        return tree
    if not isinstance(base, str):
        raise RecipeError(f"{path}: 'extends' must be a string (a recipe path or name), got {base!r}")
    candidate = path.parent / base
    if base == path.stem:  # a pointer to the plugin recipe of this name
        try:
            base_path = find_recipe(base)
        except UserError:
            hint = tree.get("description") or f"install the plugin that provides recipe '{base}'"
            raise RecipeError(
                f"{path}: points at recipe '{base}', which no installed plugin registers: {hint}"
            ) from None
        if base_path.resolve() == resolved:
            raise RecipeError(f"{path}: 'extends' names the file itself")
    elif candidate.is_file():
        base_path = candidate
    elif (path.parent / f"{base}.toml").is_file():
        base_path = path.parent / f"{base}.toml"
    else:
        try:
            base_path = find_recipe(base)
        except UserError as err:
            raise RecipeError(f"{path}: extends '{base}': {err}") from None
    return deep_merge(_load_tree(base_path, (*chain, resolved)), tree)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.epochs=5'`` -> (['train', 'epochs'], 5)."""
    if "=" not in text:
        raise RecipeError(
            f"override '{text}' is not of the form section.key=value (e.g. train.epochs=5)"
        )
    key, value_text = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(p.strip() for p in parts):
        raise RecipeError(
            f"override '{text}': the key must be section.key (e.g. train.epochs=5), got '{key}'"
        )
    try:
        value = loads_toml(f"v = {value_text.strip()}")["v"]
    except TOMLDecodeError:
        value = value_text.strip()  # a bare word is a string: data.name=digits
    return [p.strip() for p in parts], value


def apply_override(tree: dict[str, Any], parts: list[str], value: Any, text: str) -> None:
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise RecipeError(f"override '{text}': '{where}' is a value, not a table")
        node = child
    node[parts[-1]] = value


def load_recipe(source: str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, merge, override and validate a recipe (a path or a registered name)."""
    path = find_recipe(source)
    tree = _load_tree(path)
    override_keys: dict[str, str] = {}
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] not in SECTIONS:
            raise RecipeError(
                f"override '{text}': unknown section '{parts[0]}'.{did_you_mean(parts[0], SECTIONS)} "
                f"Sections: {', '.join(SECTIONS)}"
            )
        apply_override(tree, parts, value, text)
        override_keys[".".join(parts)] = text
    name = path.stem
    try:
        return validate(tree, str(path), name)
    except RecipeError as err:
        key = getattr(err, "key", None)
        if key in override_keys:
            raise RecipeError(f"{err} (from override '{override_keys[key]}')") from None
        section = key.split(".")[0] if key else ""
        if section in COMPONENT_TABLES and f"{section}.name" in override_keys:
            raise RecipeError(
                f"{err}: the override '{override_keys[section + '.name']}' switched [{section}] to another "
                f"component but kept the recipe's other [{section}] keys, which belong to the old one; write a "
                f"child recipe with its own [{section}] table (it replaces the base's)") from None
        raise


def recipe_from_tree(tree: dict[str, Any], source: str, name: str) -> Recipe:
    """Validate an already-read recipe tree (e.g. the one stored in an export's config.json)."""
    return validate(copy.deepcopy(tree), source, name)

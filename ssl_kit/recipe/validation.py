"""Validation: a merged recipe tree -> :class:`~ssl_kit.recipe.schema.Recipe`, every table checked
against its config dataclass (the core's, or the registered component's)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ssl_kit.config import build_config
from ssl_kit.errors import RecipeError, UserError, did_you_mean
from ssl_kit.plugins import get_registry
from ssl_kit.recipe.schema import SECTIONS, TOP_LEVEL_KEYS, DataConfig, EvalConfig, ExpectedConfig, HubConfig
from ssl_kit.recipe.schema import OptimConfig, Recipe, TrainConfig
from ssl_kit.spec import ViewSpec


def _error(message: str, key: str | None = None) -> RecipeError:
    err = RecipeError(message)
    err.key = key  # type: ignore[attr-defined]
    return err


def _table(tree: dict[str, Any], section: str, where: str, required: bool) -> dict[str, Any]:
    value = tree.get(section)
    if value is None:
        if required:
            raise _error(f"{where}: missing table [{section}]")
        return {}
    if not isinstance(value, dict):
        raise _error(f"{where}: '{section}' must be a table ([{section}]), got {value!r}", section)
    return dict(value)


def _named(table: dict[str, Any], section: str, where: str) -> str:
    name = table.pop("name", None)
    if name is None:
        raise _error(f"{where}: [{section}] missing required key 'name'", f"{section}.name")
    if not isinstance(name, str):
        raise _error(f"{where}: [{section}] key 'name' must be a string, got {name!r}", f"{section}.name")
    return name


def _build(cls: type, values: dict[str, Any], where: str, section: str) -> Any:
    try:
        return build_config(cls, values, f"{where}: [{section}]")
    except RecipeError as err:
        bad = next((k for k in values if f"'{k}'" in str(err)), None)
        raise _error(str(err), f"{section}.{bad}" if bad else None) from None


def validate(tree: dict[str, Any], where: str, name: str) -> Recipe:
    """Check every table of ``tree`` (read from ``where``) and build the recipe ``name``; a
    :class:`RecipeError` (``err.key`` names the dotted key at fault) for the first problem."""
    for key, value in tree.items():
        if key in SECTIONS or key in TOP_LEVEL_KEYS:
            continue
        hint = did_you_mean(key, SECTIONS + TOP_LEVEL_KEYS)
        kind = "table" if isinstance(value, dict) else "key"
        raise _error(f"{where}: unknown top-level {kind} '{key}'.{hint} Allowed: {', '.join(SECTIONS)}, {', '.join(TOP_LEVEL_KEYS)}", key)
    registry = get_registry()

    def component(kind: str, section: str) -> tuple[str, Any]:
        table = _table(tree, section, where, required=True)
        comp_name = _named(table, section, where)
        try:
            comp = registry.get(kind, comp_name, where=f"{where}: [{section}]")
        except UserError as err:
            raise _error(str(err), f"{section}.name") from None
        if comp.config is None:
            if table:
                raise _error(f"{where}: [{section}] '{comp_name}' takes no options, got {sorted(table)}")
            return comp_name, None
        return comp_name, _build(comp.config, table, where, section)

    method_name, method_cfg = component("methods", "method")
    backbone_name, backbone_cfg = component("backbones", "backbone")

    data_table = _table(tree, "data", where, required=True)
    data_name = _named(dict(data_table), "data", where)
    try:
        data_comp = registry.get("datasets", data_name, where=f"{where}: [data]")
    except UserError as err:
        raise _error(str(err), "data.name") from None
    core_keys = {f.name for f in dataclasses.fields(DataConfig)}
    dataset_fields = {f.name for f in dataclasses.fields(data_comp.config)} if data_comp.config else set()
    for key in data_table:
        if key not in core_keys and key not in dataset_fields:
            known = sorted(core_keys | dataset_fields)
            raise _error(
                f"{where}: [data] unknown key '{key}' for dataset '{data_name}'.{did_you_mean(key, known)} "
                f"Known keys: {', '.join(known)}",
                f"data.{key}",
            )
    data_cfg = _build(DataConfig, {k: v for k, v in data_table.items() if k in core_keys}, where, "data")
    dataset_values = {k: v for k, v in data_table.items() if k not in core_keys}
    dataset_cfg = _build(data_comp.config, dataset_values, where, "data") if data_comp.config else None

    views = _table(tree, "views", where, required=False)
    _build(ViewSpec, views, where, "views")  # validate now; merged over the method's spec later
    preset = views.get("preset")
    if preset is not None:
        try:
            registry.get("view_presets", preset, where=f"{where}: [views] preset:")
        except UserError as err:
            raise _error(str(err), "views.preset") from None

    optim = _build(OptimConfig, _table(tree, "optim", where, required=True), where, "optim")
    train = _build(TrainConfig, _table(tree, "train", where, required=False), where, "train")

    eval_table = _table(tree, "eval", where, required=False)
    eval_core = {f.name for f in dataclasses.fields(EvalConfig)}
    eval_cfg = _build(EvalConfig, {k: v for k, v in eval_table.items() if k in eval_core}, where, "eval")
    evaluators: dict[str, Any] = {}
    for ev_name in eval_cfg.evaluators:
        try:
            comp = registry.get("evaluators", ev_name, where=f"{where}: [eval] evaluators:")
        except UserError as err:
            raise _error(str(err), "eval.evaluators") from None
        sub = eval_table.get(ev_name, {})
        if not isinstance(sub, dict):
            raise _error(f"{where}: [eval] '{ev_name}' must be a table ([eval.{ev_name}])", f"eval.{ev_name}")
        evaluators[ev_name] = _build(comp.config, sub, where, f"eval.{ev_name}") if comp.config else None
    for key, value in eval_table.items():
        if key not in eval_core and key not in evaluators:
            hint = did_you_mean(key, sorted(eval_core) + registry.names("evaluators"))
            what = (
                f"table [eval.{key}] configures evaluator '{key}', which is not in eval.evaluators"
                if isinstance(value, dict)
                else f"unknown key '{key}'"
            )
            raise _error(f"{where}: [eval] {what}.{hint} Known keys: {', '.join(sorted(eval_core))}", f"eval.{key}")

    expected_table = _table(tree, "expected", where, required=False)
    expected = _build(ExpectedConfig, expected_table, where, "expected") if expected_table else None
    hub = _build(HubConfig, _table(tree, "hub", where, required=False), where, "hub")

    if data_cfg.batch_size < 2:
        raise _error(f"{where}: [data] key 'batch_size' must be >= 2 for self-supervised training", "data.batch_size")
    if hub.push and not train.export:
        raise _error(f"{where}: [hub] push = true needs [train] export = true (push uploads the export)", "hub.push")
    return Recipe(
        name=name,
        source=where,
        raw=tree,
        method_name=method_name,
        method=method_cfg,
        backbone_name=backbone_name,
        backbone=backbone_cfg,
        data=data_cfg,
        dataset=dataset_cfg,
        views=views,
        optim=optim,
        train=train,
        eval=eval_cfg,
        evaluators=evaluators,
        expected=expected,
        hub=hub,
    )

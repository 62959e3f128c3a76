"""The bodies of the CLI's commands (argument parsing is :mod:`ssl_kit.cli`'s).

Each takes plain values, prints what the user asked for, and raises
:class:`~ssl_kit.errors.UserError` for mistakes the user can fix.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from ssl_kit.build import build, build_dataset, restore
from ssl_kit.checkpoint import list_checkpoints
from ssl_kit.docs import reference_markdown
from ssl_kit.errors import CheckpointError, UserError, one_line
from ssl_kit.evaluation import evaluate_run
from ssl_kit.export import CONFIG, WEIGHTS, encoder_inputs, export_encoder, read_config, write_model_card
from ssl_kit.hub import export_dir_of, push_to_hub, resolve
from ssl_kit.io import dumps_toml, loads_toml, make_folder
from ssl_kit.loading import load_encoder
from ssl_kit.plugins import get_registry
from ssl_kit.recipe import load_recipe, parse_override
from ssl_kit.reference import api_markdown
from ssl_kit.run import run


def train(recipe_source: str, overrides: list[str]) -> dict[str, Any]:
    """``python -m ssl_kit [train] RECIPE [overrides]``."""
    return run(load_recipe(recipe_source, overrides))


def validate(recipe_source: str, overrides: list[str]) -> None:
    """``python -m ssl_kit validate RECIPE [overrides]``: the resolved recipe on stdout."""
    recipe = load_recipe(recipe_source, overrides)
    print(dumps_toml(recipe.resolved()), end="")
    print(f"# {recipe.source}: valid", file=sys.stderr)


def plugins(as_json: bool) -> None:
    """``python -m ssl_kit plugins [--json]``: plugin distributions and what they provide."""
    registry = get_registry()
    if as_json:
        print(json.dumps([p.as_dict() for p in registry.plugins], indent=2))
        return
    for p in registry.plugins:
        status = p.status if p.status != "failed" else f"failed: {p.error}"
        if not p.compatible:
            status += f" (INCOMPATIBLE: requires ssl-kit{p.requires_core})"
        print(f"{p.distribution} {p.version} (entry point '{p.name}'): {status}")
        for kind, names in p.provides.items():
            print(f"  {kind:13s} {', '.join(sorted(names))}")


def recipes(as_json: bool) -> None:
    """``python -m ssl_kit recipes [--json]``: registered recipes, their package and file."""
    registry = get_registry()
    rows = [{"name": n, "path": str(c.factory), "plugin": c.plugin.distribution}
            for n in registry.names("recipes") for c in [registry.get("recipes", n)]]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(f"{row['name']:28s} {row['plugin']:24s} {row['path']}")


def describe(all_plugins: bool, api: bool = False) -> None:
    """``python -m ssl_kit describe [--all | --api]``: the reference of every recipe key, or of the
    Python API a plugin uses (markdown; docs/recipes.md and docs/reference.md are its output)."""
    print(api_markdown() if api else reference_markdown(plugins=all_plugins), end="")


def _run_dir(run_dir: Path) -> Path:
    if not run_dir.is_dir():
        raise UserError(f"run directory '{run_dir}' does not exist")
    if not (run_dir / "recipe.toml").is_file():
        raise UserError(f"'{run_dir}' is not a run directory (no recipe.toml); pass the train.output_dir of a run")
    return run_dir


def _newest_checkpoint(run_dir: Path, to: str) -> Path:
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise CheckpointError(f"run '{run_dir}' has no complete checkpoint to {to} (checkpoints/step_N)")
    return checkpoints[-1]


def export(run_dir: str | Path, out: str | Path | None = None, full_method: bool = False) -> Path:
    """``python -m ssl_kit export RUN_DIR [--out DIR] [--full-method]``: rebuild the method from the
    run's recipe.toml and newest checkpoint, export the encoder (and the method), write the card."""
    run_dir = _run_dir(Path(run_dir))
    newest = _newest_checkpoint(run_dir, "export")
    out_dir = Path(out) if out is not None else run_dir / "export"
    make_folder(out_dir, "--out")
    results_file = run_dir / "results.json"
    try:
        results = json.loads(results_file.read_text()) if results_file.exists() else {}
    except json.JSONDecodeError as err:
        raise UserError(f"'{results_file}' is not valid JSON: {one_line(err)}") from None
    recipe = load_recipe(str(run_dir / "recipe.toml"))
    recipe = dataclasses.replace(recipe, name=results.get("recipe") or run_dir.name)
    info = build_dataset(recipe, recipe.data.train_split).info
    method, _ = restore(recipe, newest, info)
    results.setdefault("steps", int(newest.name[5:]))
    export_encoder(method, recipe, out_dir, results, encoder_inputs(info, method.views),
                   full_method=full_method or recipe.hub.full_method)
    write_model_card(out_dir, results, recipe.resolved())
    print(f"exported {newest.name} of {run_dir} to {out_dir}")
    return out_dir


def push(run_or_export_dir: str | Path, repo_id: str, private: bool = False, create_pr: bool = False,
         revision: str | None = None) -> str:
    """``python -m ssl_kit push RUN_OR_EXPORT_DIR --repo-id user/name [--private] [--create-pr]
    [--revision BRANCH]``."""
    url = push_to_hub(run_or_export_dir, repo_id, private=private, create_pr=create_pr, revision=revision)
    print(f"pushed {export_dir_of(run_or_export_dir)} to {repo_id}: {url}")
    return url


def _keep_evaluators(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Drop the stored settings tables of evaluators that an override removes from eval.evaluators."""
    chosen = None
    for text in overrides:
        parts, value = parse_override(text)
        if parts == ["eval", "evaluators"] and isinstance(value, list):
            chosen = set(value)
    section = tree.get("eval", {})
    if chosen is not None:
        for key in [k for k, v in section.items() if isinstance(v, dict) and k not in chosen]:
            del section[key]
    return tree


def evaluate(target: str, evaluators: list[str] | None = None, overrides: list[str] = (),
             out: str | None = None) -> dict[str, Any]:
    """``python -m ssl_kit eval TARGET [--evaluator NAME ...] [--out DIR] [section.key=value ...]``.

    TARGET is a run directory (its recipe.toml and newest checkpoint: the full method, so
    ``eval.features`` and the online probe work), an export folder (config.json +
    model.safetensors: the exported encoder), or a Hub id of an export. Overrides change the
    evaluation: ``eval.*`` keys, another dataset (``data.name=...`` and its keys). Writes
    recipe.toml, results.json, results.md and plots/ into ``out`` (default: ``<target>/eval``;
    ``runs/eval/<user>--<name>`` for a Hub id).
    """
    path = Path(target)
    if not path.exists():
        if target.count("/") != 1 or target.startswith((".", "/")):
            raise UserError(f"'{target}' is not a run directory, an export folder or a Hub id (user/name)")
        path = resolve(target, None, (CONFIG, WEIGHTS))
        default_out = Path("runs") / "eval" / target.replace("/", "--")
    else:
        default_out = path / "eval"
    if (path / "recipe.toml").is_file() and not (path / CONFIG).is_file():
        kind, tree_text = "run", (path / "recipe.toml").read_text()
    elif (path / CONFIG).is_file():
        config = read_config(path)
        if not isinstance(config.get("recipe"), dict):
            raise UserError(f"export '{path}': config.json holds no recipe to evaluate with")
        kind, tree_text = "export", dumps_toml(config["recipe"])
    else:
        raise UserError(f"'{path}' holds neither recipe.toml (a run directory) nor config.json (an export folder)")
    out_dir = Path(out) if out else default_out
    make_folder(out_dir, "--out")
    overrides = ([f"eval.evaluators={json.dumps(list(evaluators))}"] if evaluators else []) + list(overrides)
    (out_dir / "recipe.toml").write_text(dumps_toml(_keep_evaluators(loads_toml(tree_text), overrides)))
    recipe = load_recipe(str(out_dir / "recipe.toml"), [*overrides, "eval.enabled=true"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder = probe = None
    if kind == "run":
        info = build_dataset(recipe, recipe.eval.train_split).info
        method, probe = restore(recipe, _newest_checkpoint(path, "evaluate"), info)
        views, method = method.views, method.to(device)
    else:
        method, views = None, build(recipe, recipe.eval.train_split).views
        encoder = load_encoder(path).to(device).eval()
    results = evaluate_run(recipe, method, views, out_dir, device, encoder=encoder, probe=probe,
                           log_file=path / "log.jsonl" if kind == "run" else None)
    results["evaluated"] = {"kind": kind, "target": target}
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"evaluation written to {out_dir}")
    return results

"""``python -m ssl_kit eval TARGET [--evaluator NAME ...] [--out DIR] [section.key=value ...]``.

TARGET is a run directory (its recipe.toml and newest checkpoint: the full method, so
``eval.features`` and the online probe work), an export folder (config.json + model.safetensors:
the exported encoder), or a Hugging Face Hub id of an export (when online). Overrides change the
evaluation: ``eval.*`` keys, another dataset (``data.name=...`` and its keys), ``eval.baselines``.
Writes recipe.toml (the evaluation's recipe), results.json, results.md and plots/ into ``--out``
(default: ``<run dir>/eval`` or ``<export>/eval``; ``runs/eval/<repo>`` for a Hub id).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from ssl_kit.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _load_run(run_dir: Path, recipe: Any) -> torch.nn.Module:
    """The run's method with the weights of its newest checkpoint (online probe included)."""
    from safetensors.torch import load_file

    from ssl_kit.checkpoint import list_checkpoints
    from ssl_kit.eval.online import OnlineProbe
    from ssl_kit.trainer import build_dataset, build_method

    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise UserError(f"run directory '{run_dir}' has no checkpoint to evaluate (checkpoints/step_N)")
    channels = getattr(build_dataset(recipe, recipe.eval.train_split), "channels", 3)
    method = build_method(recipe, channels)
    try:
        state = load_file(str(checkpoints[-1] / "model.safetensors"))
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"checkpoint '{checkpoints[-1]}': model.safetensors cannot be read: {err}") from None
    if "online_probe.linear.weight" in state:
        classes, features = state["online_probe.linear.weight"].shape
        method.add_module("online_probe", OnlineProbe(features, classes))
    missing, unexpected = method.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(
            f"checkpoint '{checkpoints[-1]}' does not match the run's recipe (missing keys: {missing[:3]}, "
            f"unexpected keys: {unexpected[:3]})"
        )
    return method


def _keep_evaluators(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Drop the stored settings tables of evaluators that an override removes from eval.evaluators."""
    from ssl_kit.recipe import parse_override

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


def run_eval(target: str, evaluators: list[str] | None = None, overrides: list[str] = (), out: str | None = None) -> dict[str, Any]:
    """Evaluate a run, an export or a Hub export; returns the results dict (also written)."""
    from ssl_kit.checkpoint import load_encoder, read_versioned_json
    from ssl_kit.eval.report import evaluate_run
    from ssl_kit.recipe import dumps_toml, load_recipe
    from ssl_kit.trainer import build_dataset, build_method, view_spec

    path = Path(target)
    if not path.exists():
        if target.count("/") == 1 and not target.startswith((".", "/")):
            from ssl_kit.hub import _resolve

            path = _resolve(target, None, ("config.json", "model.safetensors"))
            default_out = Path("runs") / "eval" / target.replace("/", "--")
        else:
            raise UserError(f"'{target}' is not a run directory, an export folder or a Hub id (user/name)")
    else:
        default_out = path / "eval"
    if (path / "recipe.toml").is_file() and not (path / "config.json").is_file():
        kind, tree_text = "run", (path / "recipe.toml").read_text()
    elif (path / "config.json").is_file():
        config = read_versioned_json(path, "config.json", "export")
        if not isinstance(config.get("recipe"), dict):
            raise UserError(f"export '{path}': config.json holds no recipe to evaluate with")
        kind, tree_text = "export", dumps_toml(config["recipe"])
    else:
        raise UserError(f"'{path}' holds neither recipe.toml (a run directory) nor config.json (an export folder)")
    out_dir = Path(out) if out else default_out
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = ([f"eval.evaluators={json.dumps(list(evaluators))}"] if evaluators else []) + list(overrides)
    (out_dir / "recipe.toml").write_text(dumps_toml(_keep_evaluators(tomllib.loads(tree_text), overrides)))
    recipe = load_recipe(str(out_dir / "recipe.toml"), [*overrides, "eval.enabled=true"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    channels = getattr(build_dataset(recipe, recipe.eval.train_split), "channels", 3)
    if kind == "run":
        method = _load_run(path, recipe).to(device).eval()
        encoder = None
    else:
        method, encoder = None, load_encoder(path).to(device).eval()
    spec = view_spec(method if method is not None else build_method(recipe, channels), recipe)
    log_file = path / "log.jsonl" if kind == "run" else None
    results = evaluate_run(recipe, method, spec, out_dir, channels, device, encoder=encoder, log_file=log_file)
    results["evaluated"] = {"kind": kind, "target": target}
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"evaluation written to {out_dir}")
    return results

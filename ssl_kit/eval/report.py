"""End-of-run evaluation: feature evaluators on the trained encoder and baselines, the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_kit.plugins import get_registry

ROW_NAMES = {"raw": "raw pixels", "random_init": "random init", "trained": "trained"}


def format_table(rows: dict[str, dict[str, float]], columns: list[tuple[str, str]]) -> str:
    """A markdown table: one row per feature source, one column per (title, metric key)."""
    header = ["features"] + [title for title, _ in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row, metrics in rows.items():
        cells = [ROW_NAMES.get(row, row)]
        cells += [f"{metrics[key]:.2f}" if key in metrics else "-" for _, key in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_run(
    recipe: Any, method: nn.Module, spec: Any, run_dir: Path, channels: int, device: Any
) -> dict[str, Any]:
    """Run the recipe's evaluators on the trained encoder (and baselines); print and save."""
    from ssl_kit.eval.features import extract_features
    from ssl_kit.trainer import build_dataset, build_method, eval_transform

    registry = get_registry()
    train_set = build_dataset(recipe, recipe.eval.train_split)
    test_set = build_dataset(recipe, recipe.eval.test_split)
    results: dict[str, Any] = {
        "recipe": recipe.name,
        "method": recipe.method_name,
        "backbone": recipe.backbone_name,
        "data": {
            "train": getattr(train_set, "description", recipe.eval.train_split),
            "test": getattr(test_set, "description", recipe.eval.test_split),
        },
    }
    for key, ds in (("train_indices", train_set), ("test_indices", test_set)):
        if hasattr(ds, "split_indices"):
            results["data"][key] = ds.split_indices
    if getattr(train_set, "labels", None) is None or getattr(test_set, "labels", None) is None:
        results["note"] = "evaluation skipped: the evaluation data has no labels"
        print(f"ssl_kit: {results['note']}")
        return results

    evaluators = {
        name: registry.get("evaluators", name).factory(cfg) for name, cfg in recipe.evaluators.items()
    }
    results["protocols"] = {name: ev.protocol for name, ev in evaluators.items()}
    transform = eval_transform(train_set, spec)
    batch = recipe.eval.batch_size
    sources: dict[str, tuple[nn.Module | None, Any]] = {}
    if "raw" in recipe.eval.baselines:
        native = spec.__class__(**{**spec.__dict__, "global_size": train_set.image_size})
        sources["raw"] = (None, eval_transform(train_set, native))
    if "random_init" in recipe.eval.baselines:
        untrained = build_method(recipe, channels).to(device)
        sources["random_init"] = (untrained.encoder(), transform)
    encoder = method.encoder() if hasattr(method, "encoder") else method.backbone
    sources["trained"] = (encoder, transform)

    rows: dict[str, dict[str, float]] = {}
    for row, (enc, tf) in sources.items():
        train_f, train_y = extract_features(enc, train_set, tf, batch, device)
        test_f, test_y = extract_features(enc, test_set, tf, batch, device)
        rows[row] = {}
        for ev in evaluators.values():
            rows[row].update(ev(train_f, train_y, test_f, test_y))
    results["results"] = rows
    columns = [(ev.protocol, ev.primary) for ev in evaluators.values()]
    table = format_table(rows, columns)
    results["table"] = table
    (run_dir / "results.md").write_text(
        f"# {recipe.name}: {recipe.method_name} on {recipe.data.name}\n\n"
        f"Train: {results['data']['train']}\n\nTest: {results['data']['test']}\n\n{table}\n"
    )
    print("\n" + table + "\n")
    return results

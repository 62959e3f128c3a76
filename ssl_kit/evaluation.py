"""End-of-run evaluation: every evaluator of the recipe on the trained encoder (and the baseline
rows), the online probe's score, results.md and plots.

Feature extraction is sharded over the processes and gathered (``dist``: the run's accelerator);
the evaluators themselves run on the main process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_kit.build import build_dataset, build_method
from ssl_kit.data.presets import build_transform, eval_transform
from ssl_kit.errors import UserError
from ssl_kit.eval import online
from ssl_kit.eval.evaluators import EvalContext
from ssl_kit.eval.features import extract_features, feature_module
from ssl_kit.eval.plots import plot_embedding, plot_training, read_log
from ssl_kit.eval.report import compare_expected, format_table
from ssl_kit.methods.base import Method
from ssl_kit.plugins import get_registry
from ssl_kit.recipe import Recipe
from ssl_kit.spec import DatasetInfo, ViewContext, ViewSpec


def augmentation(info: DatasetInfo, views: ViewSpec) -> Callable[[str], Callable]:
    """``preset name -> training transform`` at the evaluation's image size (model evaluators)."""
    def make(preset: str) -> Callable:
        factory = get_registry().get("view_presets", preset, where="[eval] augment:").factory
        size = views.sizes(info.image_size)[0]
        mean, std = info.normalisation(views.normalize)
        return build_transform(factory(ViewContext("global", 0, size, views.global_scale, info.channels)), mean, std)

    return make


def evaluate_run(
    recipe: Recipe,
    method: Method | None,
    views: ViewSpec,
    out_dir: Path,
    device: Any,
    *,
    encoder: nn.Module | None = None,
    probe: online.OnlineProbe | None = None,
    dist: Any = None,
    log_file: Path | None = None,
) -> dict[str, Any]:
    """Evaluate as the recipe's ``[eval]`` table says and write results.md and plots into
    ``out_dir``. ``method``: the trained method (None when evaluating an export: then ``encoder``);
    ``probe``: its online probe; ``dist``: an accelerator when several processes share the
    extraction. Returns the results on the main process and ``{}`` on the others."""
    rank, world = (dist.process_index, dist.num_processes) if dist is not None else (0, 1)
    main = rank == 0

    def features(module: nn.Module | None, dataset: Any, transform: Callable) -> tuple[torch.Tensor, torch.Tensor]:
        return extract_features(module, dataset, transform, recipe.eval.batch_size, device,
                                rank=rank, world_size=world, gather=dist.gather if dist is not None else None)

    registry = get_registry()
    train_set = build_dataset(recipe, recipe.eval.train_split)
    test_set = build_dataset(recipe, recipe.eval.test_split)
    results: dict[str, Any] = {
        "recipe": recipe.name,
        "method": recipe.method_name,
        "backbone": recipe.backbone_name,
        "features": recipe.eval.features,
        **({"extra_features": list(recipe.eval.extra_features)} if recipe.eval.extra_features else {}),
        "data": {"train": train_set.info.description, "test": test_set.info.description},
    }
    for key, ds in (("train_indices", train_set), ("test_indices", test_set)):
        if ds.info.indices is not None:
            results["data"][key] = list(ds.info.indices)
    if not (train_set.info.labelled and test_set.info.labelled):
        results["note"] = "evaluation skipped: the evaluation data has no labels (label-free data trains fine)"
        if main:
            print(f"ssl_kit: {results['note']}")
        return results if main else {}

    evaluators = {name: registry.get("evaluators", name).factory(cfg) for name, cfg in recipe.evaluators.items()}
    results["protocols"] = {name: ev.protocol for name, ev in evaluators.items()}
    transform = eval_transform(train_set.info, views)
    ctx = EvalContext(transform, device, recipe.eval.batch_size, augmentation(train_set.info, views))
    if method is None and (recipe.eval.features != "encoder" or recipe.eval.extra_features):
        what = f"features = '{recipe.eval.features}'" if recipe.eval.features != "encoder" else "extra_features"
        raise UserError(f"[eval] {what} needs the full method; an export holds only its encoder")
    sources: dict[str, tuple[nn.Module | None, Callable]] = {}
    if "raw" in recipe.eval.baselines:
        sources["raw"] = (None, eval_transform(train_set.info, views, size=train_set.info.image_size))
    if "random_init" in recipe.eval.baselines:
        untrained = build_method(recipe, train_set.info).to(device)
        sources["random_init"] = (feature_module(untrained, recipe.eval.features), transform)
    trained = encoder if method is None else feature_module(method, recipe.eval.features)
    sources["trained"] = (trained, transform)
    if method is not None:
        for choice in recipe.eval.extra_features:
            sources[f"trained:{choice}"] = (feature_module(method, choice), transform)

    rows: dict[str, dict[str, float]] = {}
    kept: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for row, (module, tf) in sources.items():
        train_f, train_y = features(module, train_set, tf)
        test_f, test_y = features(module, test_set, tf)
        if row == "trained":
            kept["test"] = (test_f, test_y)
        rows[row] = {}
        if not main:
            continue
        for ev in evaluators.values():
            if getattr(ev, "kind", "features") == "model":
                if module is not None:
                    rows[row].update(ev(module, train_set, test_set, ctx))
            else:
                rows[row].update(ev(train_f, train_y, test_f, test_y))

    columns = [(ev.protocol, ev.primary) for ev in evaluators.values()]
    if method is not None and probe is not None and int(probe.steps) > 0:  # scored on the online backbone
        test_f, test_y = kept["test"] if trained is method.backbone else features(method.backbone, test_set, transform)
        if main:
            rows["trained"].update(online.score(probe, test_f, test_y))
            results["protocols"]["online_linear"] = online.PROTOCOL
            columns.append(("online linear", online.PRIMARY))
    if not main:
        return {}
    results["results"] = rows
    table = format_table(rows, columns)
    results["table"] = table
    if recipe.expected is not None:
        results["expected"] = compare_expected(recipe.expected, rows.get("trained", {}))
    out_dir.mkdir(parents=True, exist_ok=True)
    protocols = "\n".join(f"- `{name}`: {text}" for name, text in results["protocols"].items())
    (out_dir / "results.md").write_text(
        f"# {recipe.name}: {recipe.method_name} on {recipe.data.name}\n\n"
        f"Train: {results['data']['train']}\n\nTest: {results['data']['test']}\n\n"
        f"Features: {recipe.eval.features}\n\n{table}\n\nProtocols:\n\n{protocols}\n"
        + (f"\n{results['expected']['summary']}\n" if "expected" in results else "")
    )
    if recipe.eval.plots:
        results["plots"] = write_plots(recipe, out_dir, log_file, kept["test"], test_set.info.classes)
    print("\n" + table + "\n")
    return results


def write_plots(recipe: Recipe, out_dir: Path, log_file: Path | None, test: tuple[torch.Tensor, torch.Tensor],
                classes: tuple[str, ...] | None) -> list[str]:
    """The run's PNG plots under ``out_dir/plots``; returns their paths relative to ``out_dir``."""
    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    written = plot_training(read_log(log_file), plots, recipe.name) if log_file is not None else []
    f, y = test
    if len(f) >= 3:
        written.append(plot_embedding(f.numpy(), y.numpy(), plots, recipe.name, recipe.eval.embedding_map,
                                      recipe.eval.map_samples, list(classes) if classes else None, recipe.train.seed))
    return [str(p.relative_to(out_dir)) for p in written]

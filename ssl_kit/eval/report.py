"""End-of-run evaluation: every evaluator of the recipe on the trained encoder (and baselines),
the online probe's score, results.json / results.md and plots.

Feature extraction is sharded over the processes and gathered (``dist``: the run's accelerator);
the evaluators themselves run on the main process.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ssl_kit.config import to_dict
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


@dataclasses.dataclass
class EvalContext:
    """What model evaluators get besides the encoder and the datasets."""

    transform: Callable  # the un-augmented evaluation transform
    device: Any
    batch_size: int  # feature-extraction batch size
    spec: Any  # the run's ViewSpec (sizes, normalisation)
    dataset: Any  # the training split of the evaluation (image size, channels, mean/std)

    def augmentation(self, preset: str) -> Callable:
        """A training transform from a registered view preset, at the evaluation's image size."""
        from ssl_kit.data.views import ViewContext, build_transform

        factory = get_registry().get("view_presets", preset, where="[eval] augment:").factory
        size = self.spec.global_size or self.dataset.image_size
        channels = getattr(self.dataset, "channels", 3)
        norm = self.spec.normalize
        mean, std = (getattr(self.dataset, "mean", None), getattr(self.dataset, "std", None)) if norm else (None, None)
        return build_transform(factory(ViewContext("global", 0, size, self.spec.global_scale, channels)), mean, std)


def evaluate_run(
    recipe: Any,
    method: nn.Module | None,
    spec: Any,
    out_dir: Path,
    channels: int,
    device: Any,
    *,
    encoder: nn.Module | None = None,
    dist: Any = None,
    log_file: Path | None = None,
) -> dict[str, Any]:
    """Evaluate as the recipe's ``[eval]`` table says and write results.md and plots into
    ``out_dir``. ``method``: the trained method (None when evaluating an export: then ``encoder``);
    ``dist``: an accelerator when several processes share the extraction. Returns the results on
    the main process and ``{}`` on the others."""
    from ssl_kit.eval.features import extract_features, feature_module
    from ssl_kit.trainer import build_dataset, build_method, eval_transform

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
        "data": {
            "train": getattr(train_set, "description", recipe.eval.train_split),
            "test": getattr(test_set, "description", recipe.eval.test_split),
        },
    }
    for key, ds in (("train_indices", train_set), ("test_indices", test_set)):
        if hasattr(ds, "split_indices"):
            results["data"][key] = ds.split_indices
    if getattr(train_set, "labels", None) is None or getattr(test_set, "labels", None) is None:
        results["note"] = "evaluation skipped: the evaluation data has no labels (label-free data trains fine)"
        if main:
            print(f"ssl_kit: {results['note']}")
        return results if main else {}

    evaluators = {name: registry.get("evaluators", name).factory(cfg) for name, cfg in recipe.evaluators.items()}
    results["protocols"] = {name: ev.protocol for name, ev in evaluators.items()}
    transform = eval_transform(train_set, spec)
    ctx = EvalContext(transform, device, recipe.eval.batch_size, spec, train_set)
    if method is None and recipe.eval.features != "encoder":
        from ssl_kit.errors import UserError

        raise UserError(f"[eval] features = '{recipe.eval.features}' needs the full method; an export holds only its encoder")
    sources: dict[str, tuple[nn.Module | None, Callable]] = {}
    if "raw" in recipe.eval.baselines:
        native = dataclasses.replace(spec, global_size=train_set.image_size)
        sources["raw"] = (None, eval_transform(train_set, native))
    if "random_init" in recipe.eval.baselines:
        untrained = build_method(recipe, channels).to(device)
        sources["random_init"] = (feature_module(untrained, recipe.eval.features), transform)
    trained = encoder if method is None else feature_module(method, recipe.eval.features)
    sources["trained"] = (trained, transform)

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

    probe = getattr(method, "online_probe", None) if method is not None else None
    columns = [(ev.protocol, ev.primary) for ev in evaluators.values()]
    if probe is not None and int(probe.steps) > 0:
        from ssl_kit.eval import online

        if trained is method.backbone:
            test_f, test_y = kept["test"]
        else:
            test_f, test_y = features(method.backbone, test_set, transform)
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
        results["plots"] = write_plots(recipe, out_dir, log_file, kept["test"], getattr(test_set, "classes", None))
    print("\n" + table + "\n")
    return results


def compare_expected(expected: Any, trained: dict[str, float]) -> dict[str, Any]:
    """The recipe's ``[expected]`` number beside the measured one of the SAME protocol: its
    ``metric`` key must be in this run's results (e.g. ``online_linear_top1`` for an "online
    linear" number), otherwise nothing is compared and the summary says why."""
    out: dict[str, Any] = {**to_dict(expected), "measured": None}
    what = f"expected {expected.value:.2f} ({expected.source}, {expected.protocol}"
    what += f", {expected.epochs} epochs)" if expected.epochs else ")"
    if expected.metric and expected.metric in trained:
        out["measured"] = trained[expected.metric]
        out["summary"] = f"{what}; measured {out['measured']:.2f} with the same protocol ({expected.metric})"
    elif expected.metric:
        out["summary"] = (f"{what}; not compared: this run reports no '{expected.metric}' (its evaluators or "
                          "online probe are off)")
    else:
        out["summary"] = f"{what}; not compared: [expected] names no metric of this run with that protocol"
    return out


def write_plots(recipe: Any, out_dir: Path, log_file: Path | None, test: tuple[torch.Tensor, torch.Tensor],
                classes: list[str] | None) -> list[str]:
    """The run's PNG plots under ``out_dir/plots``; returns their paths relative to ``out_dir``."""
    from ssl_kit.eval.plots import plot_embedding, plot_training, read_log

    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    written = plot_training(read_log(log_file), plots, recipe.name) if log_file is not None else []
    f, y = test
    if len(f) >= 3:
        written.append(plot_embedding(f.numpy(), y.numpy(), plots, recipe.name, recipe.eval.embedding_map,
                                      recipe.eval.map_samples, classes, recipe.train.seed))
    return [str(p.relative_to(out_dir)) for p in written]

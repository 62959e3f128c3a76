"""One run of a recipe, top to bottom: build -> train -> evaluate -> export -> push.

Run directory (``train.output_dir``, default ``runs/<recipe name>``)::

    recipe.toml        the resolved recipe (every default filled in); re-runnable as is
    log.jsonl          one JSON object per log line (ssl_kit.trainer)
    checkpoints/       resumable checkpoints (ssl_kit.checkpoint)
    results.json       evaluation results, protocols, data split, wall time
    results.md         the results table in markdown, with every number's protocol
    plots/             loss.png (loss, lr), online_probe.png, embedding.png (2-D map of test features)
    export/            model.safetensors + config.json + README.md of the evaluated encoder
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from ssl_kit.build import build, build_dataset, plan
from ssl_kit.checkpoint import clean_partial, find_resume
from ssl_kit.errors import UserError
from ssl_kit.eval.evaluators import KNNConfig
from ssl_kit.evaluation import evaluate_run
from ssl_kit.export import encoder_inputs, export_encoder, write_model_card
from ssl_kit.hub import check_can_push, push_after_training
from ssl_kit.io import dumps_toml, loads_toml, lock_run_dir, read_toml, read_versioned_json, write_text_atomic
from ssl_kit.recipe import Recipe
from ssl_kit.trainer import fit, make_accelerator


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys and scalar values (trackers' hyperparameter tables take no nesting)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (list, tuple)):
            flat[f"{prefix}{key}"] = str(list(value))
        elif value is not None:
            flat[f"{prefix}{key}"] = value
    return flat


def start_trackers(accelerator: Accelerator, recipe: Recipe, run_dir: Path) -> None:
    """Start TensorBoard / W&B through accelerate; the W&B run id is kept across resume."""
    ids_file = run_dir / "trackers.json"
    ids = json.loads(ids_file.read_text()) if ids_file.is_file() else {}
    init_kwargs: dict[str, Any] = {}
    if "wandb" in recipe.train.trackers:
        ids.setdefault("wandb", secrets.token_hex(4))
        init_kwargs["wandb"] = {"id": ids["wandb"], "resume": "allow", "dir": str(run_dir), "name": recipe.name}
    if accelerator.is_main_process:
        ids_file.write_text(json.dumps(ids))
    accelerator.init_trackers(recipe.train.tracker_project, config=_flatten(recipe.resolved()), init_kwargs=init_kwargs)


def run(recipe: Recipe) -> dict[str, Any]:
    """Train, evaluate, export and push as the recipe says; returns the results dict (on the
    main process; ``{}``-based on the others)."""
    try:
        with contextlib.ExitStack() as stack:  # the run directory's lock, released when the run ends
            return _run(recipe, stack)
    finally:
        # Let a later run in this process choose another precision (accelerate keeps a singleton
        # state; the process group itself stays).
        AcceleratorState._reset_state()


COSMETIC = ("resume", "progress")  # [train] keys a finished run may be re-run with changed


def check_resume(resume: Path | None, max_steps: int, recipe: Recipe) -> None:
    """A run directory's provenance describes its weights: refuse to resume a checkpoint past this
    recipe's last step, and a finished run under a changed recipe (nothing would train, yet
    recipe.toml, results and the model card would claim the change)."""
    if resume is None:
        return
    done = read_versioned_json(resume, "state.json", "checkpoint").get("step")
    if isinstance(done, int) and done > max_steps:
        raise UserError(f"checkpoint '{resume}' is at step {done}, past this recipe's last step {max_steps} "
                        "(train.epochs / train.max_steps): raise them to train longer, or choose another "
                        "train.output_dir for a shorter run")
    saved = resume.parent.parent / "recipe.toml"
    if done == max_steps and saved.is_file():
        old, new = read_toml(saved), loads_toml(dumps_toml(recipe.resolved()))
        for tree in (old, new):
            for key in COSMETIC:
                tree.get("train", {}).pop(key, None)
        changed = next((f"[{section}]" for section in sorted(set(old) | set(new)) if old.get(section) != new.get(section)), None)
        if changed:
            raise UserError(f"'{saved.parent}' is a finished run (step {done} of {max_steps}) and the recipe changes "
                            f"{changed}: nothing would train, so its files would no longer describe its weights. "
                            "Evaluate it differently with 'python -m ssl_kit eval', train longer by raising "
                            "train.epochs, or choose another train.output_dir")


def check_knn_neighbours(recipe: Recipe, train_images: int) -> None:
    """A k-NN evaluator's k is at most the evaluation's train split: a larger one would be cut to
    the split while its results still say k."""
    for name, cfg in recipe.evaluators.items():
        too_many = [k for k in cfg.k if k > train_images] if isinstance(cfg, KNNConfig) else []
        if too_many:
            raise UserError(f"[eval.{name}] k {too_many[0]} is larger than the {train_images} images of the evaluation's "
                            f"train split '{recipe.eval.train_split}': every k must be at most {train_images}")


def check_free_space(run_dir: Path, parts: Any) -> None:
    """A one-line error now, not a cryptic one at the first checkpoint, when the run directory's
    disk cannot hold a checkpoint (the method's tensors, optimizer state up to twice as large, and
    a 64 MiB margin)."""
    tensors = sum(t.numel() * t.element_size() for t in parts.method.state_dict().values())
    needed = 3 * tensors + 64 * 2**20
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise UserError(f"train.output_dir '{run_dir}': {free / 2**20:.0f} MiB free, a checkpoint of this run needs "
                        f"about {needed / 2**20:.0f} MiB; free some space or choose another train.output_dir")


def check_finite(method: torch.nn.Module, run_dir: Path) -> None:
    """Non-finite weights or buffers (e.g. batch-norm statistics after skipped steps) never reach
    an evaluation or an export silently."""
    bad = [name for name, t in method.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise UserError(f"the trained weights hold NaN/inf in {len(bad)} tensor(s) (e.g. '{bad[0]}'); nothing was "
                        f"evaluated or exported. The checkpoints in '{run_dir}' are kept; lower optim.lr and start "
                        "afresh in a new train.output_dir")


def _run(recipe: Recipe, stack: contextlib.ExitStack) -> dict[str, Any]:
    started = time.time()
    run_dir = Path(recipe.train.output_dir.format(name=recipe.name))
    for tracker in recipe.train.trackers:
        if importlib.util.find_spec(tracker) is None:
            raise UserError(f"[train] trackers lists '{tracker}' but it is not installed: pip install 'ssl-kit[{tracker}]'")
    accelerator = make_accelerator(recipe, run_dir)
    main, say = accelerator.is_main_process, accelerator.print
    resume = find_resume(recipe.train.resume, run_dir, recipe.resolved())
    if recipe.hub.push:  # fail now, not after hours of training (every process, so none waits alone)
        check_can_push()

    # build (every check that needs the components), then claim the run directory: nothing in it
    # changes before the recipe has passed every check, and never while another run uses it
    parts = build(recipe)
    if recipe.eval.enabled:  # the evaluation's splits exist (an image folder without test/ fails now)
        sizes = {recipe.data.train_split: len(parts.dataset)}
        for split in dict.fromkeys((recipe.eval.train_split, recipe.eval.test_split)):
            if split != recipe.data.train_split:
                sizes[split] = len(build_dataset(recipe, split))
        check_knn_neighbours(recipe, sizes[recipe.eval.train_split])
    check_resume(resume, plan(recipe, len(parts.dataset), accelerator.num_processes).max_steps, recipe)
    if main:
        lock = lock_run_dir(run_dir)
        if lock is not None:
            stack.callback(lock.close)
        check_free_space(run_dir, parts)
        clean_partial(run_dir)
        write_text_atomic(run_dir / "recipe.toml", dumps_toml(recipe.resolved()))

    # train
    if recipe.train.trackers:
        start_trackers(accelerator, recipe, run_dir)
    trained = fit(parts, accelerator, run_dir, resume)
    if skipped := parts.dataset.skip_report():  # image files with on_error = "skip"
        print(skipped, file=sys.stderr, flush=True)
    if trained.skipped_nonfinite:
        say(f"ssl_kit: {trained.skipped_nonfinite} of {trained.steps} optimizer steps were skipped (non-finite loss; "
            "train.skip_nonfinite = true)", file=sys.stderr)
    check_finite(trained.method, run_dir)
    train_seconds = time.time() - started

    # evaluate: every process extracts a shard of the features; the main one evaluates
    accelerator.wait_for_everyone()
    method = trained.method.eval()
    results: dict[str, Any] = {}
    if recipe.eval.enabled:
        results = evaluate_run(recipe, method, parts.views, run_dir, accelerator.device, probe=trained.probe,
                               dist=accelerator if accelerator.num_processes > 1 else None,
                               log_file=run_dir / "log.jsonl")

    # export: weights and config, results.json, then the model card with the final results
    if main:
        results.update(train_seconds=round(train_seconds, 2), steps=trained.steps,
                       skipped_nonfinite=trained.skipped_nonfinite)
        if torch.cuda.is_available():
            results["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if recipe.train.export:
            export_encoder(method, recipe, run_dir / "export", results, encoder_inputs(parts.info, parts.views),
                           full_method=recipe.hub.full_method)
        results["total_seconds"] = round(time.time() - started, 2)
        (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        if recipe.train.export:
            write_model_card(run_dir / "export", results, recipe.resolved())
        say(f"run directory: {run_dir}")
    accelerator.wait_for_everyone()
    for tracker in accelerator.trackers:  # not end_training(): it destroys the process group,
        tracker.finish()  # which a later run in this process still needs

    # push, after the barrier: the other processes need not wait for the upload
    if main and recipe.hub.push:
        say(f"pushed {run_dir / 'export'} to {recipe.hub.repo_id}: {push_after_training(run_dir, recipe.hub)}")
    return results

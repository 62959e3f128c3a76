"""The one training loop, on ``accelerate.Accelerator``. Reads top to bottom:

build (seeded) -> data and views -> optimizer and schedule -> loop -> evaluate -> export.

Run directory (``train.output_dir``, default ``runs/<recipe name>``)::

    recipe.toml        the resolved recipe (every default filled in); re-runnable as is
    log.jsonl          one JSON object per log line: step, epoch, loss, metrics, lr, images/s
    results.json       evaluation results, protocols, data split, wall time
    results.md         the results table in markdown, with every number's protocol
    plots/             loss.png (loss, lr), online_probe.png, embedding.png (2-D map of test features)
    export/            model.safetensors + config.json of the evaluated encoder
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_kit.config import build_config
from ssl_kit.data.views import (
    EpochBatchSampler,
    MultiViewDataset,
    SharedTransform,
    ViewContext,
    ViewSpec,
    build_transform,
)
from ssl_kit.errors import UserError
from ssl_kit.plugins import get_registry
from ssl_kit.recipe import Recipe, dumps_toml


# --- building ----------------------------------------------------------------------------------
def build_dataset(recipe: Recipe, split: str) -> Any:
    comp = get_registry().get("datasets", recipe.data.name)
    return comp.factory(recipe.dataset, split)


def build_method(recipe: Recipe, channels: int) -> nn.Module:
    """Backbone + method, initialised from ``train.seed`` (so a rebuild gives the same weights)."""
    registry = get_registry()
    torch.manual_seed(recipe.train.seed)
    backbone_cfg = recipe.backbone
    if backbone_cfg is not None and getattr(backbone_cfg, "in_channels", 0) is None:
        backbone_cfg = dataclasses.replace(backbone_cfg, in_channels=channels)
    backbone = registry.get("backbones", recipe.backbone_name).factory(backbone_cfg)
    if not hasattr(backbone, "num_features"):
        raise UserError(f"backbone '{recipe.backbone_name}' has no 'num_features' attribute")
    return registry.get("methods", recipe.method_name).factory(backbone, recipe.method)


def view_spec(method: nn.Module, recipe: Recipe) -> ViewSpec:
    """The method's views with the recipe's ``[views]`` table on top."""
    base = method.view_spec() if hasattr(method, "view_spec") else getattr(method, "views", ViewSpec())
    values = {**{k: getattr(base, k) for k in base.__dataclass_fields__}, **recipe.views}
    return build_config(ViewSpec, values, f"{recipe.source}: [views]")


def build_view_dataset(dataset: Any, spec: ViewSpec, seed: int, global_batch: int | None = None) -> MultiViewDataset:
    registry = get_registry()
    preset = registry.get("view_presets", spec.preset).factory
    channels = getattr(dataset, "channels", 3)
    size = spec.global_size or getattr(dataset, "image_size", None)
    if size is None:
        raise UserError("[views] global_size is needed: the dataset does not tell its image size")
    local_size = spec.local_size or max(1, int(size * 3 / 7))
    mean, std = (getattr(dataset, "mean", None), getattr(dataset, "std", None)) if spec.normalize else (None, None)

    def transforms(kind: str, count: int, size: int, scale: tuple[float, float]) -> list:
        return [build_transform(preset(ViewContext(kind, v, size, scale, channels)), mean, std) for v in range(count)]

    group = []  # group-shared views (CARE); their crops are drawn on a canvas of the image size
    if spec.group_views:
        group_preset = registry.get("view_presets", spec.group_preset or spec.preset, "[views] group_preset:").factory
        canvas = max(size, getattr(dataset, "image_size", None) or size)
        group = [SharedTransform(group_preset(ViewContext("group", v, size, spec.global_scale, channels)), mean, std,
                                 canvas) for v in range(spec.group_views)]
    return MultiViewDataset(
        dataset,
        transforms("global", spec.global_views, size, spec.global_scale),
        transforms("local", spec.local_views, local_size, spec.local_scale),
        seed,
        group, spec.shared_groups, global_batch,
    )


def eval_transform(dataset: Any, spec: ViewSpec) -> Any:
    """No augmentation: resize to the global view size and normalise as training did."""
    from ssl_kit.data.views import preset_none

    size = spec.global_size or dataset.image_size
    channels = getattr(dataset, "channels", 3)
    mean, std = (getattr(dataset, "mean", None), getattr(dataset, "std", None)) if spec.normalize else (None, None)
    return build_transform(preset_none(ViewContext("global", 0, size, (1.0, 1.0), channels)), mean, std)


def param_groups(method: nn.Module, weight_decay: float, exclude_bias_norm: bool) -> list[dict[str, Any]]:
    """The method's own groups, or decay / no-decay groups (biases and norm parameters)."""
    own = method.param_groups() if hasattr(method, "param_groups") else None
    if own is not None:
        return own
    if not exclude_bias_norm:
        return [{"params": [p for p in method.parameters() if p.requires_grad]}]
    decay, no_decay = [], []
    for module in method.modules():
        is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                (no_decay if is_norm or name == "bias" or p.ndim <= 1 else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    method: nn.Module,
    recipe: Recipe,
    lr: float,
    extra_groups: list[dict[str, Any]] | None = None,
    groups: list[dict[str, Any]] | None = None,
) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``groups`` (default: the method's :func:`param_groups`) plus
    ``extra_groups`` (e.g. the online probe's, with its own lr and weight decay)."""
    o = recipe.optim
    if groups is None:
        groups = param_groups(method, o.weight_decay, o.exclude_bias_norm)
    groups = groups + list(extra_groups or [])
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    from timm.optim import Lars

    return Lars(
        groups, lr=lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay,
        trust_coeff=o.lars_eta, trust_clip=o.lars_trust_clip,
    )


def lr_factor(step: int, total: int, warmup: int, start_factor: float, min_factor: float, schedule: str) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based): linear warm-up from
    ``start_factor``, then cosine down to ``min_factor`` (or constant)."""
    if step < warmup:
        return start_factor + (1.0 - start_factor) * step / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def attach_online_probe(method: nn.Module, recipe: Recipe, dataset: Any, scale: float) -> dict[str, Any] | None:
    """Attach an :class:`~ssl_kit.eval.online.OnlineProbe` as ``method.online_probe`` when the recipe
    asks for it and the data has labels; returns its optimizer group (own lr, no weight decay)."""
    from ssl_kit.eval.online import OnlineProbe, num_classes

    classes = num_classes(dataset) if recipe.eval.online_probe else None
    if not classes:
        return None
    probe = OnlineProbe(method.backbone.num_features, classes)
    method.add_module("online_probe", probe)
    base = recipe.eval.online_lr or (1e-3 if recipe.optim.name in ("adam", "adamw") else 0.1)
    return {"params": list(probe.parameters()), "lr": base * scale, "weight_decay": 0.0, "online_probe": True}


def resolve_precision(requested: str) -> str:
    """The accelerate mixed-precision mode for a recipe's ``train.precision``."""
    if requested == "auto":
        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"
    if requested == "fp16" and not torch.cuda.is_available():
        import warnings

        warnings.warn("train.precision = 'fp16' needs a GPU; training in full precision instead", UserWarning, stacklevel=2)
        return "no"
    return requested


# --- the run -----------------------------------------------------------------------------------
def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    def move(t: torch.Tensor) -> torch.Tensor:
        t = t.to(device, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.ndim == 4 else t

    return {k: [move(t) for t in v] if isinstance(v, list) else move(v) for k, v in batch.items()}


def _online_probe_step(probe: nn.Module, out: dict[str, Any], batch: dict[str, Any], say: Any) -> dict[str, Any]:
    """The online probe's loss on the method's detached ``features`` (its ``_loss`` joins the
    backward pass; the rest is logged). A method that returns no features leaves the probe
    untouched (a zero-gradient term keeps every process's reducer in step)."""
    features = out.get("features")
    if not isinstance(features, torch.Tensor) or "label" not in batch:
        if not getattr(probe, "warned", False):
            probe.warned = True
            say("ssl_kit: the method returns no 'features': the online linear probe is not trained")
        return {"_loss": sum(p.sum() for p in probe.parameters()) * 0.0}
    with torch.autocast(features.device.type, enabled=False):
        terms = probe.loss(features, batch["label"])
    return {"_loss": terms["online_probe_loss"], "online_probe_loss": terms["online_probe_loss"].detach(),
            "online_probe_acc": terms["online_probe_acc"]}


def _scalars(out: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v.detach().float() for k, v in out.items() if isinstance(v, torch.Tensor) and v.numel() == 1}


def _resume_from(recipe: Recipe, run_dir: Path) -> Path | None:
    from ssl_kit.checkpoint import list_checkpoints

    mode = recipe.train.resume
    if mode == "never":
        if list_checkpoints(run_dir):
            raise UserError(
                f"run directory '{run_dir}' already has checkpoints and train.resume = 'never': "
                "choose another train.output_dir, delete the checkpoints, or set train.resume = 'auto'"
            )
        return None
    if mode == "auto":
        found = list_checkpoints(run_dir)
        path = found[-1] if found else None
    else:
        path = Path(mode)
        if not (path / "state.json").is_file():
            raise UserError(f"[train] resume = '{mode}': not a checkpoint directory (no state.json)")
    if path is not None:
        _check_same_run(recipe, path.parent.parent / "recipe.toml")
    return path


# What a checkpoint's weights, optimizer state and position inside an epoch depend on: resuming
# under a recipe that differs here would silently continue another run.
RUN_IDENTITY = {"method": None, "backbone": None, "views": None, "data": ("name", "batch_size", "train_split"),
                "train": ("seed", "grad_accumulation")}


def _check_same_run(recipe: Recipe, saved: Path) -> None:
    """Refuse to resume the checkpoints of a run whose recipe (``saved``, its recipe.toml) differs
    from ``recipe`` in what the checkpoint depends on; epochs, evaluation and logging may change."""
    from ssl_kit.recipe import _read_toml, tomllib

    if not saved.is_file():
        return
    old = _read_toml(saved)
    new = tomllib.loads(dumps_toml(recipe.resolved()))  # the same TOML types as the saved file
    for section, keys in RUN_IDENTITY.items():
        a, b = old.get(section, {}), new.get(section, {})
        for key in keys or sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                raise UserError(
                    f"{saved.parent} holds checkpoints of another run: [{section}] {key} was {a.get(key)!r}, the "
                    f"recipe says {b.get(key)!r}; choose another train.output_dir, or delete its checkpoints"
                )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys and scalar values (trackers' hyperparameter tables take no nesting)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = str(list(value))
        elif value is not None:
            flat[name] = value
    return flat


def _init_trackers(accelerator: Any, recipe: Recipe, run_dir: Path) -> None:
    """Start TensorBoard / W&B through accelerate; the W&B run id is kept across resume."""
    import importlib.util

    for tracker in recipe.train.trackers:
        if importlib.util.find_spec(tracker) is None:
            raise UserError(
                f"[train] trackers lists '{tracker}' but it is not installed: pip install 'ssl-kit[{tracker}]'"
            )
    ids_file = run_dir / "trackers.json"
    ids = json.loads(ids_file.read_text()) if ids_file.is_file() else {}
    init_kwargs: dict[str, Any] = {}
    if "wandb" in recipe.train.trackers:
        if "wandb" not in ids:
            import secrets

            ids["wandb"] = secrets.token_hex(4)
        init_kwargs["wandb"] = {"id": ids["wandb"], "resume": "allow", "dir": str(run_dir), "name": recipe.name}
    if accelerator.is_main_process:
        ids_file.write_text(json.dumps(ids))
    accelerator.init_trackers(recipe.train.tracker_project, config=_flatten(recipe.resolved()), init_kwargs=init_kwargs)


def _reproducibility(recipe: Recipe) -> None:
    if recipe.train.deterministic:

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def train(recipe: Recipe) -> dict[str, Any]:
    """Train, evaluate and export as the recipe says; returns the results dict."""
    from accelerate.state import AcceleratorState

    try:
        return _train(recipe)
    finally:
        # Let a later train() in this process choose another precision (accelerate keeps a
        # singleton state; the process group itself stays).
        AcceleratorState._reset_state()


def _train(recipe: Recipe) -> dict[str, Any]:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration
    from tqdm.auto import tqdm

    from ssl_kit.checkpoint import clean_partial, load_checkpoint, save_checkpoint

    started = time.time()
    # Without an accelerator, cpu=True makes `accelerate launch --multi_gpu` start gloo processes.
    # (DeepSpeed picks its own device; cpu=True would silently turn it off.)
    no_gpu = not torch.cuda.is_available() and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
    no_gpu = no_gpu and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true"
    run_dir = Path(recipe.train.output_dir.format(name=recipe.name))
    accelerator = Accelerator(
        mixed_precision=resolve_precision(recipe.train.precision),
        cpu=no_gpu,
        log_with=recipe.train.trackers or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "tensorboard")),
    )
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    _reproducibility(recipe)
    resume_path = _resume_from(recipe, run_dir)
    if recipe.hub.push:  # fail now, not after hours of training (every process, so none waits alone)
        from ssl_kit.hub import check_can_push

        check_can_push()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        clean_partial(run_dir)
        (run_dir / "recipe.toml").write_text(dumps_toml(recipe.resolved()))
    say = accelerator.print

    dataset = build_dataset(recipe, recipe.data.train_split)
    channels = getattr(dataset, "channels", 3)
    method = build_method(recipe, channels)
    if recipe.train.sync_batchnorm and world > 1:
        from ssl_kit.distributed import convert_sync_batchnorm

        method = convert_sync_batchnorm(method)
    spec = view_spec(method, recipe)
    global_batch, accumulation = recipe.data.batch_size, recipe.train.grad_accumulation
    if global_batch % world:
        raise UserError(f"[data] batch_size {global_batch} is not divisible by the {world} processes")
    if len(dataset) < global_batch:
        raise UserError(f"[data] batch_size {global_batch} is larger than the training split ({len(dataset)} images)")
    steps_per_epoch = len(dataset) // global_batch // accumulation
    if steps_per_epoch == 0:
        raise UserError(f"[train] grad_accumulation {accumulation} exceeds the batches of one epoch")
    max_steps = steps_per_epoch * recipe.train.epochs
    if recipe.train.max_steps is not None:
        max_steps = min(max_steps, recipe.train.max_steps)

    o = recipe.optim
    effective_batch = global_batch * accumulation
    scale = effective_batch / 256 if o.lr_scaling == "linear" else 1.0
    lr = o.lr * scale
    groups = param_groups(method, o.weight_decay, o.exclude_bias_norm)  # before the probe joins
    probe_group = attach_online_probe(method, recipe, dataset, scale)
    optimizer = build_optimizer(method, recipe, lr, [probe_group] if probe_group else None, groups)
    warmup = round(o.warmup_epochs * steps_per_epoch)
    factor = lambda s: lr_factor(s, max_steps, warmup, o.warmup_start_lr / lr, o.min_lr / lr, o.schedule)  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if hasattr(method, "on_train_start"):  # before resume: a checkpoint's buffers win
        method.on_train_start(steps_per_epoch, max_steps)
    state: dict[str, Any] = {"step": 0, "skipped_nonfinite": 0}
    if resume_path is not None:
        state = load_checkpoint(resume_path, method, optimizer, scheduler, rank)
        say(f"ssl_kit: resuming from {resume_path} (step {state['step']})")
    deepspeed = accelerator.state.deepspeed_plugin
    # Checkpoints and exports read whole parameters from the unwrapped model: true for DDP and
    # ZeRO stages 1-2, not for sharded parameters.
    if deepspeed is not None and deepspeed.zero_stage == 3:
        raise UserError("DeepSpeed ZeRO stage 3 is not supported yet (parameters are sharded); use stage 1 or 2")
    if getattr(accelerator.state, "fsdp_plugin", None) is not None:
        raise UserError("FSDP is not supported yet (parameters are sharded); use DDP or DeepSpeed ZeRO stage 1-2")
    if deepspeed is not None:
        # DeepSpeed's engine steps inside accelerator.backward and needs its micro-batch size.
        if accumulation > 1:
            raise UserError("[train] grad_accumulation > 1 is not supported with DeepSpeed; use its config instead")
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = global_batch // world
        deepspeed.deepspeed_config["gradient_accumulation_steps"] = 1
    if recipe.train.channels_last:
        method = method.to(memory_format=torch.channels_last)
    method, optimizer = accelerator.prepare(method, optimizer)
    core = accelerator.unwrap_model(method)
    probe = getattr(core, "online_probe", None)
    ssl_params = [p for n, p in core.named_parameters() if not n.startswith("online_probe.")]
    if recipe.train.compile:
        method = torch.compile(method)
    if recipe.train.trackers:
        _init_trackers(accelerator, recipe, run_dir)

    sampler = EpochBatchSampler(
        len(dataset), global_batch, recipe.train.seed, recipe.train.epochs, rank, world,
        start_step=state["step"] * accumulation,
    )
    workers = recipe.data.num_workers
    loader = torch.utils.data.DataLoader(
        build_view_dataset(dataset, spec, recipe.train.seed, global_batch),
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=recipe.data.pin_memory,
        persistent_workers=recipe.data.persistent_workers and workers > 0,
        prefetch_factor=recipe.data.prefetch_factor if workers > 0 else None,
        # Its own generator: creating the iterator must not consume the global RNG, which
        # belongs to the model (dropout) and is restored exactly on resume.
        generator=torch.Generator().manual_seed(recipe.train.seed),
    )
    say(
        f"ssl_kit: {recipe.method_name} on {recipe.data.name} | processes {world} | per-device batch "
        f"{global_batch // world} | grad accumulation {accumulation} | effective batch {effective_batch} | "
        f"base lr {o.lr:g} | effective lr {lr:g} ({o.lr_scaling} scaling) | {max_steps} steps | "
        f"precision {accelerator.mixed_precision} | device {accelerator.device} | "
        f"{str(accelerator.distributed_type).split('.')[-1].lower()}"
    )

    def checkpoint() -> None:
        save_checkpoint(run_dir, step, core, optimizer, scheduler,
                        {"step": step, "skipped_nonfinite": state["skipped_nonfinite"]},
                        recipe.train.keep_checkpoints, main, rank, accelerator.wait_for_everyone)

    log_file = open(run_dir / "log.jsonl", "a") if main else None
    bar = tqdm(total=max_steps, initial=state["step"], disable=not (recipe.train.progress and main),
               desc="train", dynamic_ncols=True, mininterval=0.2 if sys.stderr.isatty() else 10.0)
    method.train()
    step, micro, images = state["step"], 0, 0
    window_start = last_save = time.time()
    nonfinite = False
    batches = iter(loader) if step < max_steps else iter(())
    for batch in batches:
        batch = _to_device(batch, accelerator.device, recipe.train.channels_last)
        last_micro = (micro + 1) % accumulation == 0
        # Between optimizer steps, gradients accumulate locally without a DDP all-reduce.
        with contextlib.nullcontext() if last_micro else accelerator.no_sync(method):
            with accelerator.autocast():
                out = method(batch)
            loss = out["loss"]
            bad = (~torch.isfinite(loss.detach())).float()
            finite = not bool(accelerator.reduce(bad, "sum") > 0)  # every rank must agree
            if not finite:
                terms = {k: float(v) for k, v in _scalars(out).items()}
                if not recipe.train.skip_nonfinite:
                    raise UserError(
                        f"non-finite loss at step {step + 1} (loss terms: {terms}); the last checkpoint "
                        "is intact. Lower the learning rate, or set train.skip_nonfinite = true"
                    )
                nonfinite = True
            else:
                if probe is not None:
                    probe_out = _online_probe_step(probe, out, batch, say)
                    loss = loss + probe_out.pop("_loss")
                    out = {**out, **probe_out}
                accelerator.backward(loss / accumulation)
        micro += 1
        images += global_batch
        if not last_micro:
            continue
        if nonfinite:  # skip this optimizer step entirely
            optimizer.zero_grad(set_to_none=True)
            state["skipped_nonfinite"] += 1
            nonfinite = False
        else:
            if o.grad_clip is not None:
                accelerator.clip_grad_norm_(ssl_params, o.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        lr_used = optimizer.param_groups[0]["lr"]
        scheduler.step()
        step += 1
        if hasattr(core, "after_step"):
            core.after_step(step, max_steps)
        bar.update(1)
        if step % recipe.train.log_every == 0 or step == max_steps:
            now = time.time()
            metrics = {k: float(accelerator.reduce(v, "mean")) for k, v in _scalars(out).items()}
            record = {"step": step, "epoch": (step - 1) // steps_per_epoch, **metrics,
                      "lr": lr_used, "images_per_s": images / max(now - window_start, 1e-9),
                      "skipped_nonfinite": state["skipped_nonfinite"]}
            images, window_start = 0, now
            bar.set_postfix(loss=f"{metrics.get('loss', float('nan')):.4f}", lr=f"{record['lr']:.3g}",
                            img_s=f"{record['images_per_s']:.0f}")
            if log_file is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            if recipe.train.trackers:
                accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
        every = recipe.train.checkpoint_every
        due = every > 0 and step % every == 0
        if recipe.train.checkpoint_minutes > 0:
            late = torch.tensor(float(time.time() - last_save > 60 * recipe.train.checkpoint_minutes))
            due = due or bool(accelerator.reduce(late, "sum") > 0)  # every rank must agree
        if due and step < max_steps:
            checkpoint()
            last_save = time.time()
        if step >= max_steps:
            break
    bar.close()
    if log_file is not None:
        log_file.close()
    if skipped := getattr(dataset, "skip_report", lambda: "")():  # image files with on_error = "skip"
        print(skipped, file=sys.stderr, flush=True)
    if resume_path is None or state["step"] < step:
        checkpoint()  # the final state is resumable too (e.g. to train longer)
    train_seconds = time.time() - started

    results: dict[str, Any] = {}
    accelerator.wait_for_everyone()
    core.eval()
    if recipe.eval.enabled:  # every process extracts a shard of the features; the main one evaluates
        from ssl_kit.eval.report import evaluate_run

        results = evaluate_run(recipe, core, spec, run_dir, channels, accelerator.device,
                               dist=accelerator if world > 1 else None, log_file=run_dir / "log.jsonl")
    if main:
        results.update(train_seconds=round(train_seconds, 2), steps=step,
                       skipped_nonfinite=state["skipped_nonfinite"])
        if torch.cuda.is_available():
            results["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if recipe.train.export:
            from ssl_kit.checkpoint import encoder_inputs, export_encoder

            export_encoder(core, recipe, run_dir / "export", results, encoder_inputs(dataset, spec),
                           full_method=recipe.hub.full_method)
        results["total_seconds"] = round(time.time() - started, 2)
        (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        if recipe.train.export:  # after results.json: the card shows the final results
            from ssl_kit.hub import finalize_export

            finalize_export(run_dir / "export", results, recipe.resolved())
        say(f"run directory: {run_dir}")
    accelerator.wait_for_everyone()
    for tracker in accelerator.trackers:  # not end_training(): it destroys the process group,
        tracker.finish()  # which a later train() in this process still needs
    if main and recipe.hub.push:  # after the barrier: the other processes need not wait for the upload
        from ssl_kit.hub import push_after_training

        say(f"pushed {run_dir / 'export'} to {recipe.hub.repo_id}: {push_after_training(run_dir, recipe.hub)}")
    return results

"""The training loop, on ``accelerate.Accelerator``: built components in, trained weights out.

:func:`fit` trains what :mod:`ssl_kit.build` made and nothing else (evaluation, export and push
are :mod:`ssl_kit.run`'s). It writes into the run directory::

    log.jsonl          one JSON object per log line: step, epoch, loss, metrics, lr, images/s
    checkpoints/       resumable checkpoints (ssl_kit.checkpoint)

One iteration of the loop is one optimizer step: ``grad_accumulation`` micro-batches, forward and
backward (gradients synchronised across processes on the last one only), a check that the losses
were finite on every process (the step's one device sync), the optimizer and schedule step, the method's ``after_step`` (EMA,
queues), logging and, when due, a checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, send_to_device
from tqdm.auto import tqdm

from ssl_kit.build import (
    Components,
    build_loader,
    build_optimizer,
    build_probe,
    build_schedule,
    param_groups,
    plan,
    probe_group,
)
from ssl_kit.checkpoint import load_checkpoint, save_checkpoint
from ssl_kit.distributed import any_process, convert_sync_batchnorm, mean_over_processes
from ssl_kit.errors import UserError
from ssl_kit.eval.online import LOSS, PREFIX, OnlineProbe, WithOnlineProbe
from ssl_kit.methods.base import Method
from ssl_kit.recipe import Recipe


@dataclasses.dataclass(frozen=True)
class Trained:
    """What :func:`fit` returns: the trained (unwrapped) method, its online probe, counters."""

    method: Method
    probe: OnlineProbe | None
    steps: int
    skipped_nonfinite: int


# --- setup -------------------------------------------------------------------------------------
def resolve_precision(requested: str) -> str:
    """The accelerate mixed-precision mode for a recipe's ``train.precision``."""
    if requested == "auto":
        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"
    if requested == "fp16" and not torch.cuda.is_available():
        warnings.warn("train.precision = 'fp16' needs a GPU; training in full precision instead", UserWarning, stacklevel=2)
        return "no"
    return requested


def make_accelerator(recipe: Recipe, run_dir: Path) -> Accelerator:
    """The run's Accelerator (precision, trackers), refusing what checkpoints cannot hold (sharded
    parameters); also sets determinism as the recipe asks."""
    # Without an accelerator, cpu=True makes `accelerate launch --multi_gpu` start gloo processes.
    # (DeepSpeed picks its own device; cpu=True would silently turn it off.)
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    no_gpu = not (torch.cuda.is_available() or mps) and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true"
    if recipe.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    accelerator = Accelerator(
        mixed_precision=resolve_precision(recipe.train.precision),
        cpu=no_gpu,
        log_with=recipe.train.trackers or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "tensorboard")),
    )
    # Checkpoints and exports read whole parameters from the unwrapped model: true for DDP and
    # ZeRO stages 1-2, not for sharded parameters.
    deepspeed = accelerator.state.deepspeed_plugin
    if deepspeed is not None and deepspeed.zero_stage == 3:
        raise UserError("DeepSpeed ZeRO stage 3 is not supported yet (parameters are sharded); use stage 1 or 2")
    if getattr(accelerator.state, "fsdp_plugin", None) is not None:
        raise UserError("FSDP is not supported yet (parameters are sharded); use DDP or DeepSpeed ZeRO stage 1-2")
    if deepspeed is not None and recipe.train.grad_accumulation > 1:
        raise UserError("[train] grad_accumulation > 1 is not supported with DeepSpeed; use its config instead")
    return accelerator


def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    batch = send_to_device(batch, device, non_blocking=True)
    if not channels_last:
        return batch
    fmt = torch.channels_last
    return {k: [t.contiguous(memory_format=fmt) for t in v] if isinstance(v, list) else v for k, v in batch.items()}


def _scalars(out: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in out.items() if isinstance(v, torch.Tensor) and v.numel() == 1}


# --- the loop ----------------------------------------------------------------------------------
def fit(parts: Components, accelerator: Accelerator, run_dir: Path, resume: Path | None) -> Trained:
    """Train ``parts.method`` as ``parts.recipe`` says, from checkpoint ``resume`` if given."""
    recipe, cfg, o = parts.recipe, parts.recipe.train, parts.recipe.optim
    world, rank, main, device = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process, accelerator.device
    say = accelerator.print
    method = convert_sync_batchnorm(parts.method) if cfg.sync_batchnorm and world > 1 else parts.method
    p = plan(recipe, len(parts.dataset), world)

    # optimizer over the method's groups and the online probe's own group
    probe = build_probe(recipe, parts.info, method.backbone.num_features)
    groups = param_groups(method, o.weight_decay, o.exclude_bias_norm)
    optimizer = build_optimizer(groups + ([probe_group(recipe, probe, p.lr_scale)] if probe else []), o, p.lr)
    scheduler = build_schedule(optimizer, o, p)
    modules = {"": method, **({PREFIX: probe} if probe else {})}

    # resume (after on_train_start: a checkpoint's buffers win)
    method.on_train_start(p.steps_per_epoch, p.max_steps)
    state: dict[str, Any] = {"step": 0, "skipped_nonfinite": 0}
    if resume is not None:
        state = load_checkpoint(resume, modules, optimizer, scheduler, rank)
        say(f"ssl_kit: resuming from {resume} (step {state['step']})")

    # wrap for the distributed engine (DeepSpeed's steps inside accelerator.backward and needs the
    # micro-batch size)
    deepspeed = accelerator.state.deepspeed_plugin
    steps_in_backward = deepspeed is not None
    if deepspeed is not None:
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = p.global_batch // world
        deepspeed.deepspeed_config["gradient_accumulation_steps"] = 1
    model = WithOnlineProbe(method, probe) if probe is not None else method
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model, optimizer = accelerator.prepare(model, optimizer)
    if cfg.compile:
        model = torch.compile(model)
    batches = iter(build_loader(parts, rank, world, start_batch=state["step"] * p.accumulation, device=device,
                                 say=say, progress=cfg.progress and main))
    say(f"ssl_kit: {recipe.method_name} on {recipe.data.name} | processes {world} | per-device batch "
        f"{p.global_batch // world} | grad accumulation {p.accumulation} | effective batch {p.effective_batch} | "
        f"base lr {o.lr:g} | effective lr {p.lr:g} ({o.lr_scaling} scaling) | {p.max_steps} steps | "
        f"precision {accelerator.mixed_precision} | device {device} | "
        f"{str(accelerator.distributed_type).split('.')[-1].lower()}")

    def checkpoint() -> None:
        save_checkpoint(run_dir, step, modules, optimizer, scheduler,
                        {"step": step, "skipped_nonfinite": state["skipped_nonfinite"]},
                        keep=cfg.keep_checkpoints, is_main=main, rank=rank, barrier=accelerator.wait_for_everyone)

    log_file = open(run_dir / "log.jsonl", "a") if main else None
    bar = tqdm(total=p.max_steps, initial=state["step"], disable=not (cfg.progress and main),
               desc="train", dynamic_ncols=True, mininterval=0.2 if sys.stderr.isatty() else 10.0)
    step, images = state["step"], 0
    window_start = last_save = time.time()
    model.train()
    launcher = os.getppid() if os.environ.get("TORCHELASTIC_RUN_ID") else None  # torchrun / accelerate launch
    while step < p.max_steps:
        if launcher is not None and os.getppid() != launcher:  # it died: no one would collect or stop this run
            raise UserError(f"the launcher of this process (pid {launcher}) is gone; stopping at step {step} "
                            "(the last checkpoint is intact: run the same command to resume)")
        # forward and backward over the micro-batches of one optimizer step; gradients
        # accumulate locally and are all-reduced across processes on the last micro-batch only.
        # Whether every loss was finite is read once per step, after the last backward: one
        # device sync (and one collective), with the backward already queued. DeepSpeed steps
        # its optimizer inside accelerator.backward, so there the check comes before it.
        finite, terms = torch.ones((), dtype=torch.bool, device=device), []
        for micro in range(p.accumulation):
            batch = _to_device(next(batches), device, cfg.channels_last)
            images += p.global_batch
            with accelerator.no_sync(model) if micro < p.accumulation - 1 else contextlib.nullcontext():
                with accelerator.autocast():
                    out = model(batch)
                finite = finite & torch.isfinite(out["loss"].detach())
                terms.append(_scalars(out))
                if steps_in_backward and any_process(~finite, device):
                    break  # (grad_accumulation is 1 under DeepSpeed)
                objective = out["loss"] + out[LOSS] if LOSS in out else out["loss"]
                accelerator.backward(objective / p.accumulation)
        nonfinite = any_process(~finite, device)  # every rank must agree
        if nonfinite and not cfg.skip_nonfinite:
            bad = next((t for t in terms if not torch.isfinite(t["loss"])), terms[-1])  # this rank's, if any
            raise UserError(f"non-finite loss at step {step + 1} (loss terms: { {k: float(v) for k, v in bad.items()} }); "
                            "the last checkpoint is intact. Lower optim.lr and start afresh in a new train.output_dir "
                            "(a resumed run keeps its schedule), or set train.skip_nonfinite = true")

        # update, then the method's after_step (EMA, queues); a step with a non-finite loss is
        # skipped whole (the schedule still advances)
        step += 1
        if nonfinite:
            state["skipped_nonfinite"] += 1
            method.skip_step()
        else:
            if o.grad_clip is not None:
                accelerator.clip_grad_norm_(method.parameters(), o.grad_clip)
            optimizer.step()
            method.after_step(step, p.max_steps)
        optimizer.zero_grad(set_to_none=True)
        lr_used = optimizer.param_groups[0]["lr"]
        scheduler.step()
        bar.update(1)

        # log
        if step % cfg.log_every == 0 or step == p.max_steps:
            now = time.time()
            metrics = mean_over_processes(_scalars(out), device)
            record = {"step": step, "epoch": (step - 1) // p.steps_per_epoch, **metrics, "lr": lr_used,
                      "images_per_s": images / max(now - window_start, 1e-9),
                      "skipped_nonfinite": state["skipped_nonfinite"]}
            images, window_start = 0, now
            bar.set_postfix(loss=f"{metrics.get('loss', float('nan')):.4f}", lr=f"{lr_used:.3g}",
                            img_s=f"{record['images_per_s']:.0f}")
            if log_file is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            if cfg.trackers:
                accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)

        # checkpoint every checkpoint_every steps, or when checkpoint_minutes passed on any process;
        # the clock is read at log steps only, where the log synchronises anyway (a collective
        # every step would stall the device for a check that matters once in minutes)
        due = cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0
        if cfg.checkpoint_minutes > 0 and step % cfg.log_every == 0:
            due = any_process(due or time.time() - last_save > 60 * cfg.checkpoint_minutes, device)
        if due and step < p.max_steps:
            checkpoint()
            last_save = time.time()
    bar.close()
    if log_file is not None:
        log_file.close()
    if resume is None or state["step"] < step:
        checkpoint()  # the final state is resumable too (e.g. to train longer)
    return Trained(method, probe, step, state["skipped_nonfinite"])

"""The build step: a recipe -> the components of a run.

Every caller that needs a model from a recipe (training, evaluation, export, the eval and export
commands, loading an export, the test suite) builds it here, in one order: the dataset and its
:class:`~ssl_kit.spec.DatasetInfo` -> the backbone (seeded, channels from the info) -> the method
-> its final :class:`~ssl_kit.spec.ViewSpec` (the method's views with the recipe's ``[views]`` on
top), handed to the method before anything runs. Then, for training: the plan (steps, batch,
learning rate), the multi-view loader, the online probe, the optimizer and the lr schedule.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ssl_kit.checkpoint import read_model, split_tensors
from ssl_kit.config import build_config
from ssl_kit.data.base import ImageDataset
from ssl_kit.data.batched import (
    BatchedViews,
    DeviceBatches,
    HybridBatches,
    WorkerCrops,
    load_split,
    memory_budget,
    refuse,
)
from ssl_kit.data.sampler import EpochBatchSampler
from ssl_kit.data.views import MultiViewDataset, multi_view
from ssl_kit.errors import PluginError, UserError
from ssl_kit.eval.features import feature_module
from ssl_kit.eval.online import PREFIX, OnlineProbe
from ssl_kit.methods.base import Method
from ssl_kit.plugins import get_registry
from ssl_kit.recipe import OptimConfig, Recipe
from ssl_kit.spec import DatasetInfo, ViewSpec
from ssl_kit.weights import load_strict


@dataclasses.dataclass(frozen=True)
class Components:
    """What a recipe builds: the training split, what its images are, the method and its views."""

    recipe: Recipe
    dataset: ImageDataset
    method: Method

    @property
    def info(self) -> DatasetInfo:
        return self.dataset.info

    @property
    def views(self) -> ViewSpec:
        """The final views, as the method received them."""
        return self.method.views


# --- dataset, method, views --------------------------------------------------------------------
def build_dataset(recipe: Recipe, split: str) -> ImageDataset:
    """The recipe's dataset for ``split``; it must carry a :class:`DatasetInfo` as ``info``."""
    comp = get_registry().get("datasets", recipe.data.name)
    dataset = comp.factory(recipe.dataset, split)
    if not isinstance(getattr(dataset, "info", None), DatasetInfo):
        raise PluginError(
            f"dataset '{recipe.data.name}' ({comp.plugin.distribution}) returned a {type(dataset).__name__} without "
            "an 'info' attribute of type ssl_kit.spec.DatasetInfo (subclass ssl_kit.data.ImageDataset and set it)"
        )
    return dataset


def final_views(method: Method, recipe: Recipe) -> ViewSpec:
    """The method's views with the recipe's ``[views]`` table on top."""
    values = {**{f.name: getattr(method.view_spec(), f.name) for f in dataclasses.fields(ViewSpec)}, **recipe.views}
    return build_config(ViewSpec, values, f"{recipe.source}: [views]")


def build_method(recipe: Recipe, info: DatasetInfo) -> Method:
    """Backbone + method initialised from ``train.seed`` (a rebuild gives the same weights), with
    its final views set. A backbone whose config has ``in_channels = None`` gets the data's."""
    registry = get_registry()
    torch.manual_seed(recipe.train.seed)
    backbone_cfg = recipe.backbone
    if backbone_cfg is not None and getattr(backbone_cfg, "in_channels", 0) is None:
        backbone_cfg = dataclasses.replace(backbone_cfg, in_channels=info.channels)
    channels = getattr(backbone_cfg, "in_channels", None)
    if isinstance(channels, int) and channels != info.channels:  # a crash at the first step otherwise
        raise UserError(f"[backbone] in_channels = {channels}, but the images of dataset '{recipe.data.name}' have "
                        f"{info.channels} channel(s); remove the key (it defaults to the dataset's)")
    backbone = registry.get("backbones", recipe.backbone_name).factory(backbone_cfg)
    if not isinstance(getattr(backbone, "num_features", None), int):
        raise PluginError(f"backbone '{recipe.backbone_name}' has no integer 'num_features' attribute")
    comp = registry.get("methods", recipe.method_name)
    method = comp.factory(backbone, recipe.method)
    if not isinstance(method, Method):
        raise PluginError(f"method '{recipe.method_name}' ({comp.plugin.distribution}) built a "
                          f"{type(method).__name__}, which is not an ssl_kit.Method subclass")
    method.set_views(final_views(method, recipe))
    for choice in (recipe.eval.features, *recipe.eval.extra_features):
        feature_module(method, choice)  # a head the method lacks fails now, not after training
    return method


def build(recipe: Recipe, split: str | None = None) -> Components:
    """Dataset (``split``, default ``data.train_split``), its info, the method and its views."""
    dataset = build_dataset(recipe, split or recipe.data.train_split)
    return Components(recipe, dataset, build_method(recipe, dataset.info))


def restore(recipe: Recipe, checkpoint: Path, info: DatasetInfo) -> tuple[Method, OnlineProbe | None]:
    """The method (and the online probe, when the checkpoint holds one) with the weights of a
    training checkpoint, loaded strictly, in eval mode."""
    parts = split_tensors(read_model(checkpoint), [PREFIX])
    what = f"checkpoint '{checkpoint}': model.safetensors"
    method = load_strict(build_method(recipe, info), parts[""], what).eval()
    probe = None
    if parts[PREFIX]:
        classes, width = parts[PREFIX]["linear.weight"].shape
        probe = load_strict(OnlineProbe(width, classes), parts[PREFIX], what).eval()
    return method, probe


# --- what training builds on top ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Plan:
    """The numbers of a training run, derived from the recipe, the data and the process count."""

    world_size: int
    global_batch: int
    accumulation: int
    steps_per_epoch: int
    max_steps: int
    warmup_steps: int
    lr_scale: float  # the effective batch over 256 with lr_scaling = "linear", else 1
    lr: float  # the effective peak learning rate

    @property
    def effective_batch(self) -> int:
        return self.global_batch * self.accumulation


def plan(recipe: Recipe, num_samples: int, world_size: int) -> Plan:
    """Steps, batch and learning rate of a run; one-line errors for sizes that cannot work."""
    global_batch, accumulation = recipe.data.batch_size, recipe.train.grad_accumulation
    if global_batch % world_size:
        raise UserError(f"[data] batch_size {global_batch} is not divisible by the {world_size} processes")
    if num_samples < global_batch:
        raise UserError(f"[data] batch_size {global_batch} is larger than the training split ({num_samples} images)")
    steps_per_epoch = num_samples // global_batch // accumulation
    if steps_per_epoch == 0:
        raise UserError(f"[train] grad_accumulation {accumulation} exceeds the batches of one epoch")
    max_steps = steps_per_epoch * recipe.train.epochs
    if recipe.train.max_steps is not None:
        max_steps = min(max_steps, recipe.train.max_steps)
    scale = global_batch * accumulation / 256 if recipe.optim.lr_scaling == "linear" else 1.0
    o = recipe.optim
    if o.schedule == "cosine" and o.min_lr > o.lr * scale:
        raise UserError(f"[optim] min_lr {o.min_lr:g} is above the peak learning rate {o.lr * scale:g} (lr {o.lr:g}, "
                        f"{o.lr_scaling} scaling): the cosine schedule would rise; lower min_lr")
    warmup = round(o.warmup_epochs * steps_per_epoch)
    if warmup > max_steps and recipe.train.max_steps is None:  # (a max_steps smoke run is short on purpose)
        warnings.warn(f"ssl_kit: [optim] warmup_epochs {o.warmup_epochs:g} ({warmup} steps) is longer than the run "
                      f"({max_steps} steps): the learning rate never reaches its peak", UserWarning, stacklevel=1)
    return Plan(world_size, global_batch, accumulation, steps_per_epoch, max_steps,
                warmup_steps=warmup, lr_scale=scale,
                lr=recipe.optim.lr * scale)


def build_views(parts: Components, seed: int | None = None) -> MultiViewDataset:
    """The training split as views of the batch contract, with the registered presets; every
    view is seeded from ``seed`` (default ``train.seed``) and the sample's position."""
    registry = get_registry()
    views = parts.views
    preset = registry.get("view_presets", views.preset, "[views] preset:").factory
    group_preset = registry.get("view_presets", views.group_preset, "[views] group_preset:").factory \
        if views.group_preset else None
    seed = parts.recipe.train.seed if seed is None else seed
    return multi_view(parts.dataset, views, preset, seed, group_preset=group_preset,
                      global_batch=parts.recipe.data.batch_size)


def build_batched_views(parts: Components, any_size: bool = False) -> BatchedViews | str:
    """The batched form of the training views (:mod:`ssl_kit.data.batched`), or why there is none;
    ``any_size``: for images of any size (the hybrid path)."""
    registry = get_registry()
    views, info = parts.views, parts.dataset.info
    preset = registry.get("view_presets", views.preset, "[views] preset:").factory
    group_preset = registry.get("view_presets", views.group_preset, "[views] group_preset:").factory \
        if views.group_preset else None
    size = info.image_size
    if size is None and not any_size:
        return "the dataset does not say its image size"
    mean, std = info.normalisation(views.normalize)
    try:
        batched = BatchedViews(views, preset, info.channels, size, size, mean, std, parts.recipe.train.seed,
                               group_preset, parts.recipe.data.batch_size)
    except ValueError as unknown:
        return f"the preset '{views.preset}' (or group_preset) has an op without a batched form ({unknown})"
    if any_size and isinstance(batched.ends, str):
        return batched.ends
    return batched


def build_device_batches(parts: Components, device: torch.device, sampler: EpochBatchSampler,
                         progress: bool = False) -> DeviceBatches | str:
    """The batched view path on ``device``, or why it cannot be used (``[data] batched_views``)."""
    views = build_batched_views(parts)
    if isinstance(views, str):
        return views
    info, n = parts.dataset.info, len(parts.dataset)
    estimate = n * info.channels * (info.image_size or 0) ** 2
    budget = memory_budget(device)
    if estimate > budget:
        return f"the split ({estimate / 2**20:.0f} MiB as uint8) exceeds a quarter of the free memory ({budget * 4 / 2**20:.0f} MiB)"
    bar = (lambda loader: tqdm(loader, desc="decode split", dynamic_ncols=True)) if progress else None
    split = load_split(parts.dataset, device, parts.recipe.data.num_workers, bar)
    if isinstance(split, str):
        return f"the split holds {split}"
    return DeviceBatches(split, views, sampler)


def _loader(dataset: torch.utils.data.Dataset, sampler: EpochBatchSampler, recipe: Recipe) -> torch.utils.data.DataLoader:
    workers = recipe.data.num_workers
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=recipe.data.pin_memory,
        persistent_workers=recipe.data.persistent_workers and workers > 0,
        prefetch_factor=recipe.data.prefetch_factor if workers > 0 else None,
        # Its own generator: creating the iterator must not consume the global RNG, which
        # belongs to the model (dropout) and is restored exactly on resume.
        generator=torch.Generator().manual_seed(recipe.train.seed),
    )


def build_loader(parts: Components, rank: int, world_size: int, start_batch: int = 0,
                 device: torch.device | None = None, say: Callable[[str], None] | None = None,
                 progress: bool = False) -> Iterable[dict[str, Any]]:
    """This process's batches: its share of every global batch from batch ``start_batch`` on, on
    ``device``, by the path ``[data] batched_views`` allows: the whole split decoded there and
    every view made in batches; else crops made per sample in DataLoader workers and the rest in
    batches there (the hybrid path); else per-sample views in DataLoader workers. ``say`` tells
    which path and why; ``progress`` shows a bar while a split is decoded."""
    recipe = parts.recipe
    sampler = EpochBatchSampler(len(parts.dataset), recipe.data.batch_size, recipe.train.seed, recipe.train.epochs,
                                rank, world_size, start_step=start_batch)
    mode, device = recipe.data.batched_views, device or torch.device("cpu")
    why = ""
    if mode in ("auto", "on"):
        batched = build_device_batches(parts, device, sampler, progress=progress)
        if not isinstance(batched, str):
            if say:
                say(f"ssl_kit: views made in batches on {device} ({batched.split.nbytes / 2**20:.1f} MiB of images)")
            return batched
        if mode == "on":
            raise refuse(batched)
        why = batched
    if mode in ("auto", "hybrid"):
        hybrid = build_batched_views(parts, any_size=True)
        if not isinstance(hybrid, str):
            if say:
                say(f"ssl_kit: views cropped per sample in DataLoader workers and finished in batches on {device}"
                    + (f" (the whole split cannot be used: {why})" if why else ""))
            return HybridBatches(_loader(WorkerCrops(parts.dataset, hybrid), sampler, recipe), hybrid, device)
        if mode == "hybrid":
            raise refuse(hybrid, mode)
        why = hybrid
    if say and mode != "off":
        say(f"ssl_kit: views made per sample ([data] batched_views = 'auto': {why})")
    return _loader(build_views(parts), sampler, recipe)


def build_probe(recipe: Recipe, info: DatasetInfo, num_features: int) -> OnlineProbe | None:
    """The online linear probe when the recipe asks for it and the data has labels."""
    if not (recipe.eval.online_probe and info.labelled):
        return None
    return OnlineProbe(num_features, int(info.num_classes))


def param_groups(method: Method, weight_decay: float, exclude_bias_norm: bool) -> list[dict[str, Any]]:
    """The method's own groups, or decay / no-decay groups (biases and norm parameters)."""
    own = method.param_groups()
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


def probe_group(recipe: Recipe, probe: OnlineProbe, lr_scale: float) -> dict[str, Any]:
    """The online probe's optimizer group: its own lr (before lr scaling), no weight decay."""
    base = recipe.eval.online_lr or (1e-3 if recipe.optim.name in ("adam", "adamw") else 0.1)
    return {"params": list(probe.parameters()), "lr": base * lr_scale, "weight_decay": 0.0}


def build_optimizer(groups: list[dict[str, Any]], o: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """The recipe's optimizer (torch.optim, or timm's LARS) over ``groups`` at peak ``lr``."""
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    from timm.optim import Lars  # timm's import is slow; only LARS runs need it

    return Lars(groups, lr=lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay,
                trust_coeff=o.lars_eta, trust_clip=o.lars_trust_clip)


def lr_factor(step: int, total: int, warmup: int, start_factor: float, min_factor: float, schedule: str) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based): linear warm-up from
    ``start_factor``, then cosine down to ``min_factor`` (or constant)."""
    if step < warmup:
        return start_factor + (1.0 - start_factor) * step / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_schedule(optimizer: torch.optim.Optimizer, o: OptimConfig, p: Plan) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step warm-up + cosine (or constant) around the peak lr of every group."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, p.max_steps, p.warmup_steps, o.warmup_start_lr / p.lr, o.min_lr / p.lr, o.schedule))

"""Views: the batch contract between data and methods.

A method declares a :class:`~ssl_kit.spec.ViewSpec` (how many global and local views, their sizes
and crop scales, the augmentation preset). :class:`MultiViewDataset` turns dataset items into views
and the trainer hands the method one dict per step::

    {"global": [Tensor(B, C, H, W), ...],   # global_views tensors
     "local":  [Tensor(B, C, h, w), ...],   # local_views tensors (multi-crop), maybe empty
     "index":  LongTensor(B),               # dataset indices
     "label":  LongTensor(B),               # only when the dataset is labelled
     "prior":  Tensor(B, P),                # only when the dataset provides one
     "group":  [Tensor(B, C, H, W), ...],   # only when group_views > 0 (group-shared augmentation)
     "group_index": LongTensor(B)}          # only when group_views > 0: each row's group

Randomness of every view derives from ``(seed, epoch, index, view)`` alone, never from a worker's
global RNG, so a resumed run, a different ``num_workers`` and 1 vs 2 processes see identical views
for the same sample. Where views are built (DataLoader workers today) is an implementation detail.

Group views (the group-augmented copies of CARE, Gupta et al.): the GLOBAL batch is cut into
``shared_groups`` contiguous groups by position; every image of a group gets the same augmentation
parameters for a group view, drawn afresh per group, step and view from
``(seed, epoch, step, group, view)``. As that depends on global positions only, a group may span
processes (its parts on each process get the same parameters); ``group_index`` tells a method that
computes a per-group loss on one process where its groups start and end. The crop of a group view
is drawn in coordinates relative to the image (see :class:`SharedResizedCrop`), so images of
different sizes in one group get the same relative box.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn
from torchvision import transforms as transforms_v1
from torchvision.transforms import v2

from ssl_kit.data.base import ImageDataset
from ssl_kit.data.presets import build_transform
from ssl_kit.errors import UserError
from ssl_kit.spec import ViewContext, ViewSpec

__all__ = ["MultiViewDataset", "SampleKey", "SharedTransform", "ViewContext", "ViewSpec", "mix_seed", "multi_view"]


class SharedResizedCrop(nn.Module):
    """``crop`` (a ``v2.RandomResizedCrop``) with its box drawn on a ``canvas`` x ``canvas`` square
    and scaled to each image, so that one seed gives every image the same relative box (and the
    same number of random draws, whatever the image's size). For an image of the canvas size the
    box is the one ``crop`` itself would draw."""

    def __init__(self, crop: v2.RandomResizedCrop, canvas: int) -> None:
        super().__init__()
        self.crop, self.canvas = crop, canvas

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        c = self.crop
        canvas = torch.empty(1, 1, 1).expand(1, self.canvas, self.canvas)
        top, left, h, w = transforms_v1.RandomResizedCrop.get_params(canvas, list(c.scale), list(c.ratio))
        height, width = v2.functional.get_size(image)
        sy, sx = height / self.canvas, width / self.canvas
        h, w = min(height, max(1, round(h * sy))), min(width, max(1, round(w * sx)))
        top, left = min(round(top * sy), height - h), min(round(left * sx), width - w)
        return v2.functional.resized_crop(
            image, top, left, h, w, size=list(c.size), interpolation=c.interpolation, antialias=c.antialias
        )


class SharedTransform:
    """A group view's transform: ``build_transform(ops, mean, std)`` whose random draws depend on the
    ``seed`` passed with each image alone. Every op draws from the CPU generator seeded with
    ``(seed, op number)``, and ``RandomResizedCrop`` ops become :class:`SharedResizedCrop` on a
    ``canvas`` square, so the same seed means the same parameters for every image."""

    def __init__(
        self, ops: list[nn.Module], mean: tuple[float, ...] | None, std: tuple[float, ...] | None, canvas: int
    ) -> None:
        ops = [SharedResizedCrop(op, canvas) if isinstance(op, v2.RandomResizedCrop) else op for op in ops]
        self.transform = build_transform(ops, mean, std)

    def __call__(self, image: Any, seed: int) -> torch.Tensor:
        generator = torch.default_generator  # the caller saves and restores its state
        for k, step in enumerate(self.transform.steps()):  # one fused step per op (build_transform)
            generator.manual_seed(mix_seed(seed, k))
            image = step(image)
        return image


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 mixing): nearby inputs give unrelated seeds."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def group_size(global_batch: int, shared_groups: int) -> int:
    """Images per group when a global batch of ``global_batch`` rows is cut into ``shared_groups``
    groups; a :class:`UserError` when they do not divide it."""
    if global_batch < 1:
        raise ValueError("group views need SampleKey.global_batch (the rows of the global batch)")
    if global_batch % shared_groups:
        raise UserError(
            f"[views] shared_groups {shared_groups} does not divide the global batch ([data] batch_size "
            f"{global_batch}): every group needs as many images; use a divisor of {global_batch}"
        )
    return global_batch // shared_groups


class SampleKey(NamedTuple):
    """What the batch sampler hands a dataset worker: enough to seed every view."""

    epoch: int
    index: int
    step: int  # global batch number since the start of training
    position: int  # row within the global batch
    global_batch: int = 0  # rows of the global batch (0: not told; group views need it)


class MultiViewDataset(torch.utils.data.Dataset):
    """Wraps a dataset of dict items and returns the views of the batch contract."""

    def __init__(
        self,
        dataset: ImageDataset,
        global_transforms: list[Callable],
        local_transforms: list[Callable],
        seed: int,
        group_transforms: list[SharedTransform] | None = None,
        shared_groups: int = 1,
        global_batch: int | None = None,
    ) -> None:
        """``group_transforms`` (one per group view) cut the global batch that each
        :class:`SampleKey` names (``global_batch`` rows) into ``shared_groups`` groups; a
        ``global_batch`` given here is checked at once."""
        self.dataset = dataset
        self.global_transforms = global_transforms
        self.local_transforms = local_transforms
        self.seed = seed
        self.group_transforms = list(group_transforms or [])
        self.shared_groups = shared_groups
        if self.group_transforms and global_batch is not None:
            self.group_size(global_batch)

    def group_size(self, global_batch: int) -> int:
        """Images per group of a global batch of ``global_batch`` rows."""
        return group_size(global_batch, self.shared_groups)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        item = self.dataset[key.index]
        image = item["image"]
        out: dict[str, Any] = {"index": key.index}
        # torchvision draws from the global CPU generator: seed it per view and restore it after
        # (generator.manual_seed is ~100x cheaper than torch.manual_seed, which seeds every device).
        generator = torch.default_generator
        saved = generator.get_state()
        try:
            for kind, transforms in (("global", self.global_transforms), ("local", self.local_transforms)):
                views = []
                for v, transform in enumerate(transforms):
                    view_id = v if kind == "global" else 1000 + v
                    generator.manual_seed(mix_seed(self.seed, key.epoch, key.index, view_id))
                    views.append(transform(image))
                out[kind] = views
            if self.group_transforms:
                group = key.position // self.group_size(key.global_batch)
                out["group"] = [
                    transform(image, mix_seed(self.seed, key.epoch, key.step, group, 2000 + v))
                    for v, transform in enumerate(self.group_transforms)
                ]
                out["group_index"] = group
        finally:
            generator.set_state(saved)
        for extra in ("label", "prior"):
            if extra in item:
                out[extra] = item[extra]
        return out


Preset = Callable[[ViewContext], list[nn.Module]]


def multi_view(
    dataset: ImageDataset,
    spec: ViewSpec,
    preset: Preset,
    seed: int,
    *,
    group_preset: Preset | None = None,
    global_batch: int | None = None,
) -> MultiViewDataset:
    """The views ``spec`` describes of ``dataset``'s items: ``preset`` builds every global and
    local view (and ``group_preset``, default ``preset``, the group views), normalised with the
    dataset's mean and std when ``spec.normalize``."""
    info = dataset.info
    size, local_size = spec.sizes(info.image_size)
    mean, std = info.normalisation(spec.normalize)

    def transforms(kind: str, count: int, size: int, scale: tuple[float, float]) -> list[Callable]:
        return [build_transform(preset(ViewContext(kind, v, size, scale, info.channels)), mean, std) for v in range(count)]

    group = []  # group-shared views (CARE); their crops are drawn on a canvas of the image size
    if spec.group_views:
        canvas = max(size, info.image_size or size)
        group = [SharedTransform((group_preset or preset)(ViewContext("group", v, size, spec.global_scale, info.channels)),
                                 mean, std, canvas) for v in range(spec.group_views)]
    return MultiViewDataset(
        dataset,
        transforms("global", spec.global_views, size, spec.global_scale),
        transforms("local", spec.local_views, local_size, spec.local_scale),
        seed,
        group,
        spec.shared_groups,
        global_batch,
    )

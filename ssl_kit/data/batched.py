"""The batched view path: a split decoded once into one uint8 tensor on the training device, and
every view of a step made there at once, with per-image parameters.

Presets stay what they are (lists of torchvision v2 transforms, :mod:`ssl_kit.data.presets`):
:func:`compile_preset` reads such a list and returns the batched equivalent of each op, or the
name of the first op it does not know (the run then falls back to the per-sample path of
:mod:`ssl_kit.data.views`). Known ops: ``Resize``, ``CenterCrop``, ``RandomResizedCrop``
(bilinear or bicubic, antialiased), ``RandomHorizontalFlip``, ``ColorJitter`` (its four
adjustments in a random order per image, as torchvision), ``RandomGrayscale``, ``GaussianBlur``,
``RandomSolarize``, ``RandomAffine`` (nearest neighbour, zero fill), ``ClampUnit``, each also
inside ``RandomApply``.

Determinism: op ``k`` of view ``v`` draws its parameters for sample ``index`` from
``uniform(mix_seed(seed, epoch, view_id, k, STREAM), index)`` (:func:`~ssl_kit.data.batched_ops.uniform`),
never from a global RNG; a group view (CARE) keys its draws on ``(seed, epoch, step, group)``.
So a view depends on the integers that name it alone: resume, 1 vs 2 processes and the batch a
sample lands in change nothing. The draws differ from the per-sample path's (torchvision's own
generator), so switching paths changes the views, not their distribution.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.transforms import v2

from ssl_kit.data import batched_ops as ops
from ssl_kit.data.base import ImageDataset
from ssl_kit.data.presets import ClampUnit
from ssl_kit.data.views import SampleKey, group_size, mix_seed
from ssl_kit.errors import DataError
from ssl_kit.spec import ViewContext, ViewSpec

STREAM = 0xB47C  # separates the batched path's draws from every other use of mix_seed

Op = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (images, uniforms (B, draws)) -> images


@dataclass(frozen=True)
class BatchedOp:
    """One op of a view: ``fn(x, u)`` with ``u`` holding ``draws`` uniforms per image."""

    name: str
    draws: int
    fn: Op
    fixes_size: bool = False  # its output size does not depend on its input's (a crop or a 2-d resize)


def _applied(u: torch.Tensor, p: float) -> torch.Tensor:
    return u < p  # RandomApply's test: torch.rand(1) < p


def _where(mask: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
           arg: torch.Tensor | None = None) -> torch.Tensor:
    """``fn(x[i], arg[i])`` for the rows where ``mask``, ``x[i]`` elsewhere: only those rows are
    computed (a jittered image costs one adjustment per kind, not one per kind and position)."""
    rows = mask.nonzero().squeeze(1)
    if rows.numel() == 0:
        return x
    picked = fn(x[rows], arg[rows] if arg is not None else rows)
    return x.index_copy(0, rows, picked.to(x.dtype))


def _interpolation(op: nn.Module) -> str | None:
    if not getattr(op, "antialias", True):
        return None
    mode = str(getattr(op.interpolation, "value", op.interpolation))  # an InterpolationMode or its value
    return mode if mode in ("bilinear", "bicubic") else None


def _jitter(op: v2.ColorJitter, p: float) -> BatchedOp:
    """ColorJitter at probability ``p``: u[0] the test, u[1:5] the factors, u[5:9] the order."""
    adjust = [(op.brightness, ops.brightness), (op.contrast, ops.contrast), (op.saturation, ops.saturation),
              (op.hue, ops.hue)]

    def fn(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        on = _applied(u[:, 0], p)
        order = u[:, 5:9].argsort(1)  # a uniform random permutation per image, as torch.randperm(4)
        for position in range(4):
            for k, (bounds, adjust_fn) in enumerate(adjust):
                if bounds is None:
                    continue
                factor = bounds[0] + (bounds[1] - bounds[0]) * u[:, 1 + k]
                x = _where(on & (order[:, position] == k), adjust_fn, x, factor)
        return x

    return BatchedOp("ColorJitter", 9, fn)


def _crop(op: v2.RandomResizedCrop, shape: list[int]) -> BatchedOp | None:
    mode = _interpolation(op)
    if mode is None:
        return None
    size = (int(op.size[0]), int(op.size[1]))
    h, w = shape[1], shape[2]
    shape[1:] = size

    def fn(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        top, left, bh, bw = ops.random_crop_boxes(u, h, w, tuple(op.scale), tuple(op.ratio))
        return ops.resized_crop(x, top, left, bh, bw, size, mode)

    return BatchedOp("RandomResizedCrop", 22, fn, fixes_size=True)


def _resize(op: v2.Resize, shape: list[int]) -> BatchedOp | None:
    mode = _interpolation(op)
    if mode is None or op.max_size is not None:
        return None
    h, w = shape[1], shape[2]
    if len(op.size) == 2:
        size = (int(op.size[0]), int(op.size[1]))
    else:  # the short side to size, the long side in proportion (torchvision's rule)
        short, long = (h, w) if h <= w else (w, h)
        new_short, new_long = int(op.size[0]), int(int(op.size[0]) * long / short)
        size = (new_short, new_long) if h <= w else (new_long, new_short)
    shape[1:] = size

    def fn(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        n = len(x)
        zeros, full_h, full_w = (torch.zeros(n, dtype=torch.int64, device=x.device),
                                 torch.full((n,), h, device=x.device), torch.full((n,), w, device=x.device))
        return x if size == (h, w) else ops.resized_crop(x, zeros, zeros, full_h, full_w, size, mode)

    return BatchedOp("Resize", 0, fn, fixes_size=len(op.size) == 2)


def _center_crop(op: v2.CenterCrop, shape: list[int]) -> BatchedOp | None:
    ch, cw = int(op.size[0]), int(op.size[1])
    h, w = shape[1], shape[2]
    if ch > h or cw > w:
        return None  # torchvision pads; not needed by any preset
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    shape[1:] = [ch, cw]
    return BatchedOp("CenterCrop", 0, lambda x, u: x[..., top:top + ch, left:left + cw], fixes_size=True)


def _affine(op: v2.RandomAffine, shape: list[int]) -> BatchedOp | None:
    fill = op.fill if not isinstance(op.fill, dict) else set(op.fill.values())
    if str(getattr(op.interpolation, "value", op.interpolation)) != "nearest" or op.center is not None or fill not in (0, None, {0}, {None}):
        return None
    h, w = shape[1], shape[2]
    deg, tr, sc, sh = op.degrees, op.translate, op.scale, op.shear

    def fn(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        def between(k: int, lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * u[:, k].double()
        zeros = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        angle = between(0, deg[0], deg[1])
        tx, ty = zeros, zeros
        if tr is not None:
            tx = torch.round(between(1, -tr[0] * w, tr[0] * w))
            ty = torch.round(between(2, -tr[1] * h, tr[1] * h))
        scale = between(3, sc[0], sc[1]) if sc is not None else zeros + 1.0
        shear_x = between(4, sh[0], sh[1]) if sh is not None else zeros
        shear_y = between(5, sh[2], sh[3]) if sh is not None and len(sh) == 4 else zeros
        return ops.affine_nearest(x, angle, tx, ty, shear_x, shear_y, scale)

    return BatchedOp("RandomAffine", 6, fn)


def _compile_op(op: nn.Module, shape: list[int], p: float = 1.0) -> BatchedOp | None:
    """The batched form of one torchvision op (applied with probability ``p``), or None."""
    channels = shape[0]
    if isinstance(op, v2.RandomApply):
        inner = list(op.transforms)
        if len(inner) != 1:
            return None
        return _compile_op(inner[0], shape, p * op.p)
    if isinstance(op, v2.ColorJitter):
        return _jitter(op, p)
    if isinstance(op, v2.GaussianBlur):
        kh, kw = op.kernel_size
        (lo, hi) = op.sigma
        if kh != kw or kh // 2 >= min(shape[1:]):  # reflect padding needs pad < side
            return None
        return BatchedOp("GaussianBlur", 2, lambda x, u: _where(
            _applied(u[:, 0], p), lambda xs, sigma: ops.gaussian_blur(xs, kh, sigma), x, lo + (hi - lo) * u[:, 1]))
    if p != 1.0:
        return None  # the ops below carry their own probability
    if isinstance(op, ClampUnit):
        return BatchedOp("ClampUnit", 0, lambda x, u: x.clamp(0.0, 1.0))
    if isinstance(op, v2.RandomHorizontalFlip):
        return BatchedOp("RandomHorizontalFlip", 1, lambda x, u: _where(_applied(u[:, 0], op.p), lambda xs, _: xs.flip(-1), x))
    if isinstance(op, v2.RandomGrayscale):
        if channels == 1:
            return BatchedOp("RandomGrayscale", 0, lambda x, u: x)
        return BatchedOp("RandomGrayscale", 1, lambda x, u: _where(
            _applied(u[:, 0], op.p), lambda xs, _: ops.grayscale(xs).expand_as(xs), x))
    if isinstance(op, v2.RandomSolarize):
        return BatchedOp("RandomSolarize", 1, lambda x, u: _where(
            _applied(u[:, 0], op.p), lambda xs, _: ops.solarize(xs, float(op.threshold)), x))
    for kind, make in ((v2.RandomResizedCrop, _crop), (v2.Resize, _resize), (v2.CenterCrop, _center_crop),
                       (v2.RandomAffine, _affine)):
        if type(op) is kind:
            return make(op, shape)
    return None


def compile_preset(preset_ops: list[nn.Module], channels: int, height: int, width: int) -> list[BatchedOp] | str:
    """The batched ops of a preset's list for images of that shape, or the name of the first op
    the batched path cannot make (the caller falls back to per-sample views)."""
    shape = [channels, height, width]
    out = []
    for op in preset_ops:
        compiled = _compile_op(op, shape)
        if compiled is None:
            return type(op).__name__
        out.append(compiled)
    return out


class BatchedViews:
    """Every view of the batch contract for a batch of uint8 images at once; or, on the hybrid
    path, each image's crops one at a time (:meth:`crop`, in DataLoader workers) and the rest of
    the ops for the batch of crops (:meth:`finish`, on the device)."""

    def __init__(self, spec: ViewSpec, preset: Callable[[ViewContext], list[nn.Module]], channels: int,
                 height: int | None, width: int | None, mean: tuple[float, ...] | None,
                 std: tuple[float, ...] | None, seed: int,
                 group_preset: Callable[[ViewContext], list[nn.Module]] | None = None,
                 global_batch: int | None = None) -> None:
        """Raises ``ValueError`` naming the op when some view's preset has one the batched path
        does not know; a ``global_batch`` given is checked against the groups at once. ``height``
        and ``width``: the images' size (None where they differ: the ops are then checked on
        images of twice the view size). :meth:`crop` (the hybrid path) compiles the ops again for
        each image size it meets."""
        if spec.group_views and global_batch is not None:
            group_size(global_batch, spec.shared_groups)
        size, local_size = spec.sizes(height)
        self.seed, self.shared_groups, self.channels = seed, spec.shared_groups, channels
        self.mean = torch.tensor(mean).view(1, -1, 1, 1) if mean is not None and std is not None else None
        self.std = torch.tensor(std).view(1, -1, 1, 1) if mean is not None and std is not None else None
        self.contexts = {
            "global": [(ViewContext("global", v, size, spec.global_scale, channels), preset) for v in range(spec.global_views)],
            "local": [(ViewContext("local", v, local_size, spec.local_scale, channels), preset) for v in range(spec.local_views)],
            "group": [(ViewContext("group", v, size, spec.global_scale, channels), group_preset or preset)
                      for v in range(spec.group_views)],
        }
        self._compiled: dict[tuple[str, int, int, int], list[BatchedOp]] = {}
        self.shape = (height or 2 * size, width or 2 * size)
        self.ops = {kind: [self.view_ops(kind, v, *self.shape) for v in range(len(contexts))]
                    for kind, contexts in self.contexts.items()}
        self.global_ops, self.local_ops, self.group_ops = self.ops["global"], self.ops["local"], self.ops["group"]
        self.ends = self.crop_ends()

    def view_ops(self, kind: str, view: int, height: int, width: int) -> list[BatchedOp]:
        """The compiled ops of one view for images of ``height`` x ``width`` (cached)."""
        key = (kind, view, height, width)
        if key not in self._compiled:
            context, maker = self.contexts[kind][view]
            compiled = compile_preset(maker(context), self.channels, height, width)
            if isinstance(compiled, str):
                raise ValueError(compiled if (height, width) == self.shape else
                                 f"{compiled} on an image of {height} x {width} px")
            self._compiled[key] = compiled
        return self._compiled[key]

    def crop_ends(self) -> dict[str, list[int]] | str:
        """Where each view's per-sample part ends on the hybrid path: after its first op whose
        output size is fixed (a crop, or a resize to height and width); or why a view has none."""
        ends: dict[str, list[int]] = {}
        for kind, views in self.ops.items():
            ends[kind] = []
            for v, view_ops in enumerate(views):
                fixed = [k for k, op in enumerate(view_ops) if op.fixes_size]
                if not fixed:
                    return f"the {kind} view {v} has no op of a fixed output size (a crop or a resize to (h, w))"
                ends[kind].append(fixed[0] + 1)
        return ends

    def _streams(self, epoch: int, step: int) -> Iterator[tuple[str, int, int]]:
        """(kind, view, stream) of every view of a step; group views are keyed on their group."""
        for v in range(len(self.global_ops)):
            yield "global", v, mix_seed(self.seed, epoch, v, STREAM)
        for v in range(len(self.local_ops)):
            yield "local", v, mix_seed(self.seed, epoch, 1000 + v, STREAM)
        for v in range(len(self.group_ops)):
            yield "group", v, mix_seed(self.seed, epoch, step, 2000 + v, STREAM)

    @staticmethod
    def _run(x: torch.Tensor, view_ops: list[BatchedOp], stream: int, keys: torch.Tensor, start: int,
             stop: int) -> torch.Tensor:
        """Ops ``start`` to ``stop`` of a view; op ``k`` draws from stream ``(stream, k)``."""
        for k in range(start, stop):
            op = view_ops[k]
            u = ops.uniform(mix_seed(stream, k), keys, op.draws) if op.draws else keys.new_empty(len(keys), 0)
            x = op.fn(x, u)
        return x

    def _make(self, images: torch.Tensor, view_ops: list[BatchedOp], stream: int, keys: torch.Tensor,
              start: int = 0) -> torch.Tensor:
        x = self._run(images.to(torch.float32) / 255.0, view_ops, stream, keys, start, len(view_ops))
        if self.mean is not None:
            x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        return x.contiguous()

    def __call__(self, images: torch.Tensor, index: torch.Tensor, epoch: int, step: int = 0,
                 position: torch.Tensor | None = None, global_batch: int = 0) -> dict[str, Any]:
        """The views of ``images`` (uint8 (B, C, H, W)) of dataset indices ``index`` at
        ``epoch``; ``step``, ``position`` (rows in the global batch) and ``global_batch`` place the
        rows in their groups when the spec has group views."""
        out: dict[str, Any] = {"global": [], "local": []}
        if self.group_ops:
            if position is None:
                raise ValueError("group views need each row's position in the global batch")
            out["group"], out["group_index"] = [], position // group_size(global_batch, self.shared_groups)
        for kind, v, stream in self._streams(epoch, step):
            keys = out["group_index"] if kind == "group" else index
            out[kind].append(self._make(images, self.ops[kind][v], stream, keys))
        return out

    def crop(self, image: torch.Tensor, index: int, epoch: int, step: int = 0, group: int = 0) -> dict[str, list[torch.Tensor]]:
        """The hybrid path's per-sample part for one uint8 (C, H, W) image of any size: every
        view's ops up to its crop (:meth:`crop_ends`), with the batched path's draws, rounded to
        uint8 (C, h, w). ``group``: the image's group, for group views."""
        ends = self.ends
        if isinstance(ends, str):
            raise ValueError(ends)
        x = image[None].to(torch.float32) / 255.0
        out: dict[str, list[torch.Tensor]] = {}
        for kind, v, stream in self._streams(epoch, step):
            keys = torch.tensor([group if kind == "group" else index])
            y = self._run(x, self.view_ops(kind, v, *image.shape[1:]), stream, keys, 0, ends[kind][v])
            out.setdefault(kind, []).append(to_uint8(y[0]))
        return out

    def finish(self, crops: dict[str, list[torch.Tensor]], index: torch.Tensor, epoch: int, step: int = 0,
               group_index: torch.Tensor | None = None) -> dict[str, list[torch.Tensor]]:
        """The hybrid path's batched part: the rest of every view's ops on its uint8 crops (B, C,
        h, w) from :meth:`crop`, then the normalisation."""
        ends = self.ends
        assert not isinstance(ends, str)  # crop() refused such views already
        out: dict[str, list[torch.Tensor]] = {kind: [] for kind in crops}
        for kind, v, stream in self._streams(epoch, step):
            keys = group_index if kind == "group" else index
            out[kind].append(self._make(crops[kind][v], self.ops[kind][v], stream, keys, start=ends[kind][v]))
        return out


# --- the split on the device -----------------------------------------------------------------------
@dataclass
class DeviceSplit:
    """A whole split in memory: uint8 images (N, C, H, W), labels (N,) and priors (N, P) or None."""

    images: torch.Tensor
    labels: torch.Tensor | None
    priors: torch.Tensor | None

    @property
    def nbytes(self) -> int:
        """Bytes held (images, labels, priors)."""
        return sum(t.numel() * t.element_size() for t in (self.images, self.labels, self.priors) if t is not None)


class _NotUniform(Exception):
    pass


def to_uint8(image: Any) -> torch.Tensor:
    """A PIL image or an image tensor as uint8 (C, H, W); a float tensor is read as values in [0, 1]
    and rounded to the nearest of the 256 levels."""
    if not isinstance(image, torch.Tensor):
        return v2.functional.pil_to_tensor(image)
    if image.dtype == torch.uint8:
        return image
    return image.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def _as_uint8(image: Any) -> torch.Tensor:
    """:func:`to_uint8` for the whole split, which keeps its images as they are: a float tensor is refused."""
    if isinstance(image, torch.Tensor) and image.dtype != torch.uint8:
        raise _NotUniform(f"images of dtype {image.dtype}")
    return to_uint8(image)


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    images = [_as_uint8(item["image"]) for item in items]
    shape = images[0].shape
    for image in images:
        if image.shape != shape:
            raise _NotUniform(f"images of different sizes ({tuple(shape)} and {tuple(image.shape)})")
    out: dict[str, Any] = {"image": torch.stack(images)}
    for extra in ("label", "prior"):
        if extra in items[0]:
            out[extra] = torch.stack([torch.as_tensor(item[extra]) for item in items])
    return out


def memory_budget(device: torch.device) -> int:
    """Bytes the batched path may hold: a quarter of the device's free memory (of the host's
    available memory on CPU; 2 GiB when it cannot be read)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 4
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):
        return 2 << 30


def load_split(dataset: ImageDataset, device: torch.device, workers: int = 0,
               progress: Iterable | None = None) -> DeviceSplit | str:
    """``dataset`` decoded once onto ``device``, or the reason it cannot be (images of different
    sizes or channels than ``dataset.info`` says). ``progress`` wraps the decoding loader (tqdm)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=512, num_workers=workers, collate_fn=_collate)
    parts: dict[str, list[torch.Tensor]] = {"image": [], "label": [], "prior": []}
    shape = None
    try:
        for batch in (progress(loader) if progress else loader):
            shape = shape or batch["image"].shape[1:]
            if batch["image"].shape[1:] != shape:
                raise _NotUniform(f"images of different sizes ({tuple(shape)} and {tuple(batch['image'].shape[1:])})")
            for key, value in batch.items():
                parts[key].append(value)
    except _NotUniform as why:
        return str(why)
    if shape is None or shape[0] != dataset.info.channels:
        return f"images with {shape[0] if shape is not None else 0} channels, not {dataset.info.channels}"
    images = torch.cat(parts["image"]).to(device)
    labels = torch.cat(parts["label"]).long().to(device) if parts["label"] else None
    priors = torch.cat(parts["prior"]).to(device) if parts["prior"] else None
    return DeviceSplit(images, labels, priors)


class DeviceBatches:
    """The batches of a batch sampler (lists of :class:`SampleKey`), made on the device: index
    the split, make the views, attach labels and priors."""

    def __init__(self, split: DeviceSplit, views: BatchedViews, sampler: Iterable[list[SampleKey]]) -> None:
        self.split, self.views, self.sampler = split, views, sampler

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        device = self.split.images.device
        for keys in self.sampler:
            index = torch.tensor([k.index for k in keys], dtype=torch.int64, device=device)
            position = torch.tensor([k.position for k in keys], dtype=torch.int64, device=device)
            batch = self.views(self.split.images[index], index, keys[0].epoch, keys[0].step, position,
                               keys[0].global_batch)
            batch["index"] = index
            if self.split.labels is not None:
                batch["label"] = self.split.labels[index]
            if self.split.priors is not None:
                batch["prior"] = self.split.priors[index]
            yield batch


# --- the hybrid path: crops in DataLoader workers, the rest on the device --------------------------
class WorkerCrops(torch.utils.data.Dataset):
    """The hybrid path's per-sample part, for splits that do not fit the device or whose images
    differ in size: a DataLoader worker decodes each image and makes its views' crops
    (:meth:`BatchedViews.crop`, uint8); :class:`HybridBatches` does the rest on the device."""

    def __init__(self, dataset: ImageDataset, views: BatchedViews) -> None:
        self.dataset, self.views = dataset, views

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        item = self.dataset[key.index]
        image = to_uint8(item["image"])  # a float tensor in [0, 1] from a third-party dataset too
        group = key.position // group_size(key.global_batch, self.views.shared_groups) if self.views.group_ops else 0
        out: dict[str, Any] = {"index": key.index, "epoch": key.epoch, "step": key.step,
                               **self.views.crop(image, key.index, key.epoch, key.step, group)}
        if self.views.group_ops:
            out["group_index"] = group
        for extra in ("label", "prior"):
            if extra in item:
                out[extra] = item[extra]
        return out


class HybridBatches:
    """The batches of a DataLoader over :class:`WorkerCrops`, moved to ``device`` and finished
    there (:meth:`BatchedViews.finish`): the batch contract, as the other paths."""

    def __init__(self, loader: Iterable[dict[str, Any]], views: BatchedViews, device: torch.device) -> None:
        self.loader, self.views, self.device = loader, views, device

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        blocking = self.device.type != "cuda"
        for batch in self.loader:
            epoch, step = int(batch.pop("epoch")[0]), int(batch.pop("step")[0])
            crops = {kind: [c.to(self.device, non_blocking=not blocking) for c in batch.pop(kind)]
                     for kind in ("global", "local", "group") if kind in batch}
            batch = {k: v.to(self.device, non_blocking=not blocking) for k, v in batch.items()}
            batch.update(self.views.finish(crops, batch["index"], epoch, step, batch.get("group_index")))
            batch.setdefault("local", [])  # the batch contract: a (possibly empty) list of local views
            yield batch


def refuse(reason: str, mode: str = "on") -> DataError:
    """The error of ``[data] batched_views = "on"`` (or ``"hybrid"``) when that path cannot be used."""
    return DataError(f"[data] batched_views = '{mode}' but the {'hybrid' if mode == 'hybrid' else 'batched'} "
                     f"view path cannot be used: {reason}; set batched_views = 'auto' (falls back to per-sample "
                     "views) or 'off'")

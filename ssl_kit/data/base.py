"""The dataset contract (``ssl_kit.data.ImageDataset``) and the in-memory dataset every small source
builds on (``ssl_kit.data.TensorImages``).

A dataset factory is ``factory(cfg, split) -> ImageDataset``. Items are dicts
``{"image": PIL image or uint8 tensor (C, H, W), "index": int, "label": int (if labelled),
"prior": tensor (optional)}``; ``dataset.info`` (a :class:`~ssl_kit.spec.DatasetInfo`) tells the
rest of ssl_kit the channels, image size, normalisation, classes and a description.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ssl_kit.errors import DataError
from ssl_kit.spec import DatasetInfo

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "test")


class ImageDataset(torch.utils.data.Dataset):
    """Base class of datasets: ``info`` describes the images, items are dicts (module docstring).

    ``labels`` holds one label per image (None for label-free data). :meth:`skip_report` says
    which unreadable files were skipped (datasets of files with ``on_error = "skip"``).
    """

    info: DatasetInfo
    labels: Any = None

    def skip_report(self) -> str:
        """One line about skipped unreadable images, or '' (the run prints it at the end)."""
        return ""


def check_split(name: str, split: str, allowed: tuple[str, ...] = SPLITS) -> None:
    """A :class:`DataError` when dataset ``name`` has no split ``split``."""
    if split not in allowed:
        raise DataError(f"dataset '{name}' has no split '{split}'; allowed: {', '.join(allowed)}")


def class_count(labels: Any, num_classes: int | None) -> int | None:
    """``num_classes``, or the largest label + 1; None when ``labels`` is None (label-free)."""
    if labels is None:
        return None
    return int(num_classes) if num_classes else int(np.asarray(labels).max()) + 1


class TensorImages(ImageDataset):
    """Images held in memory as a uint8 tensor (N, C, H, W), with optional labels (N,)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        num_classes: int | None = None,
        classes: list[str] | None = None,
        description: str = "",
        indices: list[int] | None = None,
    ) -> None:
        self.images, self.labels = images, labels
        self.info = DatasetInfo(
            channels=int(images.shape[1]),
            image_size=int(images.shape[-1]),
            mean=tuple(mean) if mean is not None else None,
            std=tuple(std) if std is not None else None,
            num_classes=class_count(labels, num_classes or (len(classes) if classes else None)),
            classes=tuple(classes) if classes else None,
            description=description or f"{len(images)} in-memory images",
            indices=tuple(indices) if indices is not None else None,
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"image": self.images[index], "index": index}
        if self.labels is not None:
            item["label"] = int(self.labels[index])
        return item


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) scaled to [0, 1], rounded to 4 digits."""
    x = images.double() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)

"""Built-in dataset sources: scikit-learn's digits, synthetic data, and a folder of images.

A dataset factory is ``factory(cfg, split) -> ImageDataset`` (the contract is in
:mod:`ssl_kit.data.base`; :class:`TensorImages` wraps in-memory uint8 images).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ssl_kit.config import knob
from ssl_kit.data.base import IMAGENET_MEAN, IMAGENET_STD, TensorImages, channel_stats, check_split
from ssl_kit.data.files import IMAGE_EXTENSIONS, ON_ERROR_HELP, FileImages, normalise_extensions, scan_images
from ssl_kit.data.priors import PriorOptions, with_prior
from ssl_kit.errors import DataError

__all__ = ["DigitsConfig", "FakeConfig", "ImageFolderConfig", "TensorImages", "digits", "fake", "image_folder"]


# --- digits ------------------------------------------------------------------------------------
@dataclasses.dataclass
class DigitsConfig:
    test_size: float = knob(0.3, "fraction of the 1797 images held out for testing (stratified)", gt=0, lt=1)
    split_seed: int = knob(0, "random_state of the stratified train/test split")


def digits(cfg: DigitsConfig, split: str) -> TensorImages:
    """scikit-learn's 8x8 handwritten digits (ships inside scikit-learn: works offline).

    A fixed stratified split (``test_size``, ``split_seed``); its indices are kept in
    ``info.indices`` and written to results.json. Pixels 0..16 are scaled to 0..255.
    """
    check_split("digits", split)
    from sklearn.datasets import load_digits  # imported when used: scikit-learn's import is slow
    from sklearn.model_selection import train_test_split

    data = load_digits()
    train_idx, test_idx = train_test_split(
        np.arange(len(data.target)),
        test_size=cfg.test_size,
        stratify=data.target,
        random_state=cfg.split_seed,
    )
    idx = np.sort(train_idx if split == "train" else test_idx)
    pixels = np.clip(np.round(data.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    all_images = torch.from_numpy(pixels).unsqueeze(1)  # (1797, 1, 8, 8)
    mean, std = channel_stats(all_images[np.sort(train_idx)])
    return TensorImages(
        all_images[idx],
        torch.from_numpy(data.target[idx]).long(),
        mean=mean,
        std=std,
        num_classes=10,
        classes=[str(c) for c in range(10)],
        indices=[int(i) for i in idx],
        description=f"scikit-learn digits, stratified split test_size={cfg.test_size} "
        f"random_state={cfg.split_seed}, {split} part ({len(idx)} images)",
    )


# --- fake --------------------------------------------------------------------------------------
@dataclasses.dataclass
class FakeConfig:
    num_samples: int = knob(64, "images in the train split (the test split has half as many)", min=1)
    image_size: int = knob(16, "side of the square images in px", min=4)
    channels: Literal[1, 3] = knob(3, "image channels: 1 or 3")
    num_classes: int = knob(4, "number of classes", min=1)
    labelled: bool = knob(True, "include labels")
    seed: int = knob(0, "seed of the generated data")


def fake(cfg: FakeConfig, split: str) -> TensorImages:
    """Deterministic synthetic images for tests: per-class colour patterns plus noise."""
    check_split("fake", split)
    n = cfg.num_samples if split == "train" else max(1, cfg.num_samples // 2)
    g = torch.Generator().manual_seed(cfg.seed * 2 + (split == "test"))
    labels = torch.arange(n) % cfg.num_classes
    prototypes = torch.rand(cfg.num_classes, cfg.channels, cfg.image_size, cfg.image_size,
                            generator=torch.Generator().manual_seed(cfg.seed))
    noise = torch.rand(n, cfg.channels, cfg.image_size, cfg.image_size, generator=g)
    images = (0.7 * prototypes[labels] + 0.3 * noise).mul(255).round().to(torch.uint8)
    return TensorImages(
        images,
        labels if cfg.labelled else None,
        mean=(0.5,) * cfg.channels,
        std=(0.25,) * cfg.channels,
        num_classes=cfg.num_classes,
        description=f"synthetic 'fake' data, seed {cfg.seed}, {split} split ({n} images)",
    )


# --- image_folder ------------------------------------------------------------------------------
@dataclasses.dataclass
class ImageFolderConfig(PriorOptions):
    root: str = knob(help="folder with train/ and test/ subfolders, or the images themselves")
    train_dir: str = knob("train", "subfolder of root for the train split ('' or '.': root itself)")
    test_dir: str = knob("test", "subfolder of root for the test split")
    extensions: list[str] = knob(IMAGE_EXTENSIONS, "file endings that count as images (case-insensitive)")
    labelled: str = knob("auto", "'auto' (class folders when the split folder holds only folders), 'yes' or 'no'")
    image_size: int | None = knob(None, "nominal image side in px (default: the width of the first image)", min=1)
    on_error: Literal["raise", "skip"] = knob("raise", ON_ERROR_HELP)
    mean: tuple[float, float, float] = knob(tuple(IMAGENET_MEAN), "per-channel mean of [0, 1] pixels (R, G, B)", min=0, max=1)
    std: tuple[float, float, float] = knob(tuple(IMAGENET_STD), "per-channel std of [0, 1] pixels (R, G, B)", gt=0)

    def __post_init__(self) -> None:
        if self.labelled not in ("auto", "yes", "no"):
            raise ValueError(f"key 'labelled' must be 'auto', 'yes' or 'no', got {self.labelled!r}")


class ImageFolder(FileImages):
    """Class subfolders (labelled: each subfolder's tree is one class) or a flat/recursive tree of
    images (unlabelled), read with :class:`FileImages`."""

    def __init__(self, folder: Path, cfg: ImageFolderConfig) -> None:
        self.folder = folder
        extensions = normalise_extensions(cfg.extensions)
        with os.scandir(folder) as entries:
            listing = list(entries)
        subdirs = sorted(e.name for e in listing if e.is_dir(follow_symlinks=True))
        loose = any(e.is_file() and e.name.lower().endswith(extensions) for e in listing)
        labelled = cfg.labelled == "yes" or (cfg.labelled == "auto" and bool(subdirs) and not loose)
        if labelled and not subdirs:
            raise DataError(f"image_folder: labelled = 'yes' but '{folder}' has no class folders")
        paths: list[str] = []
        labels: list[int] = []
        if labelled:
            for label, name in enumerate(subdirs):
                files = scan_images(os.path.join(folder, name), extensions)
                paths += files
                labels += [label] * len(files)
        else:
            paths = scan_images(str(folder), extensions)
        if not paths:
            raise DataError(f"image_folder: no images with endings {', '.join(extensions)} under '{folder}'")
        kind = f"{len(subdirs)} class folders" if labelled else "unlabelled tree"
        super().__init__(
            paths,
            np.asarray(labels, dtype=np.int64) if labelled else None,
            subdirs if labelled else None,
            root_folder=str(folder),
            on_error=cfg.on_error,
            image_size=cfg.image_size,
            mean=tuple(cfg.mean),
            std=tuple(cfg.std),
            description=f"image folder '{folder}' ({kind}, {len(paths)} images)",
        )


def image_folder(cfg: ImageFolderConfig, split: str) -> Any:
    """Images from a folder: ``root/<train_dir>`` and ``root/<test_dir>``, or ``root`` itself; with
    a per-sample prior when ``prior_file`` is set (keyed by index, or by the file name relative to
    the split's folder)."""
    check_split("image_folder", split)
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"image_folder: root '{root}' is not a folder")
    sub = cfg.train_dir if split == "train" else cfg.test_dir
    folder = root / sub if sub not in ("", ".") else root
    if not folder.is_dir():
        if split == "train":
            folder = root  # a plain folder of images (or of class folders) is the train split
        else:
            raise DataError(
                f"image_folder: no test split: '{folder}' does not exist (set data.test_dir, or "
                "eval.dataset to another dataset)"
            )
    return with_prior(ImageFolder(folder, cfg), cfg, split)

"""Built-in dataset sources.

A dataset factory is ``factory(cfg, split) -> torch Dataset`` whose items are dicts
``{"image": PIL image or uint8 tensor (C, H, W), "index": int, "label": int (if labelled),
"prior": tensor (optional)}``. Optional attributes tell the trainer about the data:
``image_size`` (int), ``channels`` (1 or 3), ``mean``/``std`` (per channel, for [0, 1] pixels),
``num_classes`` and ``classes``; ``description`` names the copy of the data for reports.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ssl_kit.config import knob
from ssl_kit.data.priors import PriorOptions, with_prior
from ssl_kit.data.views import IMAGENET_MEAN, IMAGENET_STD
from ssl_kit.errors import DataError

SPLITS = ("train", "test")


def _check_split(name: str, split: str, allowed: tuple[str, ...] = SPLITS) -> None:
    if split not in allowed:
        raise DataError(f"dataset '{name}' has no split '{split}'; allowed: {', '.join(allowed)}")


class TensorImages(torch.utils.data.Dataset):
    """Images held in memory as a uint8 tensor (N, C, H, W), with optional labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, **attrs: Any) -> None:
        self.images, self.labels = images, labels
        self.image_size = int(images.shape[-1])
        self.channels = int(images.shape[1])
        for key, value in attrs.items():
            setattr(self, key, value)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"image": self.images[index], "index": index}
        if self.labels is not None:
            item["label"] = int(self.labels[index])
        return item


def _stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.double() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


# --- digits ------------------------------------------------------------------------------------
@dataclasses.dataclass
class DigitsConfig:
    test_size: float = knob(0.3, "fraction of the 1797 images held out for testing (stratified)", gt=0, lt=1)
    split_seed: int = knob(0, "random_state of the stratified train/test split")


def digits(cfg: DigitsConfig, split: str) -> TensorImages:
    """scikit-learn's 8x8 handwritten digits (ships inside scikit-learn: works offline).

    A fixed stratified split (``test_size``, ``split_seed``); its indices are kept in
    ``split_indices`` and written to results.json. Pixels 0..16 are scaled to 0..255.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    _check_split("digits", split)
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
    mean, std = _stats(all_images[np.sort(train_idx)])
    return TensorImages(
        all_images[idx],
        torch.from_numpy(data.target[idx]).long(),
        mean=mean,
        std=std,
        num_classes=10,
        classes=[str(c) for c in range(10)],
        split_indices=[int(i) for i in idx],
        description=f"scikit-learn digits, stratified split test_size={cfg.test_size} "
        f"random_state={cfg.split_seed}, {split} part ({len(idx)} images)",
    )


# --- fake --------------------------------------------------------------------------------------
@dataclasses.dataclass
class FakeConfig:
    num_samples: int = knob(64, "images in the train split (the test split has half as many)", min=1)
    image_size: int = knob(16, "side of the square images in px", min=4)
    channels: int = knob(3, "1 or 3", min=1, max=3)
    num_classes: int = knob(4, "number of classes", min=1)
    labelled: bool = knob(True, "include labels")
    seed: int = knob(0, "seed of the generated data")


def fake(cfg: FakeConfig, split: str) -> TensorImages:
    """Deterministic synthetic images for tests: per-class colour patterns plus noise."""
    _check_split("fake", split)
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


# --- image files -------------------------------------------------------------------------------
IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"]
ON_ERROR_HELP = (
    "unreadable image: 'raise' a DataError naming the file, or 'skip' to the next readable image (skipped files "
    "are counted and reported at the end of training)"
)
_WARN_SKIPS = 10  # skipped files each process names on stderr at once; all are counted for skip_report()


def _extensions(values: list[str]) -> tuple[str, ...]:
    return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in values)


def _scan(folder: str, extensions: tuple[str, ...]) -> list[str]:
    """All files under ``folder`` with one of ``extensions``, sorted (os.scandir: fast)."""
    found: list[str] = []
    stack = [folder]
    while stack:
        current = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=True):
                    stack.append(entry.path)
                elif entry.name.lower().endswith(extensions):
                    found.append(entry.path)
    found.sort()
    return found


def to_rgb(image: Any) -> Any:
    """A PIL image as 8-bit RGB: grayscale, palette (with or without transparency), RGBA/LA (alpha
    dropped), CMYK, and integer grayscale (modes I and I;16, taken as 16-bit: scaled, not clipped)."""
    from PIL import Image

    if image.mode == "I" or image.mode.startswith("I;16"):
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


class FileImages(torch.utils.data.Dataset):
    """Image files read lazily with PIL and converted to RGB (:func:`to_rgb`): ``paths[i]``, of
    class ``labels[i]`` (``labels = None``: unlabelled; ``classes`` names the labels).

    ``on_error = "raise"``: an unreadable file raises a :class:`DataError` naming it.
    ``on_error = "skip"``: it is replaced by the next readable image (index order, wrapping around;
    the replacement's own index and label are returned), named on stderr (the first few) and
    marked in a shared-memory table, so that DataLoader workers skip it too and
    :meth:`skip_report` (the trainer prints it at the end) counts the files every worker skipped.
    """

    def __init__(
        self,
        paths: list[str],
        labels: np.ndarray | None,
        classes: list[str] | None,
        *,
        root_folder: str,
        on_error: str = "raise",
        **attrs: Any,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise DataError(f"key 'on_error' must be 'raise' or 'skip', got {on_error!r}")
        self.paths = paths
        self.labels = labels
        if classes is not None:
            self.classes = classes
            self.num_classes = len(classes)
        self.root_folder = root_folder
        self.on_error = on_error
        # one byte per file, in shared memory: DataLoader workers (forked or spawned) write the same table
        self._bad = torch.zeros(len(paths), dtype=torch.uint8).share_memory_() if on_error == "skip" else None
        self.channels = 3
        for key, value in attrs.items():
            setattr(self, key, value)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def skipped(self) -> set[str]:
        """The files found unreadable so far (by this process or any of its DataLoader workers)."""
        if self._bad is None:
            return set()
        return {self.paths[i] for i in self._bad.nonzero().flatten().tolist()}

    def skip_report(self) -> str:
        """One line about the skipped files, or '' when none was skipped."""
        skipped = sorted(self.skipped)
        if not skipped:
            return ""
        return (f"ssl_kit: on_error = 'skip': {len(skipped)} unreadable image(s) of the {len(self)} under "
                f"'{self.root_folder}' were skipped, first '{skipped[0]}'")

    def load(self, index: int) -> Any:
        """Image ``index`` as an RGB PIL image; :class:`DataError` naming the file if unreadable."""
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as img:
                return to_rgb(img)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise DataError(f"cannot read image '{path}': {err}") from None

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.paths)
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        for step in range(n):
            j = (index + step) % n
            if self._bad is not None and self._bad[j]:
                continue
            try:
                image = self.load(j)
            except DataError as err:
                if self._bad is None:
                    raise
                self._bad[j] = 1
                count = int(self._bad.sum())
                if count <= _WARN_SKIPS:
                    more = "" if count < _WARN_SKIPS else " (further skipped images are only counted)"
                    print(f"ssl_kit: on_error = 'skip': {err}; using the next readable image{more}",
                          file=sys.stderr, flush=True)
                continue
            item: dict[str, Any] = {"image": image, "index": j}
            if self.labels is not None:
                item["label"] = int(self.labels[j])
            return item
        raise DataError(f"no readable image among the {n} files under '{self.root_folder}' (on_error = 'skip')")


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
    mean: list[float] = knob(list(IMAGENET_MEAN), "per-channel mean of [0, 1] pixels")
    std: list[float] = knob(list(IMAGENET_STD), "per-channel std of [0, 1] pixels")

    def __post_init__(self) -> None:
        if self.labelled not in ("auto", "yes", "no"):
            raise ValueError(f"key 'labelled' must be 'auto', 'yes' or 'no', got {self.labelled!r}")


class ImageFolder(FileImages):
    """Class subfolders (labelled: each subfolder's tree is one class) or a flat/recursive tree of
    images (unlabelled), read with :class:`FileImages`."""

    def __init__(self, folder: Path, cfg: ImageFolderConfig) -> None:
        self.folder = folder
        extensions = _extensions(cfg.extensions)
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
                files = _scan(os.path.join(folder, name), extensions)
                paths += files
                labels += [label] * len(files)
        else:
            paths = _scan(str(folder), extensions)
        if not paths:
            raise DataError(f"image_folder: no images with endings {', '.join(extensions)} under '{folder}'")
        super().__init__(
            paths,
            np.asarray(labels, dtype=np.int64) if labelled else None,
            subdirs if labelled else None,
            root_folder=str(folder),
            on_error=cfg.on_error,
            mean=tuple(cfg.mean),
            std=tuple(cfg.std),
        )
        self.image_size = cfg.image_size or self[0]["image"].size[0]
        kind = f"{self.num_classes} class folders" if labelled else "unlabelled tree"
        self.description = f"image folder '{folder}' ({kind}, {len(paths)} images)"


def image_folder(cfg: ImageFolderConfig, split: str) -> Any:
    """Images from a folder: ``root/<train_dir>`` and ``root/<test_dir>``, or ``root`` itself; with
    a per-sample prior when ``prior_file`` is set (keyed by index, or by the file name relative to
    the split's folder)."""
    _check_split("image_folder", split)
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

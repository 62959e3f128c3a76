"""CIFAR-10, CIFAR-100 and STL-10 in torchvision's on-disk layout.

torchvision downloads the archives (``download = true``, which checks the archive's md5); the
files are then read here, not through torchvision's dataset classes, because those re-hash every
file (hundreds of MB) on each construction and return PIL images. Items hold uint8 tensors
(3, H, W). Set ``check_integrity = true`` to verify torchvision's per-file md5 list anyway.

CIFAR's python batches are pickles by format (that is how the dataset is distributed, and how
torchvision reads it). They are read with a restricted unpickler that only rebuilds plain
containers and numpy arrays, so a tampered file cannot run code. (Model weights are never
unpickled in ssl_kit; this exception concerns only the CIFAR data format.)

STL-10 splits: ``train`` (5,000 labelled), ``test`` (8,000), ``unlabeled`` (100,000, no labels) and
``train+unlabeled`` (105,000, no labels). Use e.g. ``data.train_split = "train+unlabeled"`` for
self-supervised training and keep ``eval.train_split = "train"``. The unlabelled images are
memory-mapped, not loaded.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from ssl_kit.config import knob
from ssl_kit.data.base import ImageDataset, check_split
from ssl_kit.data.priors import PriorOptions, with_prior
from ssl_kit.errors import DataError
from ssl_kit.spec import DatasetInfo

DEFAULT_ROOT = "~/.cache/ssl_kit/data"

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
STL10_MEAN, STL10_STD = (0.4406, 0.4273, 0.3858), (0.2312, 0.2265, 0.2237)
STL10_SPLITS = ("train", "test", "unlabeled", "train+unlabeled")


@dataclasses.dataclass
class TorchvisionConfig(PriorOptions):
    root: str = knob(DEFAULT_ROOT, "folder holding torchvision's dataset folder (e.g. cifar-10-batches-py/)")
    download: bool = knob(False, "download the archive into root with torchvision when the files are missing")
    check_integrity: bool = knob(False, "verify torchvision's md5 checksum of every file before reading")


class ArrayImages(ImageDataset):
    """uint8 images (N, 3, H, W) from an in-memory array or a lazily opened memory map."""

    def __init__(self, images: np.ndarray | None, labels: np.ndarray | None, info: DatasetInfo, *,
                 mmaps: list[tuple[str, int]] | None = None) -> None:
        self._images = images
        self._mmaps = mmaps  # (file, number of images) of 96x96 column-major STL-10 binaries
        self._opened: list[np.ndarray] | None = None
        self.labels = labels
        self.info = info
        self._n = len(images) if images is not None else sum(n for _, n in mmaps or [])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_opened"] = None  # re-opened in the worker; never pickle a memory map's contents
        return state

    def __len__(self) -> int:
        return self._n

    def _image(self, index: int) -> torch.Tensor:
        if self._images is not None:
            return torch.from_numpy(self._images[index])
        if self._opened is None:
            size = self.info.image_size
            self._opened = [np.memmap(f, dtype=np.uint8, mode="r", shape=(n, 3, size, size)) for f, n in self._mmaps or []]
        for array in self._opened:
            if index < len(array):
                return torch.from_numpy(np.ascontiguousarray(array[index].transpose(0, 2, 1)))
            index -= len(array)
        raise IndexError(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self._n:
            raise IndexError(f"index {index} out of range for {self._n} images")
        item: dict[str, Any] = {"image": self._image(index), "index": index}
        if self.labels is not None:
            item["label"] = int(self.labels[index])
        return item


# --- reading -----------------------------------------------------------------------------------
class _DataUnpickler(pickle.Unpickler):
    """Unpickles dicts/lists/bytes/str/numbers and numpy arrays only (CIFAR's batch format)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy < 2
            from numpy.core import multiarray  # type: ignore[no-redef]

        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy.core.multiarray", "scalar"): multiarray.scalar,
            ("numpy._core.multiarray", "scalar"): multiarray.scalar,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): _latin1_encode,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load '{module}.{name}' (not part of the CIFAR format)")
        return allowed[(module, name)]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"unexpected encoding '{encoding}'")
    return text.encode("latin1")


def _unpickle(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = _DataUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, OSError) as err:
        raise DataError(f"cannot read CIFAR batch '{path}': {err}") from None
    if not isinstance(data, dict):
        raise DataError(f"cannot read CIFAR batch '{path}': expected a dict, got {type(data).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in data.items()}


def _missing_error(name: str, folder: Path, missing: str, cfg: TorchvisionConfig) -> DataError:
    local = (
        ", or use a local copy of the images with the image_folder dataset (e.g. the cifar10-jpg/ folder "
        "extracted from shared/data/cifar10-jpg.tar.gz)"
        if name == "cifar10"
        else ", or point the image_folder dataset at a local copy of the images"
    )
    return DataError(
        f"{name}: '{folder / missing}' not found (data.root = '{cfg.root}'); set data.download = true "
        f"when online to fetch it with torchvision{local}"
    )


def _download(name: str, cfg: TorchvisionConfig, root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        if name == "stl10":
            datasets.STL10(str(root), split="train", download=True)
        else:
            cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
            cls(str(root), train=True, download=True)
    except Exception as err:  # network, disk, checksum: torchvision raises many kinds
        text = " ".join(str(err).split()) or type(err).__name__
        raise DataError(
            f"{name}: download into '{root}' failed ({type(err).__name__}: {text}); check the network, "
            "or place the files there yourself and set data.download = false"
        ) from None


def _verify(name: str, folder: Path, files: list[tuple[str, str]]) -> None:
    for file, md5 in files:
        if not check_integrity(str(folder / file), md5):
            raise DataError(
                f"{name}: '{folder / file}' fails torchvision's md5 check (corrupted or not the official "
                "file); delete it and download again"
            )


def _cifar(name: str, cfg: TorchvisionConfig, split: str) -> ArrayImages:
    check_split(name, split)
    tv = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    root = Path(cfg.root).expanduser()
    folder = root / tv.base_folder
    batches = tv.train_list if split == "train" else tv.test_list
    needed = [f for f, _ in batches] + [tv.meta["filename"]]
    missing = next((f for f in needed if not (folder / f).is_file()), None)
    if missing is not None and cfg.download:
        _download(name, cfg, root)
        missing = next((f for f in needed if not (folder / f).is_file()), None)
    if missing is not None:
        raise _missing_error(name, folder, missing, cfg)
    if cfg.check_integrity:
        _verify(name, folder, [tuple(b) for b in batches] + [(tv.meta["filename"], tv.meta["md5"])])
    images, labels = [], []
    label_key = "labels" if name == "cifar10" else "fine_labels"
    for file, _ in batches:
        entry = _unpickle(str(folder / file))
        if "data" not in entry or label_key not in entry:
            raise DataError(f"{name}: '{folder / file}' lacks '{'data' if 'data' not in entry else label_key}'")
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072 or len(entry[label_key]) != len(data):
            raise DataError(f"{name}: '{folder / file}' holds data of shape {data.shape} (expected (N, 3072) and N labels)")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(entry[label_key], dtype=np.int64))
    meta = _unpickle(str(folder / tv.meta["filename"]))
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta.get(tv.meta["key"], [])]
    num_classes = 10 if name == "cifar10" else 100
    if len(classes) != num_classes:
        raise DataError(f"{name}: '{folder / tv.meta['filename']}' lists {len(classes)} class names, expected {num_classes}")
    all_labels = np.concatenate(labels)
    if all_labels.min() < 0 or all_labels.max() >= num_classes:
        raise DataError(f"{name}: labels in '{folder}' lie outside 0..{num_classes - 1}")
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    array = np.ascontiguousarray(np.concatenate(images))
    title = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    dataset = ArrayImages(array, all_labels, DatasetInfo(
        channels=3,
        image_size=32,
        mean=mean,
        std=std,
        num_classes=num_classes,
        classes=tuple(classes),
        description=f"{title} (torchvision python batches) from '{folder}', {split} split ({len(array)} images)",
    ))
    return with_prior(dataset, cfg, split)


def cifar10(cfg: TorchvisionConfig, split: str) -> Any:
    """CIFAR-10 (50,000 train / 10,000 test, 32 px) from ``root/cifar-10-batches-py``."""
    return _cifar("cifar10", cfg, split)


def cifar100(cfg: TorchvisionConfig, split: str) -> Any:
    """CIFAR-100 (fine labels; 50,000 train / 10,000 test, 32 px) from ``root/cifar-100-python``."""
    return _cifar("cifar100", cfg, split)


def stl10(cfg: TorchvisionConfig, split: str) -> Any:
    """STL-10 (96 px) from ``root/stl10_binary``; splits train, test, unlabeled, train+unlabeled."""
    check_split("stl10", split, STL10_SPLITS)
    root = Path(cfg.root).expanduser()
    folder = root / datasets.STL10.base_folder
    parts = {"train": ["train"], "test": ["test"], "unlabeled": ["unlabeled"], "train+unlabeled": ["train", "unlabeled"]}[split]
    needed = [f"{p}_X.bin" for p in parts] + [f"{p}_y.bin" for p in parts if p != "unlabeled"] + ["class_names.txt"]
    missing = next((f for f in needed if not (folder / f).is_file()), None)
    if missing is not None and cfg.download:
        _download("stl10", cfg, root)
        missing = next((f for f in needed if not (folder / f).is_file()), None)
    if missing is not None:
        raise _missing_error("stl10", folder, missing, cfg)
    if cfg.check_integrity:
        md5 = dict(datasets.STL10.train_list + datasets.STL10.test_list)
        _verify("stl10", folder, [(f, md5[f]) for f in needed if f in md5])
    pixels = 3 * 96 * 96
    mmaps: list[tuple[str, int]] = []
    labels = []
    for part in parts:
        file = folder / f"{part}_X.bin"
        size = file.stat().st_size
        if size == 0 or size % pixels:
            raise DataError(f"stl10: '{file}' has {size} bytes, not a multiple of {pixels} (3x96x96 images): truncated?")
        n = size // pixels
        mmaps.append((str(file), n))
        if part != "unlabeled":
            y = np.fromfile(folder / f"{part}_y.bin", dtype=np.uint8).astype(np.int64) - 1
            if len(y) != n:
                raise DataError(f"stl10: '{folder / f'{part}_y.bin'}' has {len(y)} labels for {n} images")
            if len(y) and (y.min() < 0 or y.max() > 9):
                raise DataError(f"stl10: '{folder / f'{part}_y.bin'}' holds labels outside 1..10")
            labels.append(y)
    classes = [c.strip() for c in (folder / "class_names.txt").read_text().splitlines() if c.strip()]
    labelled = "unlabeled" not in parts
    total = sum(n for _, n in mmaps)
    info = DatasetInfo(
        channels=3,
        image_size=96,
        mean=STL10_MEAN,
        std=STL10_STD,
        num_classes=10 if labelled else None,
        classes=tuple(classes) if labelled else None,
        description=f"STL-10 (binary) from '{folder}', {split} split ({total} images"
        f"{'' if labelled else ', no labels'})",
    )
    dataset = ArrayImages(None, np.concatenate(labels) if labelled else None, info, mmaps=mmaps)
    return with_prior(dataset, cfg, split)

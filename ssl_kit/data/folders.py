"""Folder-based datasets with a fixed layout: ImageNet-100 and Tiny ImageNet.

Both are :class:`~ssl_kit.data.sources.FileImages` (the loader ``image_folder`` uses too): image
files read lazily with PIL and converted to RGB, exposing ``paths`` (so a prior file can be keyed by
file name). ``on_error = "skip"`` replaces an unreadable image by the next readable one (index
order, wrapping around; the replacement's own index and label are returned); the bad files are
recorded in ``skipped``, shared by the DataLoader workers, and reported at the end of training.
"""

from __future__ import annotations

import dataclasses
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ssl_kit.config import knob
from ssl_kit.data.base import IMAGENET_MEAN, IMAGENET_STD, check_split
from ssl_kit.data.files import IMAGE_EXTENSIONS, ON_ERROR_HELP, FileImages, normalise_extensions, scan_images
from ssl_kit.data.priors import PriorOptions, with_prior
from ssl_kit.errors import DataError

TINY_MEAN = (0.4802, 0.4481, 0.3975)
TINY_STD = (0.2302, 0.2265, 0.2262)


# --- imagenet100 -------------------------------------------------------------------------------
@dataclasses.dataclass
class ImageNet100Config(PriorOptions):
    root: str = knob(help="ImageNet folder with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG")
    class_file: str = knob(
        "", "file with one WordNet id per line ('' = the 100-class CMC/solo-learn list shipped with ssl_kit)"
    )
    train_dir: str = knob("train", "subfolder of root for the train split")
    test_dir: str = knob("val", "subfolder of root for the test split")
    extensions: list[str] = knob(IMAGE_EXTENSIONS, "file endings that count as images (case-insensitive)")
    image_size: int = knob(224, "nominal image side in px (images are not opened to find it)", min=1)
    on_error: Literal["raise", "skip"] = knob("raise", ON_ERROR_HELP)
    mean: tuple[float, float, float] = knob(tuple(IMAGENET_MEAN), "per-channel mean of [0, 1] pixels (R, G, B)", min=0, max=1)
    std: tuple[float, float, float] = knob(tuple(IMAGENET_STD), "per-channel std of [0, 1] pixels (R, G, B)", gt=0)


def read_class_file(path: str) -> tuple[list[str], str]:
    """WordNet ids (one per line, blank lines and '#' comments ignored) and where they came from."""
    if path:
        file = Path(path).expanduser()
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as err:
            raise DataError(f"imagenet100: cannot read class_file '{file}': {err.strerror or err}") from None
        where = str(file)
    else:
        text = resources.files("ssl_kit.data").joinpath("imagenet100_classes.txt").read_text(encoding="utf-8")
        where = "the built-in ImageNet-100 list"
    classes = [line.split("#")[0].strip() for line in text.splitlines()]
    classes = [c for c in classes if c]
    if not classes:
        raise DataError(f"imagenet100: class_file '{where}' lists no classes")
    if len(set(classes)) != len(classes):
        dup = next(c for i, c in enumerate(classes) if c in classes[:i])
        raise DataError(f"imagenet100: class '{dup}' appears twice in class_file '{where}'")
    return classes, where


def imagenet100(cfg: ImageNet100Config, split: str) -> Any:
    """ImageNet restricted to the classes of ``class_file`` (labels: sorted WordNet ids)."""
    check_split("imagenet100", split)
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"imagenet100: root '{root}' is not a folder")
    folder = root / (cfg.train_dir if split == "train" else cfg.test_dir)
    if not folder.is_dir():
        raise DataError(f"imagenet100: no {split} split: '{folder}' is not a folder (see data.train_dir/test_dir)")
    wanted, where = read_class_file(cfg.class_file)
    present = {e.name for e in os.scandir(folder) if e.is_dir(follow_symlinks=True)}
    missing = [c for c in wanted if c not in present]
    if missing:
        more = f" (and {len(missing) - 1} more of the {len(wanted)} classes)" if len(missing) > 1 else ""
        raise DataError(f"imagenet100: class folder '{missing[0]}'{more} from {where} is missing in '{folder}'")
    classes = sorted(wanted)
    extensions = normalise_extensions(cfg.extensions)
    paths: list[str] = []
    labels: list[int] = []
    for label, wnid in enumerate(classes):
        files = scan_images(str(folder / wnid), extensions)
        if not files:
            raise DataError(f"imagenet100: class folder '{folder / wnid}' holds no images")
        paths += files
        labels += [label] * len(files)
    dataset = FileImages(
        paths,
        np.asarray(labels, dtype=np.int64),
        classes,
        root_folder=str(folder),
        on_error=cfg.on_error,
        image_size=cfg.image_size,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        description=f"ImageNet-{len(classes)} ({where}) from '{folder}' ({len(paths)} images)",
    )
    return with_prior(dataset, cfg, split)


# --- tinyimagenet ------------------------------------------------------------------------------
@dataclasses.dataclass
class TinyImageNetConfig(PriorOptions):
    root: str = knob(help="tiny-imagenet-200 folder (wnids.txt, train/<wnid>/images/, val/images/ + val_annotations.txt)")
    on_error: Literal["raise", "skip"] = knob("raise", ON_ERROR_HELP)
    mean: tuple[float, float, float] = knob(tuple(TINY_MEAN), "per-channel mean of [0, 1] pixels (R, G, B)", min=0, max=1)
    std: tuple[float, float, float] = knob(tuple(TINY_STD), "per-channel std of [0, 1] pixels (R, G, B)", gt=0)


def tinyimagenet(cfg: TinyImageNetConfig, split: str) -> Any:
    """Tiny ImageNet (200 classes, 64 px); the test split is the labelled val/ folder.

    Labels follow the order of ``wnids.txt``.
    """
    check_split("tinyimagenet", split)
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"tinyimagenet: root '{root}' is not a folder")
    wnids_file = root / "wnids.txt"
    try:
        classes = [w.strip() for w in wnids_file.read_text(encoding="utf-8").splitlines() if w.strip()]
    except OSError:
        raise DataError(f"tinyimagenet: '{wnids_file}' is missing (expected the tiny-imagenet-200 layout)") from None
    if not classes:
        raise DataError(f"tinyimagenet: '{wnids_file}' lists no classes")
    index = {w: i for i, w in enumerate(classes)}
    extensions = normalise_extensions(IMAGE_EXTENSIONS)
    paths: list[str] = []
    labels: list[int] = []
    if split == "train":
        folder = root / "train"
        for label, wnid in enumerate(classes):
            images = folder / wnid / "images"
            if not images.is_dir():
                raise DataError(f"tinyimagenet: class '{wnid}' from wnids.txt has no folder '{images}'")
            files = scan_images(str(images), extensions)
            paths += files
            labels += [label] * len(files)
    else:
        folder = root / "val"
        annotations = folder / "val_annotations.txt"
        images = folder / "images"
        if not annotations.is_file() or not images.is_dir():
            raise DataError(f"tinyimagenet: '{annotations}' or '{images}' is missing (test split = val/)")
        present = {e.name for e in os.scandir(images)}
        rows = []
        with open(annotations, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                cells = line.rstrip("\n").split("\t")
                if len(cells) < 2:
                    raise DataError(f"tinyimagenet: '{annotations}' line {line_no}: expected 'file<TAB>wnid...'")
                name, wnid = cells[0].strip(), cells[1].strip()
                if wnid not in index:
                    raise DataError(f"tinyimagenet: '{annotations}' line {line_no}: class '{wnid}' is not in wnids.txt")
                if name not in present:
                    raise DataError(f"tinyimagenet: '{annotations}' line {line_no}: image '{images / name}' is missing")
                rows.append((name, index[wnid]))
        rows.sort()
        paths = [str(images / name) for name, _ in rows]
        labels = [label for _, label in rows]
    if not paths:
        raise DataError(f"tinyimagenet: no images under '{folder}'")
    dataset = FileImages(
        paths,
        np.asarray(labels, dtype=np.int64),
        classes,
        root_folder=str(folder),
        on_error=cfg.on_error,
        image_size=64,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        description=f"Tiny ImageNet from '{root}', {split} split ({'val/' if split == 'test' else 'train/'}, "
        f"{len(paths)} images)",
    )
    return with_prior(dataset, cfg, split)

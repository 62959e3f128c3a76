"""Datasets of image files: fast folder scans, PIL decoding to RGB, and skipping unreadable files."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import torch
from PIL import Image

from ssl_kit.data.base import ImageDataset, class_count
from ssl_kit.errors import DataError
from ssl_kit.spec import DatasetInfo

IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"]
ON_ERROR_HELP = (
    "unreadable image: 'raise' a DataError naming the file, or 'skip' to the next readable image (skipped files "
    "are counted and reported at the end of training)"
)
_WARN_SKIPS = 10  # skipped files each process names on stderr at once; all are counted for skip_report()


def normalise_extensions(values: list[str]) -> tuple[str, ...]:
    return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in values)


def scan_images(folder: str, extensions: tuple[str, ...]) -> list[str]:
    """All files under ``folder`` with one of ``extensions``, sorted (os.scandir: fast). Linked
    folders are followed; a link back into a folder on the current path (a loop) is a DataError."""
    found: list[str] = []

    def walk(current: str, above: dict[tuple[int, int], str]) -> None:
        try:
            st = os.stat(current)
            key = (st.st_dev, st.st_ino)
            if key in above:
                raise DataError(f"image folder: '{current}' is '{above[key]}' again, through a symbolic link (a "
                                "loop); remove the link, or point data.root below it")
            above = {**above, key: current}
            with os.scandir(current) as entries:
                listing = sorted(entries, key=lambda e: e.name)
        except OSError as err:
            raise DataError(f"image folder: cannot list '{current}': {err.strerror or err}") from None
        for entry in listing:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False  # a dangling link or one that loops on itself: not an image either
            if is_dir:
                walk(entry.path, above)
            elif entry.name.lower().endswith(extensions):
                found.append(entry.path)

    walk(folder, {})
    found.sort()
    return found


def to_rgb(image: Any) -> Any:
    """A PIL image as 8-bit RGB: grayscale, palette (with or without transparency), RGBA/LA (alpha
    dropped), CMYK, and integer grayscale (modes I and I;16, taken as 16-bit: scaled, not clipped)."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


class FileImages(ImageDataset):
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
        mean: tuple[float, ...],
        std: tuple[float, ...],
        description: str,
        image_size: int | None = None,
        on_error: str = "raise",
    ) -> None:
        """``image_size = None``: the width of the first readable image."""
        if on_error not in ("raise", "skip"):
            raise DataError(f"key 'on_error' must be 'raise' or 'skip', got {on_error!r}")
        self.paths = paths
        self.labels = labels
        self.root_folder = root_folder
        self.on_error = on_error
        # one byte per file, in shared memory: DataLoader workers (forked or spawned) write the same table
        self._bad = torch.zeros(len(paths), dtype=torch.uint8).share_memory_() if on_error == "skip" else None
        self.info = DatasetInfo(
            channels=3,
            image_size=image_size or self[0]["image"].size[0],
            mean=tuple(mean),
            std=tuple(std),
            num_classes=class_count(labels, len(classes) if classes else None),
            classes=tuple(classes) if classes else None,
            description=description,
        )

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

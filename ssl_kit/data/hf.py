"""Any Hugging Face ``datasets`` dataset with an image column.

``path`` is a local ``save_to_disk`` folder (read with ``datasets.load_from_disk``), a builder name
such as ``parquet`` or ``imagefolder`` together with ``data_files``, or a Hub dataset name (needs
the network the first time; later runs use the Hugging Face cache).

Streaming is not supported: ssl_kit's sampler draws random indices (a seeded permutation per
epoch, resumable mid-epoch, with per-sample view seeds), which an ``IterableDataset`` cannot serve.
Without streaming the Arrow files are memory-mapped, not loaded into RAM, so large datasets work.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_kit.config import knob
from ssl_kit.data.base import IMAGENET_MEAN, IMAGENET_STD, ImageDataset, class_count
from ssl_kit.data.files import to_rgb
from ssl_kit.data.priors import PriorOptions, with_prior
from ssl_kit.errors import DataError, one_line
from ssl_kit.spec import DatasetInfo


@dataclasses.dataclass
class HFConfig(PriorOptions):
    path: str = knob(
        help="save_to_disk folder, builder name (parquet, imagefolder...) with data_files, or Hub dataset name"
    )
    data_files: str | list[str] | dict[str, Any] | None = knob(
        None, "files for a builder: a path/glob, a list, or a table split -> files (datasets.load_dataset)"
    )
    config_name: str = knob("", "dataset configuration name ('' for the default)")
    train_split_name: str = knob("train", "the dataset's split used for ssl_kit's 'train' split")
    test_split_name: str = knob("test", "the dataset's split used for ssl_kit's 'test' split (e.g. 'validation')")
    image_column: str = knob("image", "column holding the images")
    label_column: str = knob("label", "column holding integer or string labels ('' for unlabelled data)")
    prior_column: str = knob(
        "", "column holding a per-sample prior (number or list of numbers), read for prior_split; '' for none"
    )
    cache_dir: str = knob("", "Hugging Face cache folder ('' for the default, ~/.cache/huggingface)")
    streaming: bool = knob(False, "not supported (random access is needed); kept to explain why")
    image_size: int | None = knob(None, "nominal image side in px (default: read from the first image)", min=1)
    mean: tuple[float, float, float] = knob(tuple(IMAGENET_MEAN), "per-channel mean of [0, 1] pixels (R, G, B)", min=0, max=1)
    std: tuple[float, float, float] = knob(tuple(IMAGENET_STD), "per-channel std of [0, 1] pixels (R, G, B)", gt=0)


def _looks_local(path: str) -> bool:
    return path.startswith(("/", "./", "../", "~", ".\\", "..\\")) or os.path.isabs(path)


def _load(cfg: HFConfig, split_name: str) -> Any:
    import datasets

    where = f"hf dataset '{cfg.path}'"
    local = Path(cfg.path).expanduser()
    if local.is_dir() and cfg.data_files is None:
        try:
            loaded = datasets.load_from_disk(str(local))
        except FileNotFoundError as err:
            raise DataError(f"{where}: not a save_to_disk folder ({one_line(err)})") from None
        if isinstance(loaded, datasets.DatasetDict):
            if split_name not in loaded:
                raise DataError(
                    f"{where}: no split '{split_name}'; available: {', '.join(loaded)} "
                    "(set data.train_split_name / data.test_split_name)"
                )
            return loaded[split_name]
        if split_name != cfg.train_split_name:
            raise DataError(
                f"{where} holds one split (a Dataset, not a DatasetDict), used as the train split; "
                f"there is no '{split_name}' split (save a DatasetDict, or set eval.dataset)"
            )
        return loaded
    if _looks_local(cfg.path) and not local.exists():
        raise DataError(f"{where}: folder '{local}' does not exist")
    try:
        return datasets.load_dataset(
            cfg.path,
            cfg.config_name or None,
            data_files=cfg.data_files,
            split=split_name,
            cache_dir=cfg.cache_dir or None,
        )
    except ValueError as err:  # unknown split, bad data_files
        raise DataError(f"{where} (split '{split_name}'): {one_line(err)}") from None
    except (ConnectionError, OSError, FileNotFoundError) as err:
        raise DataError(
            f"{where}: cannot load split '{split_name}' ({type(err).__name__}: {one_line(err)}); offline, use a "
            "save_to_disk folder or data_files"
        ) from None
    except Exception as err:  # datasets raises its own exception types (DatasetNotFoundError...)
        raise DataError(f"{where}: cannot load split '{split_name}' ({type(err).__name__}: {one_line(err)})") from None


class HFImages(ImageDataset):
    """Items from a ``datasets.Dataset``: image (PIL, RGB), index, label, prior."""

    def __init__(self, ds: Any, cfg: HFConfig, split_name: str, use_prior: bool = True) -> None:
        import datasets

        where = f"hf dataset '{cfg.path}' split '{split_name}'"
        self.where = where
        columns = list(ds.column_names)
        for key, column in (("image_column", cfg.image_column), ("label_column", cfg.label_column),
                            ("prior_column", cfg.prior_column)):
            if column and column not in columns:
                raise DataError(
                    f"{where}: no column '{column}' (data.{key}); available columns: {', '.join(columns)}"
                )
        feature = ds.features[cfg.image_column]
        if not isinstance(feature, datasets.Image):
            try:
                ds = ds.cast_column(cfg.image_column, datasets.Image())
            except Exception as err:
                raise DataError(
                    f"{where}: column '{cfg.image_column}' is {type(feature).__name__}, not images ({one_line(err)})"
                ) from None
        self.image_column = cfg.image_column
        self.ds = ds.select_columns([cfg.image_column])
        self.labels: np.ndarray | None = None
        classes: list[str] | None = None
        if cfg.label_column:
            self.labels, classes = self._read_labels(ds, cfg.label_column, where)
        self.priors: torch.Tensor | None = None
        if cfg.prior_column and use_prior:
            self._read_priors(ds, cfg.prior_column, where)
        if len(self.ds) == 0:
            raise DataError(f"{where} has no rows")
        num_classes = class_count(self.labels, len(classes) if classes else None)
        self.info = DatasetInfo(
            channels=3,
            image_size=cfg.image_size or self._image(0).size[0],
            mean=tuple(cfg.mean),
            std=tuple(cfg.std),
            num_classes=num_classes,
            classes=tuple(classes) if classes else None,
            description=f"{where} ({len(self.ds)} images, "
            + (f"{num_classes} classes)" if num_classes is not None else "no labels)"),
        )

    @staticmethod
    def _read_labels(ds: Any, column: str, where: str) -> tuple[np.ndarray, list[str] | None]:
        """The label column as int64 labels, and the class names when the column has them."""
        import datasets

        feature = ds.features[column]
        values = ds.select_columns([column]).with_format("numpy")[column]
        values = np.asarray(values)
        classes = None
        if isinstance(feature, datasets.ClassLabel):
            classes = list(feature.names)
            labels = values.astype(np.int64)
        elif values.dtype.kind in "iu":
            labels = values.astype(np.int64)
        elif values.dtype.kind in "USO":
            names = sorted({str(v) for v in values})
            lookup = {n: i for i, n in enumerate(names)}
            classes = names
            labels = np.asarray([lookup[str(v)] for v in values], dtype=np.int64)
        else:
            raise DataError(f"{where}: label column '{column}' holds {values.dtype} values, not integers or names")
        if len(labels) and labels.min() < 0:
            raise DataError(
                f"{where}: label column '{column}' has negative labels (unlabelled rows?); set data.label_column = ''"
            )
        return labels, classes

    def _read_priors(self, ds: Any, column: str, where: str) -> None:
        try:
            values = np.asarray(ds.select_columns([column]).with_format("numpy")[column], dtype=np.float32)
        except (ValueError, TypeError) as err:
            raise DataError(f"{where}: prior column '{column}' is not numeric or rows differ in length ({one_line(err)})") from None
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise DataError(f"{where}: prior column '{column}' has shape {values.shape}, expected (N,) or (N, P)")
        if not np.isfinite(values).all():
            row = int(np.nonzero(~np.isfinite(values).all(axis=1))[0][0])
            raise DataError(f"{where}: prior column '{column}' has a nan/inf value in row {row}")
        self.priors = torch.from_numpy(values)

    def __len__(self) -> int:
        return len(self.ds)

    def _image(self, index: int) -> Any:
        try:
            image = self.ds[index][self.image_column]
            return to_rgb(image)
        except (OSError, ValueError, SyntaxError, AttributeError) as err:
            raise DataError(f"{self.where}: cannot decode the image in row {index} ({one_line(err)})") from None

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"image": self._image(index), "index": index}
        if self.labels is not None:
            item["label"] = int(self.labels[index])
        if self.priors is not None:
            item["prior"] = self.priors[index]
        return item


def hf(cfg: HFConfig, split: str) -> Any:
    """A Hugging Face dataset; ``split`` 'train'/'test' map to ``train_split_name``/``test_split_name``."""
    if cfg.streaming:
        raise DataError(
            "hf: data.streaming = true is not supported: training draws samples by random index (seeded "
            "per-epoch permutations, resumable), which a streaming dataset cannot serve; set "
            "data.streaming = false (the Arrow files are memory-mapped, not loaded into RAM)"
        )
    if cfg.prior_column and cfg.prior_file:
        raise DataError("hf: set data.prior_column or data.prior_file, not both")
    split_name = {"train": cfg.train_split_name, "test": cfg.test_split_name}.get(split, split)
    dataset = HFImages(_load(cfg, split_name), cfg, split_name, use_prior=split == cfg.prior_split)
    return with_prior(dataset, cfg, split)

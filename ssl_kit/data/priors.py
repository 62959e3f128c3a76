"""Per-sample priors: a float vector ``item["prior"]`` (P,) for each image.

Decoupled Uniformity's kernel (and any method that wants side information) reads a prior per
sample. It comes from

- a dataset column (the ``hf`` dataset's ``prior_column``; that dataset adds it itself), or
- a side file ``prior_file``, read by :func:`with_prior`:

  * ``.npy``: an array (N,) or (N, P), row i for dataset index i (``np.load(allow_pickle=False)``:
    no pickles);
  * ``.safetensors``: the tensor named ``prior``, or the file's only tensor, (N,) or (N, P);
  * ``.csv``: first column the key, the other columns the values; an optional header line (a
    first line whose value cells are not all numbers). Keys are dataset indices
    (``prior_key = "index"``) or image file names (``prior_key = "filename"``: the path relative
    to the dataset's folder, e.g. ``n01440764/x.JPEG``, or just the base name when that is unique).

``.npy`` and ``.safetensors`` files are keyed by index (row i = index i). The prior is attached to
one split only (``prior_split``, "train" by default); other splits load without it.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file

from ssl_kit.config import knob
from ssl_kit.data.base import ImageDataset
from ssl_kit.data.files import FileImages
from ssl_kit.errors import DataError


@dataclasses.dataclass(kw_only=True)
class PriorOptions:
    """Config fields shared by datasets that can carry a per-sample prior (a mixin)."""

    prior_file: str = knob("", "per-sample prior file (.npy, .safetensors or .csv); '' for none")
    prior_key: Literal["index", "filename"] = knob(
        "index", "how prior_file rows map to images: dataset 'index' or image 'filename' (.csv only)"
    )
    prior_split: str = knob("train", "the split that gets the prior (other splits load without it)")


class WithPrior(ImageDataset):
    """``dataset`` whose items get ``"prior"``: row ``item["index"]`` of ``priors`` (N, P) float32.
    Its labels and info are the wrapped dataset's (the description names the prior too)."""

    def __init__(self, dataset: ImageDataset, priors: torch.Tensor, source: str) -> None:
        self.dataset = dataset
        self.priors = priors
        self.prior_source = source
        self.labels = dataset.labels
        description = f"{dataset.info.description}, prior {source} ({priors.shape[1]} values per image)"
        self.info = dataclasses.replace(dataset.info, description=description)

    def skip_report(self) -> str:
        return self.dataset.skip_report()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        item["prior"] = self.priors[item["index"]]
        return item


def with_prior(dataset: ImageDataset, cfg: PriorOptions, split: str) -> ImageDataset:
    """``dataset`` with ``item["prior"]`` from ``cfg.prior_file``, or ``dataset`` unchanged.

    Unchanged when ``cfg`` has no (or an empty) ``prior_file`` or ``split`` is not
    ``cfg.prior_split``. Raises :class:`DataError` for a bad file (wrong length, missing keys,
    non-numeric cells), naming the file.
    """
    if not cfg.prior_file or split != cfg.prior_split:
        return dataset
    path = Path(cfg.prior_file).expanduser()
    priors = load_prior_file(path, dataset, cfg.prior_key)
    return WithPrior(dataset, priors, f"'{path}'")


def load_prior_file(path: Path, dataset: Any, key: str = "index") -> torch.Tensor:
    """Priors (len(dataset), P) float32 read from ``path`` (see the module docstring)."""
    if not path.is_file():
        raise DataError(f"prior file '{path}' does not exist")
    n = len(dataset)
    suffix = path.suffix.lower()
    if suffix in (".npy", ".safetensors"):
        if key != "index":
            raise DataError(
                f"prior file '{path}': prior_key = '{key}' needs a .csv file with file names in its "
                "first column; .npy/.safetensors rows are dataset indices (use prior_key = 'index')"
            )
        array = _read_npy(path) if suffix == ".npy" else _read_safetensors(path)
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise DataError(f"prior file '{path}': expected shape (N,) or (N, P), got {tuple(array.shape)}")
        if array.shape[0] != n:
            raise DataError(
                f"prior file '{path}' has {array.shape[0]} rows but the dataset has {n} images "
                "(one row per dataset index expected)"
            )
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise DataError(f"prior file '{path}': values must be real numbers, got dtype {array.dtype}")
        out = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    elif suffix == ".csv":
        out = _read_csv(path, dataset, key)
    else:
        raise DataError(f"prior file '{path}': unknown type '{suffix}' (use .npy, .safetensors or .csv)")
    if not torch.isfinite(out).all():
        row = int((~torch.isfinite(out)).any(dim=1).nonzero()[0])
        raise DataError(f"prior file '{path}': non-finite value (nan/inf) for dataset index {row}")
    return out


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:  # object arrays need pickle: refused
        raise DataError(f"prior file '{path}': cannot read as a plain .npy array ({err})") from None
    except OSError as err:
        raise DataError(f"prior file '{path}': cannot read ({err})") from None


def _read_safetensors(path: Path) -> np.ndarray:
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(f"prior file '{path}': not a readable .safetensors file ({err})") from None
    if "prior" in tensors:
        return tensors["prior"]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    names = ", ".join(sorted(tensors)) or "(none)"
    raise DataError(
        f"prior file '{path}': expected a tensor named 'prior' or a single tensor, found: {names}"
    )


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _read_csv(path: Path, dataset: Any, key: str) -> torch.Tensor:
    n = len(dataset)
    rows: dict[str, list[float]] = {}
    width: int | None = None
    with open(path, newline="", encoding="utf-8-sig") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            cells = [c.strip() for c in row]
            if len(cells) < 2:
                raise DataError(f"prior file '{path}' line {line_no}: expected a key and at least one value")
            values = [_number(c) for c in cells[1:]]
            if any(v is None for v in values):
                if line_no == 1 and not rows:
                    continue  # a header line
                bad = next(c for c, v in zip(cells[1:], values) if v is None)
                raise DataError(f"prior file '{path}' line {line_no}: non-numeric value '{bad}'")
            if width is None:
                width = len(values)
            elif len(values) != width:
                raise DataError(
                    f"prior file '{path}' line {line_no}: {len(values)} values, earlier lines have {width}"
                )
            name = cells[0]
            if name in rows:
                raise DataError(f"prior file '{path}' line {line_no}: key '{name}' appears twice")
            rows[name] = values  # type: ignore[assignment]
    if width is None:
        raise DataError(f"prior file '{path}' has no rows")
    out = torch.empty(n, width, dtype=torch.float32)
    if key == "index":
        index_rows: dict[int, list[float]] = {}
        for name, values in rows.items():
            number = _number(name)
            if number is None or not math.isfinite(number) or number != int(number):
                raise DataError(f"prior file '{path}': key '{name}' is not a dataset index (prior_key = 'index')")
            index_rows[int(number)] = values
        for i in range(n):
            if i not in index_rows:
                raise DataError(f"prior file '{path}': no row for dataset index {i} (the dataset has {n} images)")
            out[i] = torch.tensor(index_rows[i])
        extra = sorted(set(index_rows) - set(range(n)))
        if extra:
            raise DataError(f"prior file '{path}': index {extra[0]} is out of range (the dataset has {n} images)")
        return out
    if not isinstance(dataset, FileImages):
        raise DataError(
            f"prior file '{path}': prior_key = 'filename' needs a dataset of image files; use prior_key = 'index'"
        )
    paths, root = dataset.paths, dataset.root_folder
    names = [os.path.basename(p) for p in paths]
    counts: dict[str, int] = {}
    for b in names:
        counts[b] = counts.get(b, 0) + 1
    for i, p in enumerate(paths):
        rel = os.path.relpath(p, root).replace(os.sep, "/") if root is not None else None
        if rel is not None and rel in rows:
            out[i] = torch.tensor(rows[rel])
        elif names[i] in rows:
            if counts[names[i]] > 1:
                raise DataError(
                    f"prior file '{path}': key '{names[i]}' is ambiguous ({counts[names[i]]} images have "
                    f"that name); use paths relative to '{root}', e.g. '{rel}'"
                )
            out[i] = torch.tensor(rows[names[i]])
        else:
            raise DataError(f"prior file '{path}': no row for image '{rel or names[i]}' (first missing key)")
    return out

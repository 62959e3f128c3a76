"""The two descriptions every layer passes around, as frozen, torch-free dataclasses.

- :class:`ViewSpec`: the views a method needs (counts, sizes, crop scales, augmentation preset,
  group sharing). A method declares its default; a recipe's ``[views]`` table overrides fields;
  the build step hands the final spec to the method (``Method.set_views``) before training.
- :class:`DatasetInfo`: what a dataset tells the rest of ssl_kit about its images (channels,
  size, normalisation, classes, a description). Every dataset carries one as ``dataset.info``.
- :class:`ViewContext`: what an augmentation preset is told about the view it builds.
"""

from __future__ import annotations

import dataclasses

from ssl_kit.config import knob
from ssl_kit.errors import DataError, UserError


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """The views a method needs; a recipe's ``[views]`` table overrides any field."""

    global_views: int = knob(2, "number of global views per image", min=1)
    global_size: int | None = knob(None, "global crop size in px (default: the dataset's image size)", min=4)
    global_scale: tuple[float, float] = knob((0.08, 1.0), "RandomResizedCrop area range of global views", gt=0, max=1)
    local_views: int = knob(0, "number of local (multi-crop) views per image", min=0)
    local_size: int | None = knob(None, "local crop size in px (default: 3/7 of global_size)", min=4)
    local_scale: tuple[float, float] = knob((0.05, 0.4), "RandomResizedCrop area range of local views", gt=0, max=1)
    preset: str = knob("simclr", "augmentation preset (python -m ssl_kit plugins lists them)")
    normalize: bool = knob(True, "normalise with the dataset's mean and std after augmentation")
    group_views: int = knob(
        0,
        "extra copies of every image whose augmentation parameters are shared within a group "
        "(batch['group'], at the global size; CARE uses 2: t1 and t2)",
        min=0,
    )
    shared_groups: int = knob(
        1,
        "number of groups the GLOBAL batch ([data] batch_size, which it must divide) is cut into, contiguous "
        "by position; every image of a group gets the same group-view augmentation, drawn afresh per group and step",
        min=1,
    )
    group_preset: str = knob("", "augmentation preset of the group views ('' = the same as preset)")

    def __post_init__(self) -> None:
        for name in ("global_scale", "local_scale"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"key '{name}' must be [low, high] with low <= high, got {[low, high]}")

    def sizes(self, image_size: int | None) -> tuple[int, int]:
        """(global, local) view sizes in px: ``global_size`` or the dataset's ``image_size``, and
        ``local_size`` or 3/7 of the global size."""
        size = self.global_size or image_size
        if size is None:
            raise UserError("[views] global_size is needed: the dataset does not tell its image size")
        return size, self.local_size or max(1, int(size * 3 / 7))


@dataclasses.dataclass(frozen=True)
class ViewContext:
    """What a preset factory is told about the view it builds."""

    kind: str  # "global", "local" or "group" (group-shared views, at the global size)
    view: int  # view number within its kind, from 0
    size: int  # output size in px
    scale: tuple[float, float]  # crop area range
    channels: int  # image channels (1 or 3)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a dataset's images are: every dataset carries one as ``dataset.info``.

    ``mean``/``std`` are per channel, for pixels scaled to [0, 1] (None: not normalised).
    ``num_classes`` is None for label-free data. ``indices`` optionally records which images of
    the source data this split holds (results.json keeps them, e.g. digits' fixed split).
    """

    channels: int
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    num_classes: int | None = None
    classes: tuple[str, ...] | None = None
    description: str = ""
    indices: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise DataError(f"dataset info: channels must be >= 1, got {self.channels}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None and len(values) != self.channels:
                raise DataError(f"dataset info: {name} has {len(values)} values for {self.channels} channel(s)")
        if self.std is not None and not all(s > 0 and s != float("inf") for s in self.std):
            raise DataError(f"dataset info: std must be finite and > 0 for every channel, got {self.std}")

    @property
    def labelled(self) -> bool:
        """Whether the images have labels (``num_classes`` is set)."""
        return self.num_classes is not None

    def normalisation(self, normalize: bool) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
        """(mean, std) when ``normalize`` and the dataset states them, else (None, None)."""
        return (self.mean, self.std) if normalize and self.mean is not None and self.std is not None else (None, None)

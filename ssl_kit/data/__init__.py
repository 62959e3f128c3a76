"""Datasets and views: the dataset contract (:mod:`ssl_kit.data.base`), the built-in sources,
augmentation presets and the multi-view batch contract (:mod:`ssl_kit.data.views`)."""

from ssl_kit.data.base import ImageDataset, TensorImages

__all__ = ["ImageDataset", "TensorImages"]

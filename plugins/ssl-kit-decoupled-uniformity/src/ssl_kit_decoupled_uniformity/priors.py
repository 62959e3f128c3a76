"""Priors that need no file and no labels: thumbnails of the images themselves.

The paper's priors come from elsewhere (BigBiGAN features for ImageNet-100, binary attributes for
CUB-200 and UTZappos); ssl_kit reads such a prior from a file (``[data] prior_file``) or a dataset
column. To run the kernel path offline and end to end, this plugin also computes a prior from
the pixels: each training image downsampled to ``thumbnail_size`` x ``thumbnail_size`` (area
averaging), flattened, in [0, 1]. It is unsupervised (no label is read) and crude, like a
generative model's features: near-identical thumbnails mean near-identical images, and the RBF
kernel on them tells the loss not to push such images apart.

Two datasets carry it: ``digits_thumbnail_prior`` (scikit-learn's digits, the core's split; the
default 8 x 8 thumbnail is the digit itself) and ``image_folder_thumbnail_prior`` (the core's
``image_folder`` with the thumbnail prior computed when the split is loaded).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from ssl_kit.config import knob
from ssl_kit.data import ImageDataset
from ssl_kit.data.priors import WithPrior
from ssl_kit.data.sources import DigitsConfig, ImageFolderConfig, digits, image_folder


def thumbnail_prior(dataset: ImageDataset, size: int) -> torch.Tensor:
    """(len(dataset), C * size * size) float32 thumbnails in [0, 1], row ``item["index"]`` for
    each item: the image (PIL or uint8 tensor) downsampled to ``size`` x ``size`` by area
    averaging (upsampled bilinearly when it is smaller), flattened channel-major. Rows of images
    a dataset skips (``on_error = 'skip'``) stay zero."""
    if size < 1:
        raise ValueError(f"thumbnail_prior needs size >= 1, got {size}")
    rows: list[torch.Tensor] = []
    indices: list[int] = []
    to_image = v2.ToImage()
    for position in range(len(dataset)):
        item = dataset[position]
        image = to_image(item["image"]).float().div(255.0)[None]  # (1, C, H, W)
        if image.shape[-1] >= size and image.shape[-2] >= size:
            thumb = F.adaptive_avg_pool2d(image, size)
        else:
            thumb = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)
        rows.append(thumb.flatten())
        indices.append(int(item["index"]))
    out = torch.zeros(len(dataset), rows[0].numel() if rows else 0)
    if rows:
        out[torch.tensor(indices)] = torch.stack(rows)
    return out


@dataclasses.dataclass
class DigitsThumbnailConfig(DigitsConfig):
    thumbnail_size: int = knob(8, "side of the thumbnail prior in px (8: the 8 x 8 digit itself, 64 values in [0, 1])", min=1)


def digits_thumbnail_prior(cfg: DigitsThumbnailConfig, split: str) -> ImageDataset:
    """scikit-learn's digits exactly as the core's ``digits`` dataset (same split, same images),
    every item with ``prior``: its thumbnail (:func:`thumbnail_prior`)."""
    dataset = digits(cfg, split)
    size = cfg.thumbnail_size
    return WithPrior(dataset, thumbnail_prior(dataset, size), f"'{size}x{size} thumbnails'")


@dataclasses.dataclass(kw_only=True)
class ImageFolderThumbnailConfig(ImageFolderConfig):
    thumbnail_size: int = knob(8, "side of the thumbnail prior in px (C x size x size values in [0, 1])", min=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prior_file:
            raise ValueError(
                "key 'prior_file' does not apply: this dataset computes its prior (thumbnails); "
                "use the 'image_folder' dataset for a prior read from a file"
            )
        if self.prior_key != "index":
            raise ValueError("key 'prior_key' does not apply: the thumbnail prior is computed per image")


def image_folder_thumbnail_prior(cfg: ImageFolderThumbnailConfig, split: str) -> ImageDataset:
    """The core's ``image_folder`` dataset; the split named ``prior_split`` (default "train")
    gets ``prior``: every image's thumbnail (:func:`thumbnail_prior`, computed once when the split is
    loaded, reading every image)."""
    dataset = image_folder(cfg, split)
    if split != cfg.prior_split:
        return dataset
    size = cfg.thumbnail_size
    return WithPrior(dataset, thumbnail_prior(dataset, size), f"'{size}x{size} thumbnails'")

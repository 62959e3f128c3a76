"""The thumbnail prior and the two datasets that carry it: values by hand, the core digits split
kept, the image folder's train split with the prior and its test split without; the digits_crops
preset."""

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_kit.data import TensorImages
from ssl_kit.data.presets import build_transform
from ssl_kit.data.sources import DigitsConfig, digits
from ssl_kit.errors import RecipeError
from ssl_kit.recipe import load_recipe
from ssl_kit.spec import ViewContext
from ssl_kit_decoupled_uniformity import (
    DigitsThumbnailConfig,
    ImageFolderThumbnailConfig,
    digits_thumbnail_prior,
    image_folder_thumbnail_prior,
    preset_digits_crops,
    thumbnail_prior,
)


def test_thumbnails_are_block_means_in_unit_range():
    image = torch.tensor([[[0, 255, 0, 0], [255, 0, 0, 0], [51, 51, 102, 102], [51, 51, 102, 102]]], dtype=torch.uint8)
    dataset = TensorImages(torch.stack([image, 255 - image]))
    prior = thumbnail_prior(dataset, 2)
    expected = torch.tensor([[0.5, 0.0, 0.2, 0.4], [0.5, 1.0, 0.8, 0.6]])
    torch.testing.assert_close(prior, expected, rtol=0, atol=1e-6)
    assert prior.dtype == torch.float32
    # larger than the image: bilinear upsampling, still one row of C * size * size values per image
    assert thumbnail_prior(dataset, 6).shape == (2, 36)
    with pytest.raises(ValueError, match="size >= 1"):
        thumbnail_prior(dataset, 0)


def test_digits_thumbnail_prior_is_the_core_digits_split_with_its_pixels():
    cfg = DigitsThumbnailConfig()
    for split in ("train", "test"):
        ours, core = digits_thumbnail_prior(cfg, split), digits(DigitsConfig(), split)
        assert len(ours) == len(core) and ours.info.indices == core.info.indices
        for i in (0, 7, len(core) - 1):
            item = ours[i]
            assert torch.equal(item["image"], core[i]["image"]) and item["label"] == core[i]["label"]
            # 8 x 8 thumbnails of 8 x 8 digits: the pixels themselves, in [0, 1]
            torch.testing.assert_close(item["prior"], core[i]["image"].flatten().float() / 255, rtol=0, atol=1e-6)
    assert digits_thumbnail_prior(DigitsThumbnailConfig(thumbnail_size=4), "train")[0]["prior"].shape == (16,)


def write_folder(root):
    rng = np.random.default_rng(0)
    images = {}
    for split in ("train", "test"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for k in range(3):
                pixels = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{k}.png")
                images[(split, label, k)] = pixels
    return images


def test_image_folder_thumbnail_prior_on_the_train_split_only(tmp_path):
    images = write_folder(tmp_path)
    cfg = ImageFolderThumbnailConfig(root=str(tmp_path), thumbnail_size=2)
    train, test = image_folder_thumbnail_prior(cfg, "train"), image_folder_thumbnail_prior(cfg, "test")
    assert "prior" not in test[0] and len(test) == 6
    item = train[4]  # sorted class folders, sorted files: b/1.png
    pixels = torch.from_numpy(images[("train", "b", 1)]).permute(2, 0, 1).double() / 255
    expected = pixels.reshape(3, 2, 2, 2, 2).mean(dim=(2, 4)).flatten()
    torch.testing.assert_close(item["prior"].double(), expected, rtol=0, atol=1e-6)
    assert item["label"] == 1 and "thumbnails" in train.info.description


def test_a_thumbnail_prior_dataset_refuses_a_prior_file(tmp_path):
    with pytest.raises(RecipeError, match="key 'prior_file' does not apply: this dataset computes its prior"):
        load_recipe("decoupled-uniformity-digits-prior", ["data.name='image_folder_thumbnail_prior'",
                                                          f"data.root='{tmp_path}'", "data.prior_file='p.npy'"])


def test_digits_crops_preset_only_crops():
    image = torch.arange(64, dtype=torch.uint8).reshape(1, 8, 8) * 4  # left-right and top-bottom asymmetric
    whole = build_transform(preset_digits_crops(ViewContext("global", 0, 8, (1.0, 1.0), 1)), None, None)
    for seed in range(5):  # the whole image at its own size: no flip, no rotation, no shift
        torch.manual_seed(seed)
        torch.testing.assert_close(whole(image).as_subclass(torch.Tensor), image.float() / 255, rtol=0, atol=1e-6)
    torch.manual_seed(0)
    crops = build_transform(preset_digits_crops(ViewContext("global", 0, 16, (0.5, 1.0), 1)), None, None)
    view = crops(image)
    assert view.shape == (1, 16, 16) and 0 <= view.min() and view.max() <= 1

"""Built-in backbones and datasets on data the tests make."""

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_kit.backbones import ConvNet, ConvNetConfig, ResNetConfig, TimmConfig, resnet18, timm_backbone
from ssl_kit.data.sources import DigitsConfig, ImageFolderConfig, digits, image_folder
from ssl_kit.errors import DataError, UserError


def test_resnet18_cifar_stem_keeps_resolution_and_reports_features():
    net = resnet18(ResNetConfig(cifar_stem=True, stem_padding=2))
    assert net.conv1.kernel_size == (3, 3) and net.conv1.padding == (2, 2) and net.conv1.bias is None
    assert isinstance(net.maxpool, torch.nn.Identity)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 512) and net.num_features == 512


def test_resnet_takes_one_channel_images():
    net = resnet18(ResNetConfig(in_channels=1))
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 512)


def test_timm_backbone_by_name_and_unknown_name_error():
    net = timm_backbone(TimmConfig(model="resnet10t"))
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, net.num_features)
    with pytest.raises(UserError, match="unknown timm model 'resnet10tt'. Did you mean 'resnet10t'"):
        timm_backbone(TimmConfig(model="resnet10tt"))


def test_convnet_output_grid_flattens_a_spatial_grid():
    net = ConvNet(ConvNetConfig(channels=[4, 8], pool_after=[0], output_grid=2, in_channels=1))
    assert net(torch.randn(3, 1, 16, 16)).shape == (3, 32) and net.num_features == 32


def test_digits_split_is_fixed_stratified_and_disjoint():
    train, test = digits(DigitsConfig(), "train"), digits(DigitsConfig(), "test")
    assert len(train) + len(test) == 1797 and len(test) == 540
    assert not set(train.info.indices) & set(test.info.indices)
    counts = np.bincount(test.labels.numpy(), minlength=10)
    assert counts.min() >= 52 and counts.max() <= 55  # 30% of each class
    item = train[0]
    assert item["image"].shape == (1, 8, 8) and item["image"].dtype == torch.uint8


def make_images(folder, names, size=(6, 5), mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new(mode, size, color=i * 40 if mode == "L" else (i * 40, 0, 0)).save(folder / name)


def test_image_folder_class_folders_and_flat_tree(tmp_path):
    make_images(tmp_path / "labelled" / "train" / "cat", ["a.png", "b.jpg"])
    make_images(tmp_path / "labelled" / "train" / "dog" / "nested", ["c.png"], mode="L")
    make_images(tmp_path / "labelled" / "test" / "cat", ["d.png"])
    make_images(tmp_path / "labelled" / "test" / "dog", ["e.png"])
    train = image_folder(ImageFolderConfig(root=str(tmp_path / "labelled")), "train")
    assert train.info.classes == ("cat", "dog") and list(train.labels) == [0, 0, 1]
    assert train[2]["image"].mode == "RGB" and train.info.image_size == 6
    assert len(image_folder(ImageFolderConfig(root=str(tmp_path / "labelled")), "test")) == 2
    make_images(tmp_path / "flat" / "x", ["1.png", "2.PNG"])
    make_images(tmp_path / "flat", ["top.webp"])
    (tmp_path / "flat" / "notes.txt").write_text("not an image")
    flat = image_folder(ImageFolderConfig(root=str(tmp_path / "flat")), "train")
    assert len(flat) == 3 and flat.labels is None and "label" not in flat[0]


def test_image_folder_errors_name_the_file_or_folder(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        image_folder(ImageFolderConfig(root=str(tmp_path / "missing")), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        image_folder(ImageFolderConfig(root=str(tmp_path / "empty")), "train")
    make_images(tmp_path / "bad", ["ok.png"])
    (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    data = image_folder(ImageFolderConfig(root=str(tmp_path / "bad"), image_size=6), "train")
    with pytest.raises(DataError, match="broken.png"):
        data[0]
    with pytest.raises(DataError, match="no test split"):
        image_folder(ImageFolderConfig(root=str(tmp_path / "bad")), "test")

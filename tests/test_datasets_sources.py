"""Dataset sources on tiny data the tests create: CIFAR/STL-10 files in torchvision's layout,
ImageNet-100 and Tiny ImageNet folders, image folders, Hugging Face datasets, per-sample priors."""

from __future__ import annotations

import dataclasses
import pickle
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_kit.cli import main
from ssl_kit.config import fields_of
from ssl_kit.data import folders, hf, priors, sources, torchvision_sources as tvs
from ssl_kit.errors import DataError, UserError

datasets = pytest.importorskip("datasets")  # imported at collection: its ~1 s import is not charged to a test


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and isinstance(err.value, UserError)
    return text


def save_jpeg(path: Path, colour: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (colour, 255 - colour, 7)).save(path)


# --- CIFAR / STL-10 ----------------------------------------------------------------------------
def write_cifar(root: Path, name: str = "cifar10", per_batch: int = 2) -> Path:
    tv = __import__("torchvision").datasets
    cls = tv.CIFAR10 if name == "cifar10" else tv.CIFAR100
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    key = "labels" if name == "cifar10" else "fine_labels"
    rng = np.random.default_rng(0)
    for i, (file, _) in enumerate(cls.train_list + cls.test_list):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        data[0, :1024] = i  # red plane of image 0 marks the batch
        with open(folder / file, "wb") as f:
            pickle.dump({b"data": data, key.encode(): [(i + k) % 10 for k in range(per_batch)]}, f, protocol=2)
    n_classes = 10 if name == "cifar10" else 100
    with open(folder / cls.meta["filename"], "wb") as f:
        pickle.dump({cls.meta["key"]: [f"c{i}" for i in range(n_classes)]}, f, protocol=2)
    return folder


def test_cifar10_reads_torchvision_layout(tmp_path):
    write_cifar(tmp_path)
    cfg = tvs.TorchvisionConfig(root=str(tmp_path))
    train, test = tvs.cifar10(cfg, "train"), tvs.cifar10(cfg, "test")
    assert len(train) == 10 and len(test) == 2
    item = train[2]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 32, 32)
    assert int(item["image"][0, 0, 0]) == 1 and item["label"] == 1 and item["index"] == 2
    assert train.labels.dtype == np.int64 and train.info.num_classes == 10 and train.info.classes[0] == "c0"
    assert train.info.mean == (0.4914, 0.4822, 0.4465) and train.info.std == (0.2470, 0.2435, 0.2616) and train.info.image_size == 32
    assert str(tmp_path) in train.info.description


def test_cifar100_fine_labels(tmp_path):
    write_cifar(tmp_path, "cifar100")
    ds = tvs.cifar100(tvs.TorchvisionConfig(root=str(tmp_path)), "test")
    assert len(ds) == 2 and ds.info.num_classes == 100 and ds.info.mean == (0.5071, 0.4865, 0.4409)
    assert ds.info.std == (0.2673, 0.2564, 0.2762)


def test_cifar_missing_files_offline_message(tmp_path):
    with pytest.raises(DataError) as err:
        tvs.cifar10(tvs.TorchvisionConfig(root=str(tmp_path / "none")), "train")
    text = one_line(err)
    assert "cifar-10-batches-py" in text and "data_batch_1" in text
    assert "data.download = true" in text and "image_folder" in text


def test_cifar_integrity_check_and_refused_pickle(tmp_path):
    folder = write_cifar(tmp_path)
    cfg = tvs.TorchvisionConfig(root=str(tmp_path), check_integrity=True)
    with pytest.raises(DataError, match="md5"):
        tvs.cifar10(cfg, "test")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": Evil()}, f)
    with pytest.raises(DataError, match="refusing to load 'builtins.print'"):
        tvs.cifar10(tvs.TorchvisionConfig(root=str(tmp_path)), "test")


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets as tv

    def offline(*args, **kwargs):
        raise RuntimeError("<urlopen error [Errno -3]\n Temporary failure in name resolution>")

    monkeypatch.setattr(tv, "CIFAR10", type("C", (), {"__init__": offline, "base_folder": "cifar-10-batches-py",
                                                     "train_list": tv.CIFAR10.train_list,
                                                     "test_list": tv.CIFAR10.test_list, "meta": tv.CIFAR10.meta}))
    with pytest.raises(DataError) as err:
        tvs.cifar10(tvs.TorchvisionConfig(root=str(tmp_path), download=True), "train")
    assert "download into" in one_line(err) and "name resolution" in str(err.value)


def write_stl(root: Path) -> Path:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for part, n in (("train", 3), ("test", 2), ("unlabeled", 4)):
        images = np.zeros((n, 3, 96, 96), dtype=np.uint8)  # (N, C, H, W)
        images[:, 0, 5, 0] = 200  # a mark at row 5, column 0 of the red plane
        images[:, 1] = np.arange(n, dtype=np.uint8)[:, None, None]
        images.transpose(0, 1, 3, 2).tofile(folder / f"{part}_X.bin")  # STL-10 is column-major
        if part != "unlabeled":
            np.arange(1, n + 1, dtype=np.uint8).tofile(folder / f"{part}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(f"k{i}" for i in range(10)) + "\n")
    return folder


def test_stl10_splits(tmp_path):
    write_stl(tmp_path)
    cfg = tvs.TorchvisionConfig(root=str(tmp_path))
    train = tvs.stl10(cfg, "train")
    assert len(train) == 3 and train.labels.tolist() == [0, 1, 2] and train.info.image_size == 96
    assert train.info.mean == (0.4406, 0.4273, 0.3858) and train.info.std == (0.2312, 0.2265, 0.2237)
    image = train[1]["image"]
    assert image.shape == (3, 96, 96) and int(image[0, 5, 0]) == 200 and int(image[0, 0, 5]) == 0
    assert int(image[1, 0, 0]) == 1 and train[1]["label"] == 1
    both = tvs.stl10(cfg, "train+unlabeled")
    assert len(both) == 7 and both.labels is None and "label" not in both[6]
    assert int(both[6]["image"][1, 0, 0]) == 3  # the last unlabelled image
    assert len(tvs.stl10(cfg, "unlabeled")) == 4 and len(tvs.stl10(cfg, "test")) == 2
    assert pickle.loads(pickle.dumps(both))[5]["image"].shape == (3, 96, 96)
    with pytest.raises(DataError, match="allowed: train, test, unlabeled, train\\+unlabeled"):
        tvs.stl10(cfg, "val")


def test_stl10_missing_and_truncated(tmp_path):
    with pytest.raises(DataError) as err:
        tvs.stl10(tvs.TorchvisionConfig(root=str(tmp_path)), "unlabeled")
    assert "unlabeled_X.bin" in one_line(err) and "data.download = true" in str(err.value)
    folder = write_stl(tmp_path)
    with open(folder / "test_X.bin", "ab") as f:
        f.write(b"\0" * 10)
    with pytest.raises(DataError, match="truncated"):
        tvs.stl10(tvs.TorchvisionConfig(root=str(tmp_path)), "test")


# --- imagenet100 / tinyimagenet ----------------------------------------------------------------
def write_imagenet(root: Path, wnids: list[str], per_class: int = 2) -> None:
    for split in ("train", "val"):
        for c, wnid in enumerate(wnids):
            for i in range(per_class):
                save_jpeg(root / split / wnid / f"{wnid}_{i}.JPEG", 10 * c + i)


def test_imagenet100_restricts_to_class_file(tmp_path):
    write_imagenet(tmp_path / "in", ["n2", "n1", "n3"])
    class_file = tmp_path / "classes.txt"
    class_file.write_text("n2\nn1\n")
    cfg = folders.ImageNet100Config(root=str(tmp_path / "in"), class_file=str(class_file))
    ds = folders.imagenet100(cfg, "train")
    assert ds.info.classes == ("n1", "n2") and len(ds) == 4 and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds[3]["image"].size == (8, 8) and ds[3]["label"] == 1 and ds.info.image_size == 224
    assert len(folders.imagenet100(cfg, "test")) == 4


def test_imagenet100_builtin_list_and_missing_class(tmp_path):
    classes, where = folders.read_class_file("")
    assert len(classes) == 100 and classes[0] == "n02869837" and "built-in" in where
    write_imagenet(tmp_path, ["n02869837"], per_class=1)
    with pytest.raises(DataError) as err:
        folders.imagenet100(folders.ImageNet100Config(root=str(tmp_path)), "train")
    text = one_line(err)
    assert "'n01749939'" in text and "98 more" in text and str(tmp_path / "train") in text


def test_on_error_skip_replaces_bad_image(tmp_path):
    write_imagenet(tmp_path, ["a", "b"])
    bad = tmp_path / "train" / "a" / "a_1.JPEG"
    bad.write_bytes(bad.read_bytes()[:20])  # truncated
    (tmp_path / "c.txt").write_text("a\nb\n")
    cfg = folders.ImageNet100Config(root=str(tmp_path), class_file=str(tmp_path / "c.txt"))
    with pytest.raises(DataError, match="a_1.JPEG"):
        folders.imagenet100(cfg, "train")[1]
    ds = folders.imagenet100(dataclasses.replace(cfg, on_error="skip"), "train")
    item = ds[1]
    assert item["index"] == 2 and item["label"] == 1 and ds.skipped == {str(bad)}
    assert ds[1]["index"] == 2


def write_tiny(root: Path) -> None:
    (root / "wnids.txt").write_text("nB\nnA\n")
    for c, wnid in enumerate(["nB", "nA"]):
        for i in range(2):
            save_jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", c, size=64)
    lines = []
    for i, wnid in enumerate(["nA", "nB", "nA"]):
        save_jpeg(root / "val" / "images" / f"val_{i}.JPEG", i, size=64)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t10\t10")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def test_tinyimagenet(tmp_path):
    write_tiny(tmp_path)
    cfg = folders.TinyImageNetConfig(root=str(tmp_path))
    train, test = folders.tinyimagenet(cfg, "train"), folders.tinyimagenet(cfg, "test")
    assert train.info.classes == ("nB", "nA") and train.labels.tolist() == [0, 0, 1, 1]
    assert test.labels.tolist() == [1, 0, 1] and test[2]["image"].size == (64, 64)
    assert train.info.image_size == 64 and train.info.num_classes == 2
    (tmp_path / "val" / "images" / "val_1.JPEG").unlink()
    with pytest.raises(DataError) as err:
        folders.tinyimagenet(cfg, "test")
    assert "line 2" in one_line(err) and "val_1.JPEG" in str(err.value)


# --- image_folder ------------------------------------------------------------------------------
def write_classes(root: Path) -> Path:
    """root/train/{a,b}/ with two 8 px images each (b_1 in a nested folder) and a stray text file."""
    for c, wnid in enumerate(["a", "b"]):
        for i in range(2):
            save_jpeg(root / "train" / wnid / ("deep" if (c, i) == (1, 1) else "") / f"{wnid}_{i}.png", 60 * c + i)
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    return root / "train"


def test_image_folder_on_error_raise_and_skip(tmp_path, capsys):
    folder = write_classes(tmp_path)
    bad = folder / "a" / "a_1.png"
    bad.write_bytes(bad.read_bytes()[:30])  # truncated
    cfg = sources.ImageFolderConfig(root=str(tmp_path))
    ds = sources.image_folder(cfg, "train")
    assert ds.info.classes == ("a", "b") and ds.labels.tolist() == [0, 0, 1, 1] and ds.paths[3].endswith("deep/b_1.png")
    with pytest.raises(DataError) as err:
        ds[1]
    assert str(bad) in one_line(err)
    ds = sources.image_folder(dataclasses.replace(cfg, on_error="skip"), "train")
    assert ds.skip_report() == "" and ds[0]["index"] == 0
    item = ds[1]
    assert item["index"] == 2 and item["label"] == 1 and ds.skipped == {str(bad)}
    assert f"on_error = 'skip': cannot read image '{bad}'" in capsys.readouterr().err
    assert ds[1]["index"] == 2 and capsys.readouterr().err == ""  # named once, then skipped silently
    assert "1 unreadable image(s) of the 4" in ds.skip_report() and str(bad) in ds.skip_report()
    bad.unlink()
    (folder / "b" / "b_0.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    every_worker = sources.image_folder(dataclasses.replace(cfg, on_error="skip"), "train")
    loader = torch.utils.data.DataLoader(every_worker, batch_size=None, num_workers=2)
    assert [item["index"] for item in loader] == [0, 2, 2]
    assert every_worker.skipped == {str(folder / "b" / "b_0.png")}  # seen by a worker, known here


def test_image_folder_converts_every_mode_to_rgb(tmp_path):
    Image.new("L", (8, 8), 90).save(tmp_path / "1_grey.png")
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([255, 0, 0, 0, 0, 255])
    palette.info["transparency"] = 0
    palette.save(tmp_path / "2_palette.png")
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(tmp_path / "3_rgba.png")
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(tmp_path / "4_grey16.png")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "5_cmyk.jpg")
    ds = sources.image_folder(sources.ImageFolderConfig(root=str(tmp_path)), "train")
    pixels = [ds[i]["image"].getpixel((3, 3)) for i in range(len(ds))]
    assert all(ds[i]["image"].mode == "RGB" for i in range(len(ds)))
    assert pixels[:4] == [(90, 90, 90), (0, 0, 255), (10, 20, 30), (156, 156, 156)]  # 16 bit: scaled, not clipped
    assert pixels[4][0] > 200 and max(pixels[4][1:]) < 50  # CMYK red


def test_image_folder_priors_by_index_and_file_name(tmp_path):
    folder = write_classes(tmp_path / "data")
    np.save(tmp_path / "p.npy", np.arange(8.0).reshape(4, 2))
    cfg = sources.ImageFolderConfig(root=str(tmp_path / "data"), prior_file=str(tmp_path / "p.npy"))
    ds = sources.image_folder(cfg, "train")
    assert ds[3]["prior"].tolist() == [6.0, 7.0] and ds.info.classes == ("a", "b") and "prior" in ds.info.description
    file = tmp_path / "p.csv"
    file.write_text("name,value\nb/deep/b_1.png,4\na_0.png,1\na/a_1.png,2\nb_0.png,3\n")
    ds = sources.image_folder(dataclasses.replace(cfg, prior_file=str(file), prior_key="filename"), "train")
    assert [float(ds[i]["prior"]) for i in range(4)] == [1.0, 2.0, 3.0, 4.0]
    (tmp_path / "flat.csv").write_text("deep/b_1.png,4\nb_0.png,3\n")
    flat = sources.image_folder(dataclasses.replace(cfg, root=str(folder / "b"), prior_file=str(tmp_path / "flat.csv"),
                                                    prior_key="filename"), "train")
    assert flat.labels is None and [float(flat[i]["prior"]) for i in range(2)] == [3.0, 4.0]
    np.save(tmp_path / "short.npy", np.zeros(3))
    with pytest.raises(DataError) as err:
        sources.image_folder(dataclasses.replace(cfg, prior_file=str(tmp_path / "short.npy")), "train")
    assert "has 3 rows but the dataset has 4 images" in one_line(err) and "short.npy" in str(err.value)
    file.write_text("a_0.png,1\na_1.png,2\nb_0.png,3\n")
    with pytest.raises(DataError) as err:
        sources.image_folder(dataclasses.replace(cfg, prior_file=str(file), prior_key="filename"), "train")
    assert "no row for image 'b/deep/b_1.png'" in one_line(err) and "p.csv" in str(err.value)


def test_image_folder_layout_errors_are_one_line(tmp_path):
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        sources.image_folder(sources.ImageFolderConfig(root=str(tmp_path / "empty")), "train")
    assert "no images with endings .jpg" in one_line(err) and str(tmp_path / "empty" / "train") in str(err.value)
    save_jpeg(tmp_path / "loose" / "x.png", 1)
    with pytest.raises(DataError) as err:
        sources.image_folder(sources.ImageFolderConfig(root=str(tmp_path / "loose"), labelled="yes"), "train")
    assert "labelled = 'yes'" in one_line(err) and "no class folders" in str(err.value)
    (tmp_path / "odd").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "odd" / "x.img", format="PNG")
    ds = sources.image_folder(sources.ImageFolderConfig(root=str(tmp_path / "odd"), extensions=["IMG"]), "train")
    assert len(ds) == 1 and ds.info.image_size == 8


def test_training_reports_skipped_images_at_the_end(tmp_path, capsys):
    folder = write_classes(tmp_path / "data")
    (folder / "b" / "b_0.png").write_bytes(b"not a png")
    args = ["quickstart", "data.name=image_folder", f"data.root={tmp_path / 'data'}", "data.on_error=skip",
            "data.batch_size=2", "data.num_workers=1", "train.epochs=1", "eval.enabled=false", "train.export=false",
            "train.progress=false", f"train.output_dir={tmp_path / 'run'}"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "ssl_kit: on_error = 'skip': 1 unreadable image(s) of the 4" in err and "b_0.png" in err


# --- Hugging Face ------------------------------------------------------------------------------
def hf_images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (6, 6), (20 * i, 0, 0)) for i in range(n)]


def save_hf(path: Path) -> None:
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["x", "y"]),
                                  "p": datasets.Sequence(datasets.Value("float32"))})
    parts = {}
    for split, n in (("train", 4), ("validation", 2)):
        parts[split] = datasets.Dataset.from_dict(
            {"img": hf_images(n), "label": [i % 2 for i in range(n)], "p": [[i, 1.0] for i in range(n)]},
            features=features,
        )
    datasets.DatasetDict(parts).save_to_disk(str(path))


def test_hf_save_to_disk(tmp_path):
    save_hf(tmp_path / "d")
    cfg = hf.HFConfig(path=str(tmp_path / "d"), image_column="img", test_split_name="validation",
                      prior_column="p")
    train = hf.hf(cfg, "train")
    item = train[3]
    assert item["image"].mode == "RGB" and item["image"].getpixel((0, 0)) == (60, 0, 0)
    assert item["label"] == 1 and train.info.classes == ("x", "y") and train.labels.dtype == np.int64
    assert item["prior"].tolist() == [3.0, 1.0] and train.info.image_size == 6
    test = hf.hf(cfg, "test")
    assert len(test) == 2 and "prior" not in test[0]  # prior_split = "train"
    with pytest.raises(DataError) as err:
        hf.hf(dataclasses.replace(cfg, image_column="image"), "train")
    assert "'image'" in one_line(err) and "available columns: img, label, p" in str(err.value)
    with pytest.raises(DataError, match="no split 'test'; available: train, validation"):
        hf.hf(dataclasses.replace(cfg, test_split_name="test"), "test")


def test_hf_parquet_data_files_and_streaming(tmp_path):
    ds = datasets.Dataset.from_dict({"image": hf_images(3), "label": ["cat", "dog", "cat"]})
    ds = ds.cast_column("image", datasets.Image())
    ds.to_parquet(str(tmp_path / "train.parquet"))
    cfg = hf.HFConfig(path="parquet", data_files={"train": str(tmp_path / "train.parquet")},
                      cache_dir=str(tmp_path / "cache"))
    loaded = hf.hf(cfg, "train")
    assert len(loaded) == 3 and loaded.info.classes == ("cat", "dog") and loaded.labels.tolist() == [0, 1, 0]
    unlabelled = hf.hf(dataclasses.replace(cfg, label_column=""), "train")
    assert unlabelled.labels is None and "label" not in unlabelled[0]
    with pytest.raises(DataError) as err:
        hf.hf(dataclasses.replace(cfg, streaming=True), "train")
    assert "random index" in one_line(err)
    with pytest.raises(DataError) as err:
        hf.hf(hf.HFConfig(path=str(tmp_path / "absent")), "train")
    assert "does not exist" in one_line(err)


# --- priors ------------------------------------------------------------------------------------
@pytest.fixture
def small_cifar(tmp_path):
    write_cifar(tmp_path)
    return tvs.TorchvisionConfig(root=str(tmp_path))


def test_prior_npy_and_safetensors(tmp_path, small_cifar):
    from safetensors.numpy import save_file

    np.save(tmp_path / "p.npy", np.arange(20, dtype=np.float64).reshape(10, 2))
    ds = tvs.cifar10(dataclasses.replace(small_cifar, prior_file=str(tmp_path / "p.npy")), "train")
    assert ds[4]["prior"].tolist() == [8.0, 9.0] and ds[4]["prior"].dtype == torch.float32
    assert ds.labels is not None and ds.info.num_classes == 10 and "prior" in ds.info.description
    assert "prior" not in tvs.cifar10(dataclasses.replace(small_cifar, prior_file=str(tmp_path / "p.npy")), "test")[0]
    save_file({"prior": np.ones(10, dtype=np.float32), "other": np.zeros(3, dtype=np.float32)},
              str(tmp_path / "p.safetensors"))
    ds = tvs.cifar10(dataclasses.replace(small_cifar, prior_file=str(tmp_path / "p.safetensors")), "train")
    assert ds[0]["prior"].tolist() == [1.0]
    np.save(tmp_path / "short.npy", np.zeros(9))
    with pytest.raises(DataError) as err:
        tvs.cifar10(dataclasses.replace(small_cifar, prior_file=str(tmp_path / "short.npy")), "train")
    assert "has 9 rows but the dataset has 10" in one_line(err) and "short.npy" in str(err.value)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="plain .npy"):
        tvs.cifar10(dataclasses.replace(small_cifar, prior_file=str(tmp_path / "obj.npy")), "train")


def test_prior_csv_index_errors(tmp_path, small_cifar):
    file = tmp_path / "p.csv"
    file.write_text("key,a,b\n" + "".join(f"{i},{i},0.5\n" for i in reversed(range(10))))
    ds = tvs.cifar10(dataclasses.replace(small_cifar, prior_file=str(file)), "train")
    assert ds[7]["prior"].tolist() == [7.0, 0.5]
    file.write_text("".join(f"{i},{i}\n" for i in range(10) if i != 3))
    with pytest.raises(DataError) as err:
        tvs.cifar10(dataclasses.replace(small_cifar, prior_file=str(file)), "train")
    assert "no row for dataset index 3" in one_line(err) and "p.csv" in str(err.value)
    file.write_text("0,1\n1,x\n")
    with pytest.raises(DataError, match="line 2: non-numeric value 'x'"):
        tvs.cifar10(dataclasses.replace(small_cifar, prior_file=str(file)), "train")


def test_prior_csv_by_filename(tmp_path):
    write_imagenet(tmp_path / "in", ["a", "b"])
    (tmp_path / "c.txt").write_text("a\nb\n")
    file = tmp_path / "p.csv"
    file.write_text("b_1.JPEG,4\na/a_0.JPEG,1\na_1.JPEG,2\nb/b_0.JPEG,3\n")
    cfg = folders.ImageNet100Config(root=str(tmp_path / "in"), class_file=str(tmp_path / "c.txt"),
                                    prior_file=str(file), prior_key="filename")
    ds = folders.imagenet100(cfg, "train")
    assert [float(ds[i]["prior"]) for i in range(4)] == [1.0, 2.0, 3.0, 4.0]
    assert ds.dataset.paths and ds.dataset.skipped == set()  # the image folder under the prior
    file.write_text("a_0.JPEG,1\na_1.JPEG,2\n")
    with pytest.raises(DataError) as err:
        folders.imagenet100(cfg, "train")
    assert "no row for image 'b/b_0.JPEG'" in one_line(err)
    np.save(tmp_path / "p.npy", np.zeros(4))
    with pytest.raises(DataError, match="needs a .csv"):
        folders.imagenet100(dataclasses.replace(cfg, prior_file=str(tmp_path / "p.npy")), "train")


def test_every_new_knob_has_help():
    for cls in (tvs.TorchvisionConfig, folders.ImageNet100Config, folders.TinyImageNetConfig, hf.HFConfig,
                priors.PriorOptions, sources.ImageFolderConfig):
        for name, (field, tp) in fields_of(cls).items():
            assert field.metadata.get("help"), f"{cls.__name__}.{name} has no help"
            assert name not in {"name", "batch_size", "num_workers", "pin_memory", "persistent_workers",
                                "prefetch_factor", "train_split"}, f"{name} clashes with a core [data] key"
    for cls in (folders.ImageNet100Config, folders.TinyImageNetConfig, sources.ImageFolderConfig):
        assert typing.get_args(fields_of(cls)["on_error"][1]) == ("raise", "skip")

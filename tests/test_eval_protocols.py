"""Issue 7's protocols: the online linear probe, the torch linear probe, the feature choice,
distributed feature extraction, the eval command and the report's plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ssl_kit.cli import main as cli
from ssl_kit.data.sources import TensorImages
from ssl_kit.errors import UserError
from ssl_kit.eval.features import extract_features, feature_module
from ssl_kit.eval.linear_torch import train_linear_probe
from ssl_kit.eval.online import OnlineProbe
from ssl_kit import train

# tiny.toml's differences: 64 images in batches of 16, 4 epochs of adam, then k-NN evaluation
FAKE = ("data.batch_size=16", "data.num_samples=64", "optim.name=adam", "optim.lr=0.003", "train.epochs=4",
        "eval.enabled=true", "eval.evaluators=['knn']", "eval.online_lr=0.05")


@pytest.fixture
def run(tiny, tmp_path):
    """``run(name, *overrides)``: train the recipe above in ``tmp_path / name``; its results and
    run directory."""

    def go(name, *overrides):
        return train(tiny(*FAKE, *overrides, out=tmp_path / name)), tmp_path / name

    return go


def log_of(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


# --- the online probe --------------------------------------------------------------------------
def test_online_probe_repeats_labels_per_view_and_counts_steps():
    probe = OnlineProbe(3, 2)
    with torch.no_grad():
        probe.linear.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
        probe.linear.bias.zero_()
    features = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0], [0, 2.0, 0]], requires_grad=True)
    out = probe.loss(features, torch.tensor([0, 1]))  # 2 views x 2 images: labels 0, 1, 0, 1
    assert out["online_probe_acc"].item() == pytest.approx(75.0)
    out["online_probe_loss"].backward()
    assert features.grad is None  # detached: the probe never trains the backbone
    assert int(probe.steps) == 1
    with pytest.raises(ValueError, match="multiple"):
        probe.loss(torch.zeros(3, 3), torch.tensor([0, 1]))


def test_online_probe_trains_beside_the_ssl_loss_without_changing_it(run):
    # Un-augmented views and 32 steps: enough for a linear probe to separate the 4 fake classes
    # (under the simclr preset's crops and jitter the fake classes are barely separable at all).
    easy = ("views.preset=none", "train.epochs=8")
    with_probe, run_a = run("a", *easy)
    without, run_b = run("b", "eval.online_probe=false", *easy)
    log_a, log_b = log_of(run_a), log_of(run_b)
    # Detached features and its own parameter group: the SSL trajectory is bitwise the same.
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
    assert all("online_probe_loss" in r and "online_probe_acc" in r for r in log_a)
    assert not any("online_probe_loss" in r for r in log_b)
    assert log_a[-1]["online_probe_loss"] < log_a[0]["online_probe_loss"]
    trained = with_probe["results"]["trained"]
    assert trained["online_linear_top1"] > 50.0  # 4 classes: chance is 25
    assert "online linear" in with_probe["protocols"]["online_linear"]
    assert "online_linear_top1" not in without["results"]["trained"]
    assert "online linear" in (run_a / "results.md").read_text()


def test_label_free_data_trains_without_probe_and_skips_evaluation(run):
    results, run_dir = run("free", "data.labelled=false")
    assert not any("online_probe_loss" in r for r in log_of(run_dir))
    assert "no labels" in results["note"]
    assert TensorImages(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), None, num_classes=3).info.num_classes is None


# --- the torch linear probe --------------------------------------------------------------------
def separable(n=120, classes=4, seed=0, shuffle=False):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 40, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    images[torch.arange(n), 0, labels, labels] = 255  # class c lights pixel (c, c)
    if shuffle:
        labels = labels[torch.randperm(n, generator=g)]
    return TensorImages(images, labels, num_classes=classes)


def to_tensor(image):
    return image.float() / 255


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.5), ("adam", 0.05)])
def test_linear_torch_reaches_full_accuracy_on_separable_features(optimizer, lr):
    scores = train_linear_probe(nn.Flatten(), separable(), separable(seed=1), to_tensor,
                                optimizer=optimizer, lr=lr, epochs=30, batch_size=32)
    assert scores["linear_torch_top1"] == 100.0


def test_linear_torch_is_at_chance_on_shuffled_labels():
    scores = train_linear_probe(nn.Flatten(), separable(shuffle=True), separable(n=400, seed=1, shuffle=True),
                                to_tensor, lr=0.5, epochs=30, batch_size=32, schedule="step")
    assert scores["linear_torch_top1"] < 40.0  # chance 25


def test_linear_torch_with_augmentation_is_seeded_and_keeps_the_encoder_frozen():
    encoder = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(16))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    flip = lambda image: to_tensor(image).flip(-1) if torch.rand(()) < 0.5 else to_tensor(image)  # noqa: E731
    a = train_linear_probe(encoder, separable(), separable(seed=1), to_tensor, augment=flip, epochs=3, seed=3)
    b = train_linear_probe(encoder, separable(), separable(seed=1), to_tensor, augment=flip, epochs=3, seed=3)
    assert a == b
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())  # BN stats untouched


# --- which features, and extraction over processes ---------------------------------------------
def test_feature_module_choices_and_errors():
    from ssl_kit.methods.simclr import SimCLR, SimCLRConfig

    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 6))
    backbone.num_features = 6
    method = SimCLR(backbone, SimCLRConfig(proj_hidden_dim=5, proj_output_dim=3))
    x = torch.randn(2, 1, 4, 4)
    assert feature_module(method, "encoder") is backbone
    assert feature_module(method, "backbone") is backbone
    assert feature_module(method, "projector")(x).shape == (2, 3)
    assert feature_module(method, "projector.0")(x).shape == (2, 5)
    with pytest.raises(UserError, match="allowed: encoder, backbone, projector"):
        feature_module(method, "predictor")
    with pytest.raises(UserError, match="layers 0"):
        feature_module(method, "projector.9")


def test_sharded_extraction_gathers_to_the_single_process_result():
    data = separable(n=37)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    whole = extract_features(encoder, data, to_tensor, batch_size=8)
    shards = {}

    def fake_gather(tensor):  # what accelerator.gather does: concatenation in rank order
        shards.setdefault(tensor.dtype, []).append(tensor)
        return tensor

    parts = [extract_features(encoder, data, to_tensor, 8, rank=r, world_size=3, gather=fake_gather) for r in range(3)]
    assert all(len(p[0]) == 13 for p in parts)  # 37 rows -> shards of 13, the last one padded
    features = torch.cat([p[0] for p in parts])[:37]
    labels = torch.cat([p[1] for p in parts])[:37]
    assert torch.allclose(features, whole[0]) and torch.equal(labels, whole[1])


# --- the eval command and the report -----------------------------------------------------------
def test_eval_command_reproduces_the_run_and_writes_plots(run, tmp_path, capsys):
    results, run_dir = run("r", "eval.plots=true")
    knn = results["results"]["trained"]["knn_cosine_k20_t0.07_top1"]
    for name in ("loss.png", "online_probe.png", "embedding.png"):
        path = run_dir / "plots" / name
        with Image.open(path) as image:
            assert image.size[0] >= 400 and image.size[1] >= 300
            assert len(torch.from_numpy(np.asarray(image.convert("L"))).unique()) > 10  # not a blank canvas
    assert cli(["eval", str(run_dir / "export"), "--out", str(tmp_path / "e1"), "--evaluator", "knn",
                "eval.plots=false"]) == 0
    from_export = json.loads((tmp_path / "e1" / "results.json").read_text())
    assert from_export["results"]["trained"]["knn_cosine_k20_t0.07_top1"] == knn
    assert cli(["eval", str(run_dir), "--evaluator", "linear_torch", "eval.linear_torch.epochs=5",
                "eval.plots=false"]) == 0
    from_run = json.loads((run_dir / "eval" / "results.json").read_text())
    assert "linear_torch_top1" in from_run["results"]["trained"]
    assert from_run["results"]["trained"]["online_linear_top1"] == results["results"]["trained"]["online_linear_top1"]
    assert "torch sgd" in from_run["protocols"]["linear_torch"]
    capsys.readouterr()
    assert cli(["eval", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert cli(["eval", str(run_dir), "eval.features=head"]) == 2
    assert "no head 'head'" in capsys.readouterr().err


def test_expected_number_is_compared_only_with_a_result_of_its_own_protocol():
    from ssl_kit.eval.report import compare_expected
    from ssl_kit.recipe import ExpectedConfig

    online = ExpectedConfig(value=90.74, protocol="online linear", metric="online_linear_top1", epochs=1000)
    both = {"online_linear_top1": 61.5, "knn_cosine_k20_t0.07_top1": 70.0}
    out = compare_expected(online, both)
    assert out["measured"] == 61.5 and "measured 61.50 with the same protocol" in out["summary"]
    offline_only = compare_expected(online, {"knn_cosine_k20_t0.07_top1": 70.0})
    assert offline_only["measured"] is None and "not compared" in offline_only["summary"]
    unnamed = compare_expected(ExpectedConfig(value=82.53, protocol="calibrated linear"), both)
    assert unnamed["measured"] is None and "names no metric" in unnamed["summary"]


def test_linear_torch_weight_decay_grid_is_chosen_on_held_out_rows():
    train_set, test_set = separable(n=200), separable(seed=1)
    scores = train_linear_probe(nn.Flatten(), train_set, test_set, to_tensor, lr=0.5, epochs=20, batch_size=32,
                                weight_decay_grid=[10.0, 0.0], val_fraction=0.2)
    assert scores["linear_torch_wd"] == 0.0  # SGD with a decay of 10 at lr 0.5 diverges: it loses on the held-out rows
    plain = train_linear_probe(nn.Flatten(), train_set, test_set, to_tensor, lr=0.5, epochs=20, batch_size=32)
    assert scores["linear_torch_top1"] == plain["linear_torch_top1"]  # then refit on all rows as without a grid
    with pytest.raises(ValueError, match="weight_decay_grid must be a non-empty list"):
        train_linear_probe(nn.Flatten(), train_set, test_set, to_tensor, weight_decay_grid=[])
    with pytest.raises(ValueError, match="val_fraction must be in"):
        train_linear_probe(nn.Flatten(), train_set, test_set, to_tensor, weight_decay_grid=[0.0], val_fraction=1.0)


def test_extra_features_add_rows_and_an_unknown_head_fails_before_training(run, tiny, tmp_path):
    results, run_dir = run("x", "eval.extra_features=['projector', 'projector.0']", "eval.online_probe=false")
    rows = results["results"]
    assert set(rows) == {"trained", "trained:projector", "trained:projector.0"}
    assert all("knn_cosine_k20_t0.07_top1" in row for row in rows.values())
    assert "trained:projector" in (run_dir / "results.md").read_text()
    with pytest.raises(UserError, match="no head 'predictor'"):
        train(tiny("eval.enabled=true", "eval.extra_features=['predictor']", out=tmp_path / "bad"))
    assert not (tmp_path / "bad" / "log.jsonl").exists()
    with pytest.raises(UserError, match="lists 'backbone' twice"):
        tiny("eval.extra_features=['backbone', 'backbone']")

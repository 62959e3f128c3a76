"""End-to-end runs: a 3-step run on fake data, and the (shortened) quickstart on real digits."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ssl_kit import hookimpl
from ssl_kit.build import build
from ssl_kit.methods.simclr import SimCLR, SimCLRConfig
from ssl_kit.recipe import load_recipe
from ssl_kit.testing import temporary_plugin
from ssl_kit import train

ROOT = Path(__file__).resolve().parents[1]
# tiny.toml's differences for the run of the first test: 3 steps, then evaluation with baselines
FAKE = ("train.max_steps=3", "eval.enabled=true", "eval.evaluators=['knn', 'linear']",
        "eval.baselines=['raw', 'random_init']")


def test_three_step_run_on_fake_data_writes_the_run_directory(tiny, tmp_path):
    recipe = tiny(*FAKE)
    results = train(recipe)
    run = tmp_path / "run"
    assert results["steps"] == 3
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(r["loss"] > 0 and r["lr"] > 0 for r in log)
    saved = json.loads((run / "results.json").read_text())
    assert set(saved["results"]) == {"raw", "random_init", "trained"}
    assert "knn_cosine_k20_t0.07_top1" in saved["results"]["trained"]
    assert saved["protocols"]["knn"] == "k-NN (cosine, k=20, T=0.07)"
    assert load_recipe(str(run / "recipe.toml")).resolved() == recipe.resolved()
    weights = load_file(str(run / "export" / "model.safetensors"))
    config = json.loads((run / "export" / "config.json").read_text())
    assert config["num_features"] == 16 and config["method"] == "simclr"
    assert any(k.startswith("features.") for k in weights)


def test_training_changes_weights_and_gradients_reach_the_backbone(tiny, tmp_path):
    recipe = tiny(*FAKE, "eval.enabled=false")
    train(recipe)
    initial = build(recipe).method.state_dict()
    final = load_file(str(tmp_path / "run" / "checkpoints" / "step_3" / "model.safetensors"))
    changed = [k for k in initial if initial[k].is_floating_point() and not torch.equal(initial[k], final[k])]
    assert any(k.startswith("backbone.") for k in changed) and any(k.startswith("projector.") for k in changed)


class FlippedSimCLR(SimCLR):
    """Negative control: maximises the SimCLR loss instead of minimising it."""

    def forward(self, batch):
        out = super().forward(batch)
        return {"loss": -out["loss"]}


class FlippedPlugin:
    @hookimpl
    def register_methods(self, register):
        register("simclr_flipped", FlippedSimCLR, config=SimCLRConfig)


QUICK = ["train.epochs=24", "eval.baselines=['random_init']", "train.checkpoint_every=0"]


def quickstart(tmp_path, extra=()):
    overrides = [f"train.output_dir={tmp_path}", "train.progress=false", *QUICK, *extra]
    results = train(load_recipe(str(ROOT / "recipes" / "quickstart.toml"), overrides))["results"]
    return results["trained"], results["random_init"]


@pytest.mark.slow
def test_short_quickstart_learns_and_flipped_loss_does_not(tmp_path):
    key = "knn_cosine_k20_t0.07_top1"
    trained, random_init = quickstart(tmp_path / "ok")
    assert trained[key] >= 96.5 and trained[key] >= random_init[key] + 1.0, (trained, random_init)
    with temporary_plugin(FlippedPlugin(), "flipped"):
        flipped, random_init2 = quickstart(tmp_path / "flipped", ["method.name=simclr_flipped"])
    assert random_init2[key] == random_init[key]
    assert not (flipped[key] >= 96.5 and flipped[key] >= random_init[key] + 1.0), flipped


def test_export_loads_and_bad_exports_give_clear_errors(tiny, tmp_path):
    from ssl_kit.errors import CheckpointError
    from ssl_kit.loading import load_encoder

    train(tiny(*FAKE, "eval.enabled=false"))
    export = tmp_path / "run" / "export"
    encoder = load_encoder(export)
    assert encoder(torch.zeros(2, 3, 16, 16)).shape == (2, 16)
    config = json.loads((export / "config.json").read_text())
    (export / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_encoder(export)
    (export / "config.json").write_text(json.dumps(config))
    data = (export / "model.safetensors").read_bytes()
    (export / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors cannot be read"):
        load_encoder(export)
    state = tmp_path / "run" / "checkpoints" / "step_3" / "state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "format_version": 0}))
    with pytest.raises(CheckpointError, match="format_version 0"):
        train(tiny(*FAKE, "train.max_steps=4"))

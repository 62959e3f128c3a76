"""Training knobs: non-finite losses, trackers, reproducibility and speed switches."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ssl_kit.testing import need
from ssl_kit import hookimpl
from ssl_kit.errors import UserError
from ssl_kit.methods.moco import MoCo, MoCoConfig
from ssl_kit.methods.simclr import SimCLR, SimCLRConfig
from ssl_kit.recipe import load_recipe
from ssl_kit.testing import temporary_plugin
from ssl_kit import train


class NaNAtStep3(SimCLR):
    calls = 0

    def forward(self, batch):
        out = super().forward(batch)
        NaNAtStep3.calls += 1
        if NaNAtStep3.calls == 3:
            return {"loss": out["loss"] * math.nan, "align": out["loss"].detach()}
        return out


class NaNPlugin:
    @hookimpl
    def register_methods(self, register):
        register("simclr_nan", NaNAtStep3, config=SimCLRConfig)


@pytest.fixture
def recipe(tiny):
    """``recipe(folder, *overrides)``: tiny.toml for 2 epochs of 4 steps, a checkpoint after each
    step, its run in ``folder / "run"``."""

    def load(folder, *overrides):
        return tiny("train.epochs=2", "train.checkpoint_every=1", *overrides, out=folder / "run")

    return load


def test_nonfinite_loss_stops_naming_step_and_terms_and_keeps_last_checkpoint(recipe, tmp_path):
    NaNAtStep3.calls = 0
    with temporary_plugin(NaNPlugin(), "nan"):
        with pytest.raises(UserError) as info:
            train(recipe(tmp_path, "method.name=simclr_nan"))
    message = str(info.value)
    assert "non-finite loss at step 3" in message and "'loss': nan" in message and "'align'" in message
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["step_1", "step_2"]
    weights = load_file(str(tmp_path / "run" / "checkpoints" / "step_2" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_skip_nonfinite_counts_and_skips_the_step(recipe, tmp_path, capsys):
    NaNAtStep3.calls = 0
    with temporary_plugin(NaNPlugin(), "nan"):
        results = train(recipe(tmp_path, "method.name=simclr_nan", "train.skip_nonfinite=true"))
    assert results["skipped_nonfinite"] == 1 and results["steps"] == 8
    assert "1 of 8 optimizer steps were skipped" in capsys.readouterr().err  # said at the end, not only logged
    final = load_file(str(tmp_path / "run" / "checkpoints" / "step_8" / "model.safetensors"))
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[2]["skipped_nonfinite"] == 1 and all(math.isfinite(r["lr"]) for r in log)
    assert all(torch.isfinite(w).all() for w in final.values())


class PoisonsBatchNormAtStep3(SimCLR):
    """A NaN batch at step 3, as a real one would: the loss and the batch-norm statistics it updated."""
    calls = 0

    def forward(self, batch):
        out = super().forward(batch)
        PoisonsBatchNormAtStep3.calls += 1
        if PoisonsBatchNormAtStep3.calls == 3:
            bn = next(m for m in self.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var.data.fill_(math.nan)  # .data: as batch norm's own update, outside autograd's version count
            return {"loss": out["loss"] * math.nan}
        return out


class PoisonPlugin:
    @hookimpl
    def register_methods(self, register):
        register("simclr_poison", PoisonsBatchNormAtStep3, config=SimCLRConfig)


def test_non_finite_buffers_after_skipped_steps_never_reach_the_export(recipe, tmp_path):
    PoisonsBatchNormAtStep3.calls = 0
    with temporary_plugin(PoisonPlugin(), "poison"):
        with pytest.raises(UserError, match=r"hold NaN/inf in 1 tensor\(s\) \(e.g. 'backbone\..*running_var'\)"):
            train(recipe(tmp_path, "method.name=simclr_poison", "train.skip_nonfinite=true"))
    assert not (tmp_path / "run" / "export").exists() and not (tmp_path / "run" / "results.json").exists()


class NaNMoCoAtStep3(MoCo):
    calls = 0

    def forward(self, batch):
        out = super().forward(batch)
        NaNMoCoAtStep3.calls += 1
        return {**out, "loss": out["loss"] * math.nan} if NaNMoCoAtStep3.calls == 3 else out


class NaNMoCoPlugin:
    @hookimpl
    def register_methods(self, register):
        register("mocov2plus_nan", NaNMoCoAtStep3, config=MoCoConfig)


def test_a_skipped_step_leaves_mocos_queue_and_key_encoder_as_they_were(tmp_path):
    NaNMoCoAtStep3.calls = 0
    contract = Path(__file__).parent / "contract" / "mocov2plus.toml"
    with temporary_plugin(NaNMoCoPlugin(), "nan-moco"):
        results = train(load_recipe(str(contract), [
            f"train.output_dir={tmp_path}", "method.name=mocov2plus_nan", "method.queue_size=64", "train.max_steps=3",
            "train.skip_nonfinite=true", "train.checkpoint_every=1", "train.keep_checkpoints=3", "train.progress=false",
            "eval.enabled=false", "train.export=false"]))
    assert results["skipped_nonfinite"] == 1
    step = [load_file(str(tmp_path / "checkpoints" / f"step_{k}" / "model.safetensors")) for k in (1, 2, 3)]
    assert int(step[1]["queue.pointer"]) == 32 and not torch.equal(step[0]["queue.queue"], step[1]["queue.queue"])
    batch_norm_statistics = ("running_mean", "running_var", "num_batches_tracked")  # move in every forward
    kept = [k for k in step[2] if k.startswith(("queue.", "key_encoder.")) and not k.endswith(batch_norm_statistics)]
    assert "key_encoder.momentum" in kept and "queue.queue" in kept
    for key in kept:
        assert torch.equal(step[1][key], step[2][key]), key  # step 3 was skipped: nothing enqueued, no EMA update


def test_tensorboard_tracker_writes_events(recipe, tmp_path):
    need("tensorboard")
    train(recipe(tmp_path, "train.trackers=['tensorboard']", "train.epochs=1"))
    events = list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_wandb_tracker_keeps_its_run_id_across_resume(recipe, tmp_path, monkeypatch):
    need("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(recipe(tmp_path, "train.trackers=['wandb']", "train.max_steps=2"))
    first = json.loads((tmp_path / "run" / "trackers.json").read_text())["wandb"]
    train(recipe(tmp_path, "train.trackers=['wandb']", "train.max_steps=4"))
    assert json.loads((tmp_path / "run" / "trackers.json").read_text())["wandb"] == first
    runs = [p.name for p in (tmp_path / "run" / "wandb").iterdir() if p.name.startswith("offline-run")]
    assert len(runs) == 2 and all(f"-{first}" in name for name in runs)


def test_unknown_tracker_is_a_recipe_error(recipe, tmp_path):
    with pytest.raises(UserError, match="unknown entry 'tensorbord'. Did you mean 'tensorboard'"):
        recipe(tmp_path, "train.trackers=['tensorbord']")


def test_deterministic_and_channels_last_runs_match_the_default_run(recipe, tmp_path):
    a = train(recipe(tmp_path / "a", "train.max_steps=2", "eval.enabled=false"))
    b = train(recipe(tmp_path / "b", "train.max_steps=2", "train.deterministic=true", "train.channels_last=true"))
    torch.use_deterministic_algorithms(False)
    wa = load_file(str(tmp_path / "a" / "run" / "checkpoints" / "step_2" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "run" / "checkpoints" / "step_2" / "model.safetensors"))
    assert a["steps"] == b["steps"] == 2
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k


def test_gradient_accumulation_averages_the_micro_batch_gradients(recipe, tmp_path):
    """What holds: k micro-batches of B give the mean of their k gradients (one optimizer step).
    What does not: it is not one batch of kB for a contrastive loss (other negatives)."""
    from ssl_kit.build import build, build_loader

    overrides = ["train.max_steps=1", "optim.momentum=0.0", "train.checkpoint_every=0"]
    r = recipe(tmp_path / "acc", "train.grad_accumulation=2", *overrides)
    train(r)
    accumulated = load_file(str(tmp_path / "acc" / "run" / "checkpoints" / "step_1" / "model.safetensors"))

    parts = build(r)
    method = parts.method
    loader = build_loader(parts, rank=0, world_size=1)  # the training path's micro-batches (batched views here)
    optimizer = torch.optim.SGD(method.parameters(), lr=r.optim.lr)
    for _, batch in zip(range(2), loader):
        (method(batch)["loss"] / 2).backward()
    optimizer.step()
    for key, value in method.state_dict().items():
        assert torch.allclose(value.float(), accumulated[key].float(), atol=1e-6), key

    train(recipe(tmp_path / "big", "data.batch_size=16", *overrides))
    one_batch = load_file(str(tmp_path / "big" / "run" / "checkpoints" / "step_1" / "model.safetensors"))
    assert not torch.allclose(one_batch["projector.0.weight"], accumulated["projector.0.weight"], atol=1e-6)

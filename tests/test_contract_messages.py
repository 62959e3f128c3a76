"""The contract suite's comparisons say what differs: the check, the tensor or loss step, both
values, with a tolerance relative to the values' size; the 2-process check takes overrides."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ssl_kit.io import loads_toml
from ssl_kit.testing import assert_same_runs, compare_runs, run_contract

CONTRACT = Path(__file__).parent / "contract" / "simclr.toml"


def fake_run(folder: Path, losses: list[float], tensors: dict[str, torch.Tensor]) -> Path:
    """A run directory as the contract leaves it: log.jsonl and one checkpoint with digests."""
    step = folder / "checkpoints" / f"step_{len(losses)}"
    step.mkdir(parents=True)
    (folder / "log.jsonl").write_text("".join(json.dumps({"step": i + 1, "loss": x}) + "\n" for i, x in enumerate(losses)))
    save_file(tensors, str(step / "model.safetensors"))
    for rank in (0, 1):
        (step / f"digest_rank{rank}.txt").write_text("same\n")
    return folder


def weights(**changes: float) -> dict[str, torch.Tensor]:
    base = {"backbone.weight": torch.ones(2, 3), "head.bias": torch.zeros(4), "queue.pointer": torch.tensor(3)}
    for name, value in changes.items():
        base[name.replace("__", ".")] = base[name.replace("__", ".")].clone()
        base[name.replace("__", ".")].view(-1)[-1] = value
    return base


def test_the_failure_names_the_tensor_its_index_and_both_values(tmp_path):
    a = fake_run(tmp_path / "p1", [2.0, 1.5], weights())
    b = fake_run(tmp_path / "p2", [2.0, 1.5], weights(backbone__weight=1.25))
    with pytest.raises(AssertionError) as err:
        assert_same_runs(a, b, what="one step of 1 and 2 processes")
    message = str(err.value)
    assert "one step of 1 and 2 processes differ: tensor 'backbone.weight' at index (1, 2): 1.0 in p1 vs 1.25 in p2" in message
    assert compare_runs(a, b)["weights"] == 0.25


def test_loss_tolerance_is_relative_to_the_losss_size(tmp_path):
    """float32 rounding of a loss near 100 is about 1e-5: inside 1e-5 + 1e-5 x |loss|."""
    a = fake_run(tmp_path / "p1", [100.0, 99.0], weights())
    b = fake_run(tmp_path / "p2", [100.0 + 4e-4, 99.0], weights())
    gap = assert_same_runs(a, b)
    assert gap["loss"] == pytest.approx(4e-4) and gap["excess"] < 1
    c = fake_run(tmp_path / "p3", [100.0, 99.01], weights())
    with pytest.raises(AssertionError, match=r"loss at step 2: 99.0 in p1 vs 99.01 in p3"):
        assert_same_runs(a, c)


def test_replicas_that_differ_are_named(tmp_path):
    a = fake_run(tmp_path / "p1", [1.0], weights())
    b = fake_run(tmp_path / "p2", [1.0], weights())
    (b / "checkpoints" / "step_1" / "digest_rank1.txt").write_text("other\n")
    with pytest.raises(AssertionError, match="p2: the processes' copies of the method differ"):
        assert_same_runs(a, b)


def test_the_contract_launch_applies_overrides_after_its_own(tmp_path):
    run_contract(tmp_path, [CONTRACT], processes=1, overrides=("optim.name='adam'", "optim.lr=0.001"))
    saved = loads_toml((tmp_path / "simclr" / "p1" / "recipe.toml").read_text())
    assert saved["optim"]["name"] == "adam" and saved["optim"]["lr"] == 0.001
    assert saved["train"]["max_steps"] == 1 and saved["train"]["sync_batchnorm"] is True

"""Exact resume: a run killed with SIGKILL (mid-training or mid-save) and resumed ends with
weights bitwise identical to an uninterrupted run; nothing in a checkpoint needs unpickling."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TINY = Path(__file__).parent / "tiny.toml"
# tiny.toml's differences: 48 images, a loader worker, sgd with warm-up, 2 epochs, a checkpoint every step
RECIPE = ("data.num_samples=48", "data.num_workers=1", "optim.name=sgd", "optim.warmup_epochs=1", "train.epochs=2",
          "train.checkpoint_every=1")
STEPS = 12


def command(run_dir):
    return [sys.executable, "-m", "ssl_kit", str(TINY), *RECIPE, f"train.output_dir={run_dir}"]


def final_weights(run_dir):
    return load_file(str(run_dir / "checkpoints" / f"step_{STEPS}" / "model.safetensors"))


def assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())
    assert diff == 0.0
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    subprocess.run(command(run_dir), check=True, capture_output=True, timeout=300)
    return run_dir


def steps_logged(run_dir):
    log = run_dir / "log.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_resume_after_sigkill_during_training_is_bitwise_identical(reference, tmp_path):
    run_dir = tmp_path / "run"
    kill_after = random.Random().randint(2, STEPS - 3)
    proc = subprocess.Popen(command(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while steps_logged(run_dir) < kill_after and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run_dir / "checkpoints" / f"step_{STEPS}").exists()
    resumed = subprocess.run(command(run_dir), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert_bitwise_equal(final_weights(run_dir), final_weights(reference))


def test_resume_after_sigkill_during_checkpoint_save_is_bitwise_identical(reference, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "SSL_KIT_TEST_KILL_AT": "save:model@5"}
    killed = subprocess.run(command(run_dir), capture_output=True, env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir()]
    assert ".tmp-step_5" in leftovers and "step_4" in leftovers and "step_5" not in leftovers
    resumed = subprocess.run(command(run_dir), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "step 4" in resumed.stdout + resumed.stderr
    assert not any(p.name.startswith(".tmp-") for p in (run_dir / "checkpoints").iterdir())
    assert_bitwise_equal(final_weights(run_dir), final_weights(reference))


def test_every_checkpoint_file_loads_without_unpickling(reference):
    checkpoints = sorted((reference / "checkpoints").iterdir())
    assert [p.name for p in checkpoints] == [f"step_{STEPS - 1}", f"step_{STEPS}"]  # keep 2
    for path in checkpoints[-1].iterdir():
        if path.suffix == ".safetensors":
            load_file(str(path))
        elif path.suffix == ".pt":
            torch.load(path, weights_only=True)
        elif path.suffix == ".txt":
            assert path.name.startswith("digest_rank")
        else:
            assert path.name == "state.json"
            assert json.loads(path.read_text())["step"] == STEPS

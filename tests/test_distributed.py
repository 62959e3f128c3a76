"""2 processes = 1 process: the gathered negatives, the rank-sliced batch and SyncBN make one
optimizer step of 2 processes x B equal to 1 process x 2B (gloo on CPU)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

RECIPE = """
[method]
name = "simclr"
proj_hidden_dim = 32
proj_output_dim = 16
[backbone]
name = "convnet"
channels = [8, 16]
[data]
name = "fake"
batch_size = 16
num_samples = 64
[optim]
name = "sgd"
lr = 0.5
lr_scaling = "none"
[train]
epochs = 1
max_steps = 2
log_every = 1
progress = false
export = false
[eval]
enabled = false
"""


def run(tmp_path, name, processes, *overrides):
    out = tmp_path / name
    base = [str(tmp_path / "r.toml"), f"train.output_dir={out}", *overrides]
    if processes == 1:
        cmd = [sys.executable, "-m", "ssl_kit", *base]
    else:
        launcher = shutil.which("accelerate") or "accelerate"
        cmd = [launcher, "launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(29500 + os.getpid() % 1000), "-m", "ssl_kit", *base]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
    weights = load_file(str(out / "checkpoints" / "step_2" / "model.safetensors"))
    return losses, weights


def max_difference(a, b):
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ddp")
    (tmp_path / "r.toml").write_text(RECIPE)
    return {
        "one": run(tmp_path, "one", 1),
        "two_sync": run(tmp_path, "two_sync", 2, "train.sync_batchnorm=true"),
        "two_plain": run(tmp_path, "two_plain", 2),
    }


def test_two_processes_with_syncbn_equal_one_process(runs):
    (loss1, w1), (loss2, w2) = runs["one"], runs["two_sync"]
    assert loss1 == pytest.approx(loss2, abs=1e-5, rel=1e-5)
    assert max_difference(w1, w2) < 1e-5


def test_without_syncbn_the_gap_is_measured_and_small(runs):
    (loss1, w1), (loss2, w2) = runs["one"], runs["two_plain"]
    gap = max_difference(w1, w2)
    print(f"2 processes without SyncBN: loss gap {abs(loss1[-1] - loss2[-1]):.2e}, weight gap {gap:.2e}")
    assert gap > 1e-7  # per-process batch statistics really differ ...
    assert abs(loss1[0] - loss2[0]) < 0.5  # ... but the run is the same run


def test_deepspeed_zero2_runs_three_steps_on_cpu_and_exports(tmp_path):
    from ssl_kit.testing import need

    need("deepspeed")
    (tmp_path / "r.toml").write_text(RECIPE)
    out = tmp_path / "ds"
    launcher = shutil.which("accelerate") or "accelerate"
    cmd = [launcher, "launch", "--use_deepspeed", "--zero_stage", "2", "--num_processes", "1",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "ssl_kit", str(tmp_path / "r.toml"), f"train.output_dir={out}",
           "train.max_steps=3", "train.export=true", "eval.enabled=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deepspeed" in proc.stdout
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    exported = load_file(str(out / "export" / "model.safetensors"))
    final = load_file(str(out / "checkpoints" / "step_3" / "model.safetensors"))
    assert all(torch.equal(exported[k], final[f"backbone.{k}"]) for k in exported)
    for path in (out / "checkpoints" / "step_3").glob("*.pt"):
        torch.load(path, weights_only=True)

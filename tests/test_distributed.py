"""2 processes = 1 process: the gathered negatives, the rank-sliced batch and SyncBN make one
optimizer step of 2 processes x B equal to 1 process x 2B (gloo on CPU)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ssl_kit.testing import compare_runs, run_contract

ROOT = Path(__file__).resolve().parent
CONTRACT_RECIPES = sorted((ROOT / "contract").glob("*.toml"))  # one per built-in method
RECIPE = (ROOT / "contract" / "simclr.toml").read_text()


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    """One launch per process count for every built-in method."""
    out = tmp_path_factory.mktemp("contract")
    run_contract(out, CONTRACT_RECIPES, processes=1)
    run_contract(out, CONTRACT_RECIPES, processes=2, also_without_syncbn=True)
    return out


@pytest.mark.parametrize("recipe", CONTRACT_RECIPES, ids=lambda p: p.stem)
def test_two_processes_with_syncbn_equal_one_process(contract, recipe):
    gap = compare_runs(contract / recipe.stem / "p1", contract / recipe.stem / "p2")
    print(f"{recipe.stem}: 2 processes vs 1, SyncBN: {gap}")
    assert gap["loss"] < 1e-5 and gap["weights"] < 1e-5, gap


@pytest.mark.parametrize("recipe", CONTRACT_RECIPES, ids=lambda p: p.stem)
def test_without_syncbn_the_gap_is_measured(contract, recipe):
    gap = compare_runs(contract / recipe.stem / "p1", contract / recipe.stem / "p2-nosync", check_replicas=False)
    print(f"{recipe.stem}: 2 processes vs 1, no SyncBN: {gap}")
    assert gap["weights"] > 1e-7  # per-process batch statistics really differ


def test_deepspeed_zero2_runs_three_steps_on_cpu_and_exports(tmp_path):
    from ssl_kit.testing import need

    need("deepspeed")
    (tmp_path / "r.toml").write_text(RECIPE)
    out = tmp_path / "ds"
    launcher = shutil.which("accelerate") or "accelerate"
    cmd = [launcher, "launch", "--use_deepspeed", "--zero_stage", "2", "--num_processes", "1",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "ssl_kit", str(tmp_path / "r.toml"), f"train.output_dir={out}",
           "train.max_steps=3", "train.export=true", "eval.enabled=false", "train.log_every=1", "train.progress=false"]
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


LAUNCHER = """
import os, subprocess, sys, time
child = subprocess.Popen(sys.argv[1:], env={**os.environ, "TORCHELASTIC_RUN_ID": "test"},
                         stderr=open(os.environ["CHILD_STDERR"], "w"), stdout=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_worker_whose_launcher_died_stops_instead_of_training_on(tmp_path):
    """torchrun / accelerate launch start workers in their own process groups: killing the launcher
    alone left them training unattended. A worker notices its launcher is gone and stops."""
    import os
    import signal
    import sys
    import time
    tiny = Path(__file__).parent / "tiny.toml"
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "ssl_kit", str(tiny), "data.num_samples=64", "train.epochs=10000",
           "train.checkpoint_every=0", "train.checkpoint_minutes=0", f"train.output_dir={run_dir}"]
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, *cmd], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "CHILD_STDERR": str(tmp_path / "worker.err")})
    worker = int(launcher.stdout.readline())
    deadline = time.time() + 300
    while not (run_dir / "log.jsonl").exists() or not (run_dir / "log.jsonl").read_text():  # it trains
        assert time.time() < deadline, (tmp_path / "worker.err").read_text()
        time.sleep(0.5)
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.time() + 120
    def alive() -> bool:
        try:
            return "zombie" not in Path(f"/proc/{worker}/status").read_text()
        except FileNotFoundError:
            return False

    while alive():
        if time.time() > deadline:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the worker kept training after its launcher died")
        time.sleep(0.5)
    err = (tmp_path / "worker.err").read_text()
    assert "the launcher of this process" in err and "is gone" in err and "Traceback" not in err, err

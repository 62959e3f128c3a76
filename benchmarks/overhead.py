"""The ssl_kit trainer against a bare PyTorch loop doing the same work: trainer overhead per step.

    python benchmarks/overhead.py                 # both sizes, 5 interleaved rounds
    python benchmarks/overhead.py --sizes large --rounds 7 --steps 60

Both sides train the same method (built by ssl_kit.build from one recipe, so the same weights),
with the same optimizer, schedule and batches: the batches come from the run's own loader (the
fake in-memory dataset, views preset "none", so data work is small and identical on both sides).
The trainer runs as users run it: the non-finite check, logging every 10 steps into log.jsonl,
the progress bar and the checkpoint timer on (checkpoint_every = 0, so no save falls inside the
timed steps). Its per-step time is the median over its log windows (the first window, with the
warm-up, is dropped); the bare loop's is the median of its step times after the same warm-up.
Runs alternate trainer / bare loop, `--rounds` times; the table gives the median of each side
and their ratio.

Sizes: "tiny" (two conv blocks of 8 and 16 channels, 16 px, batch 32: the overhead is most
visible) and "large" (the benchmark convnet [32, 64, 128] at 32 px, batch 256: at least 50 ms a
step on a CPU core).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ssl_kit import train
from ssl_kit.build import build, build_loader, build_optimizer, build_schedule, param_groups, plan
from ssl_kit.io import loads_toml
from ssl_kit.recipe import recipe_from_tree

SIZES = {
    "tiny": {"channels": [8, 16], "image_size": 16, "batch_size": 32},
    "large": {"channels": [32, 64, 128], "image_size": 32, "batch_size": 256},
}
WARMUP = 10  # steps dropped on both sides (the trainer's first log window)

RECIPE = """
[method]
name = "simclr"
temperature = 0.2
proj_hidden_dim = 128
proj_output_dim = 64

[backbone]
name = "convnet"

[data]
name = "fake"
num_classes = 10

[views]
preset = "none"

[optim]
name = "adam"
lr = 0.001
lr_scaling = "none"
schedule = "cosine"

[train]
epochs = 1
log_every = 10
progress = true
checkpoint_every = 0
export = false

[eval]
enabled = false
online_probe = false
"""


def recipe_for(size: str, steps: int, out: Path):
    s = SIZES[size]
    tree = loads_toml(RECIPE)
    tree["backbone"]["channels"] = s["channels"]
    tree["data"].update(batch_size=s["batch_size"], image_size=s["image_size"],
                        num_samples=s["batch_size"] * (steps + WARMUP))
    tree["train"]["output_dir"] = str(out)
    return recipe_from_tree(tree, "benchmarks/overhead.py", f"overhead-{size}")


def trainer_ms(size: str, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        recipe = recipe_for(size, steps, Path(tmp) / "run")
        train(recipe)
        log = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
    windows = [r for r in log if r["step"] > WARMUP]
    return statistics.median(recipe.data.batch_size / r["images_per_s"] * 1000 for r in windows)


def bare_ms(size: str, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        recipe = recipe_for(size, steps, Path(tmp) / "run")
        parts = build(recipe)
        p = plan(recipe, len(parts.dataset), 1)
        method = parts.method
        optimizer = build_optimizer(param_groups(method, recipe.optim.weight_decay, recipe.optim.exclude_bias_norm),
                                    recipe.optim, p.lr)
        scheduler = build_schedule(optimizer, recipe.optim, p)
        method.on_train_start(p.steps_per_epoch, p.max_steps)
        method.train()
        times = []
        start = time.perf_counter()
        for step, batch in enumerate(build_loader(parts, 0, 1), start=1):
            out = method(batch)
            out["loss"].backward()
            optimizer.step()
            method.after_step(step, p.max_steps)
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            now = time.perf_counter()
            times.append((now - start) * 1000)
            start = now
    return statistics.median(times[WARMUP:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--rounds", type=int, default=5, help="interleaved trainer / bare-loop pairs per size")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run (after the warm-up steps)")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        trainer, bare = [], []
        for _ in range(args.rounds):
            trainer.append(trainer_ms(size, args.steps))
            bare.append(bare_ms(size, args.steps))
        t, b = statistics.median(trainer), statistics.median(bare)
        rows.append(f"| {size} | {SIZES[size]['batch_size']} | {b:.2f} | {t:.2f} | {t / b:.3f} |")
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} thread(s), OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.rounds} rounds of {args.steps} steps\n")
    print("| size | batch | bare loop ms/step | trainer ms/step | ratio |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

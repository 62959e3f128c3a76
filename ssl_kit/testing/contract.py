"""The distributed contract: one launch trains every given recipe for a few steps.

    accelerate launch --multi_gpu --num_processes 2 -m ssl_kit.testing.contract OUT r1.toml r2.toml
    python -m ssl_kit.testing.contract OUT r1.toml r2.toml

Each recipe runs with ``train.sync_batchnorm = true`` (and once more without it when
``--also-without-syncbn`` is given) into ``OUT/<recipe>/p<processes>[-nosync]``. Compare the
results with :func:`ssl_kit.testing.compare_runs`: one launch per process count covers every
method, which keeps CI time down.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch.distributed as dist

from ssl_kit.recipe import load_recipe
from ssl_kit.run import run

STEPS = 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ssl_kit.testing.contract")
    parser.add_argument("out", type=Path)
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--also-without-syncbn", action="store_true")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override for every recipe, after the contract's own")
    args = parser.parse_args(argv)
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch and torchrun
    for path in args.recipes:
        variants = [("", "true")] + ([("-nosync", "false")] if args.also_without_syncbn else [])
        for suffix, sync in variants:
            out = args.out / Path(path).stem / f"p{processes}{suffix}"
            recipe = load_recipe(path, [
                f"train.output_dir={out}", f"train.max_steps={STEPS}", "train.log_every=1",
                "train.progress=false", "train.export=false", "eval.enabled=false",
                "train.checkpoint_every=0", f"train.sync_batchnorm={sync}", "train.resume='never'",
                *args.override,
            ])
            run(recipe)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""Training speed and peak memory per precision, on the quickstart and on a CIFAR-sized
synthetic run (ResNet-18 CIFAR stem, 32 px, SimCLR, batch 256). Prints a markdown table.

    python benchmarks/precision_speed.py [--steps 60] [--workers 8]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from ssl_kit.recipe import load_recipe
from ssl_kit import train

ROOT = Path(__file__).resolve().parents[1]
CIFAR_SIZED = """
[method]
name = "simclr"
[backbone]
name = "resnet18"
cifar_stem = true
[data]
name = "fake"
num_samples = 25600
image_size = 32
batch_size = 256
[optim]
name = "lars"
lr = 0.4
lr_scaling = "linear"
weight_decay = 1e-4
[train]
epochs = 1
[eval]
enabled = false
"""


def images_per_second(run_dir: Path, skip: int) -> float:
    """Mean throughput over the logged steps after the first ``skip`` (warm-up) steps."""
    records = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in records if r["step"] > skip]
    return sum(rates) / max(1, len(rates))


def run(recipe_path: str, precision: str, steps: int, workers: int, tmp: Path, extra=()) -> tuple[float, float, float]:
    out = tmp / f"{Path(recipe_path).stem}-{precision}"
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.time()
    results = train(load_recipe(recipe_path, [
        f"train.output_dir={out}", f"train.precision='{precision}'", f"train.max_steps={steps}",
        "train.log_every=5", "train.progress=false", "train.checkpoint_every=0", "train.export=false",
        f"data.num_workers={workers}", "data.pin_memory=true", "data.persistent_workers=true", *extra,
    ]))
    return images_per_second(out, skip=10), results.get("peak_gpu_memory_mib", float("nan")), time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--precisions", default="no,bf16,fp16")
    args = parser.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"device: {device}, torch {torch.__version__}\n")
    print("| run | precision | images/s | peak GPU memory (MiB) | wall s |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cifar_sized.toml").write_text(CIFAR_SIZED)
        runs = [(str(ROOT / "recipes" / "quickstart.toml"), "quickstart (digits, convnet)", ["eval.enabled=false"]),
                (str(Path(tmp) / "cifar_sized.toml"), "CIFAR-sized synthetic, ResNet-18", [])]
        for path, name, extra in runs:
            for precision in args.precisions.split(","):
                ips, mem, wall = run(path, precision, args.steps, args.workers, Path(tmp), extra)
                print(f"| {name} | {precision} | {ips:.0f} | {mem:.0f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()

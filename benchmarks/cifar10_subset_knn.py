"""CPU quality comparison of methods on the CIFAR-10 JPEG copy: a fixed 10k-image train subset,
the 10,000 test images, a small convnet, the same number of epochs for every method, several
seeds; prints a markdown table of k-NN accuracy (mean and standard deviation over the seeds) with
the same network at random initialisation as a row.

    python benchmarks/cifar10_subset_knn.py --archive ../shared/data/cifar10-jpg.tar.gz \\
        --methods simclr relic --seeds 0 1 2 --epochs 12

The archive is extracted into --work (default .data/, ignored by git) once; the subset is the
first --per-class files (sorted names) of each class folder, linked into a folder of its own that
the `image_folder` dataset reads. Needs the ReLIC plugin for `relic`
(pip install -e plugins/ssl-kit-relic).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tarfile
import time
from pathlib import Path

import torch

from ssl_kit.recipe import load_recipe
from ssl_kit import train

KNN = "knn_cosine_k20_t0.07_top1"

COMMON = """
[backbone]
name = "convnet"
channels = [32, 64, 128]
pool_after = [0, 1]
output_grid = 1
[data]
name = "image_folder"
root = "{root}"
batch_size = 256
num_workers = 0
mean = [0.4914, 0.4822, 0.4465]
std = [0.2470, 0.2435, 0.2616]
[optim]
name = "adam"
lr = 1e-3
weight_decay = 1e-5
lr_scaling = "none"
schedule = "constant"
[train]
progress = false
checkpoint_every = 0
log_every = 20
[eval]
evaluators = ["knn"]
online_probe = false
plots = false
"""

# Each method with its own paper's views; everything else is shared.
METHODS = {
    "simclr": """
[method]
name = "simclr"
temperature = 0.2
[views]
preset = "simclr"
global_size = 32
""",
    "relic": """
[method]
name = "relic"
[views]
preset = "relic"
normalize = false
global_size = 32
global_scale = [0.1, 1.0]
local_views = 4
local_size = 13
local_scale = [0.05, 1.0]
""",
}


def prepare(archive: Path, work: Path, per_class: int) -> Path:
    """Extract the archive once and link a fixed per-class train subset next to the test split."""
    source = work / "cifar10-jpg"
    if not (source / "train").is_dir():
        work.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
    subset = work / f"cifar10-{per_class * 10 // 1000}k"
    if not (subset / "train").is_dir():
        for folder in sorted((source / "train").iterdir()):
            target = subset / "train" / folder.name
            target.mkdir(parents=True)
            for image in sorted(folder.iterdir())[:per_class]:
                (target / image.name).symlink_to(image.resolve())
        (subset / "test").symlink_to((source / "test").resolve())
    return subset


def run(method: str, seed: int, epochs: int, root: Path, out: Path) -> dict:
    recipe_file = out / f"{method}.toml"
    recipe_file.parent.mkdir(parents=True, exist_ok=True)
    recipe_file.write_text(METHODS[method] + COMMON.format(root=root))
    overrides = [f"train.seed={seed}", f"train.epochs={epochs}", f"train.output_dir={out / f'{method}-{seed}'}",
                 "eval.baselines=['random_init']", "train.resume=never"]
    started = time.time()
    results = train(load_recipe(str(recipe_file), overrides))
    return {"trained": results["results"]["trained"][KNN], "random_init": results["results"]["random_init"][KNN],
            "train_seconds": results["train_seconds"], "wall": time.time() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=Path("../shared/data/cifar10-jpg.tar.gz"))
    parser.add_argument("--work", type=Path, default=Path(".data"))
    parser.add_argument("--per-class", type=int, default=1000, help="train images per class (10 classes)")
    parser.add_argument("--methods", nargs="+", default=["simclr", "relic"], choices=sorted(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-cifar10-subset"))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (run one process per core)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    root = prepare(args.archive, args.work, args.per_class)
    rows: dict[str, list[dict]] = {}
    for method in args.methods:
        for seed in args.seeds:
            rows.setdefault(method, []).append(run(method, seed, args.epochs, root, args.out))
            print(json.dumps({"method": method, "seed": seed, **rows[method][-1]}), flush=True)

    def cell(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.2f} ± {spread:.2f}"

    print(f"\n{args.per_class * 10} train images (CIFAR-10 JPEG copy), 10,000 test images, convnet [32, 64, 128], "
          f"{args.epochs} epochs, seeds {args.seeds}; k-NN cosine k=20 T=0.07 (solo-learn), mean ± std\n")
    # random init per method: its heads draw from the seed too, and its views may skip normalisation
    print("| method | random init k-NN top-1 | trained k-NN top-1 | train time per run |")
    print("|---|---|---|---|")
    for method, runs in rows.items():
        seconds = statistics.mean(r["train_seconds"] for r in runs)
        print(f"| {method} | {cell([r['random_init'] for r in runs])} | {cell([r['trained'] for r in runs])} "
              f"| {seconds:.0f} s |")


if __name__ == "__main__":
    main()

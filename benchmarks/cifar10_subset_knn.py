"""CPU quality comparison of methods on the CIFAR-10 JPEG copy: a fixed 10k-image train subset,
the test images (all 10,000, or a per-class subset), a small convnet, the same number of epochs
for every method, several seeds; prints a markdown table of k-NN accuracy (mean and standard
deviation over the seeds) with the same network at random initialisation as a row.

    python benchmarks/cifar10_subset_knn.py --archive ../shared/data/cifar10-jpg.tar.gz \\
        --methods simclr relic --seeds 0 1 2 --epochs 12 --compare relic:simclr

A method row is a file benchmarks/methods/<row>.toml: the recipe tables in which it differs from
the shared settings below (usually [method] and [views]; also [backbone], [optim] or [eval] keys),
deep-merged over them. Plugins' rows need their plugin installed (pip install -e plugins/<name>).
`--compare a:b` prints the difference of the means with its standard error; a difference counts
only beyond twice that error. `--set key=value ...` overrides recipe keys of every row (after its
file), e.g. `--set backbone.output_grid=1` for the global pooling of the sections measured before
2026-12-07, or one ablation step: `--methods simclr --epochs 5 --set views.preset=mocov2`.

The archive is extracted into --work (default .data/, ignored by git) once; the subset is the
first --per-class files (sorted names) of each class folder, linked into a folder of its own that
the `image_folder` dataset reads.

`--plot PATH` also writes a PNG: k-NN top-1 against epochs (left) and against training wall
time (right), one line per row, mean ± standard deviation over the seeds, from the random
initialisation (epoch 0, time 0) to the end of the run. The trainer evaluates only at the end of
a run, so with --plot every run saves a checkpoint at the end of each epoch and, after training,
each one is restored and scored with the same k-NN protocol (the end of the last epoch is the
run's own evaluation). That costs one more feature extraction of the train and test images per
epoch and run (what the run's own k-NN evaluation costs), outside the measured train time; the
checkpoints do not change what is trained. A curve says more than
the final numbers alone: whether a row is still improving when the budget ends, and, on the
time axis, what its accuracy costs next to another row's. Epoch e sits at e / epochs of the
row's mean train time (every epoch does the same work).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import math
import json
import statistics
import tarfile
import time
from pathlib import Path

import torch

from ssl_kit.build import build_dataset, plan, restore
from ssl_kit.evaluation import evaluate_run
from ssl_kit.io import dumps_toml, loads_toml
from ssl_kit.recipe import load_recipe
from ssl_kit import train

KNN = "knn_cosine_k20_t0.07_top1"
ROWS = Path(__file__).parent / "methods"

COMMON = """
[backbone]
name = "convnet"
channels = [32, 64, 128]
pool_after = [0, 1]
output_grid = 2   # the last 8 x 8 map pooled to 2 x 2 (512 features); 1 (global pooling) until 2026-12-07
[data]
name = "image_folder"
root = ""
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


def merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, tables merged key by key (a component's new name keeps nothing of
    the old one's table: a changed ``name`` replaces the whole table)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and value.get("name", base[key].get("name")) == base[key].get("name"):
            out[key] = merge(base[key], value)
        else:
            out[key] = value
    return out


def rows() -> list[str]:
    return sorted(p.stem for p in ROWS.glob("*.toml"))


def prepare(archive: Path, work: Path, per_class: int, test_per_class: int | None) -> Path:
    """Extract the archive once and link fixed per-class subsets (the first file names of each
    class folder) of the train split and, with ``test_per_class``, of the test split."""
    source = work / "cifar10-jpg"
    if not (source / "train").is_dir():
        work.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
    subset = work / (f"cifar10-{per_class}-per-class" + (f"-test-{test_per_class}" if test_per_class else ""))
    if not (subset / "train").is_dir():
        for split, count in (("train", per_class), ("test", test_per_class)):
            if count is None:
                (subset / split).symlink_to((source / split).resolve())
                continue
            for folder in sorted((source / split).iterdir()):
                target = subset / split / folder.name
                target.mkdir(parents=True)
                for image in sorted(folder.iterdir())[:count]:
                    (target / image.name).symlink_to(image.resolve())
    return subset


def run(method: str, seed: int, epochs: int, root: Path, out: Path, curve: bool = False,
        settings: tuple[str, ...] = (), tag: str = "") -> dict:
    """Train row ``method`` (with the ``settings`` overrides over it) for one seed; return its
    k-NN scores. ``tag`` names the run's folder (settings that differ need folders that differ)."""
    name = f"{method}{'-' + tag if tag else ''}"
    recipe_file = out / f"{name}.toml"
    recipe_file.parent.mkdir(parents=True, exist_ok=True)
    tree = merge(loads_toml(COMMON), loads_toml((ROWS / f"{method}.toml").read_text()))
    tree["data"]["root"] = str(root)
    recipe_file.write_text(dumps_toml(tree))
    run_dir = out / f"{name}-{seed}"
    overrides = [*settings, f"train.seed={seed}", f"train.epochs={epochs}", f"train.output_dir={run_dir}",
                 "eval.baselines=['random_init']", "train.resume=never"]
    if curve:  # a checkpoint at the end of every epoch, scored after training (epoch_knn)
        recipe = load_recipe(str(recipe_file), overrides)
        per_epoch = plan(recipe, len(build_dataset(recipe, recipe.data.train_split)), 1).steps_per_epoch
        overrides += [f"train.checkpoint_every={per_epoch}", f"train.keep_checkpoints={epochs}"]
    started = time.time()
    results = train(load_recipe(str(recipe_file), overrides))
    trained = results["results"]["trained"]
    others = {k: v for k, v in trained.items() if k != KNN and k.endswith(("_top1", "_score"))}
    for source, table in results["results"].items():  # rows of [eval] extra_features, e.g. trained:backbone
        if source.startswith("trained:") and KNN in table:
            others[f"k-NN on {source.removeprefix('trained:')}"] = table[KNN]
    row = {"trained": trained[KNN], "random_init": results["results"]["random_init"][KNN], "others": others,
           "train_seconds": results["train_seconds"], "wall": time.time() - started}
    if curve:
        middle = epoch_knn(tree, overrides, run_dir, per_epoch, epochs)
        row["curve"] = [row["random_init"], *middle, row["trained"]]
    return row


def epoch_knn(tree: dict, overrides: list[str], run_dir: Path, per_epoch: int, epochs: int) -> list[float]:
    """k-NN top-1 of the checkpoints at the end of epochs 1 .. epochs - 1, with the run's own
    k-NN settings and features (only the k-NN evaluator, no baseline rows)."""
    tree = json.loads(json.dumps(tree))
    settings = tree.get("eval", {})
    tree["eval"] = {**{k: v for k, v in settings.items() if not isinstance(v, dict) or k == "knn"},
                    "evaluators": ["knn"], "baselines": [], "extra_features": [], "plots": False}
    eval_file = run_dir / "epoch-knn.toml"
    eval_file.write_text(dumps_toml(tree))
    recipe = load_recipe(str(eval_file), [o for o in overrides if not o.startswith("eval.")])
    info = build_dataset(recipe, recipe.data.train_split).info
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scores = []
    for epoch in range(1, epochs):
        method, _ = restore(recipe, run_dir / "checkpoints" / f"step_{epoch * per_epoch}", info)
        with contextlib.redirect_stdout(io.StringIO()):  # evaluate_run prints its table
            results = evaluate_run(recipe, method.to(device), method.views, run_dir / f"eval-epoch-{epoch}", device)
        scores.append(results["results"]["trained"][KNN])
    return scores


def plot(table: dict[str, list[dict]], epochs: int, path: Path, title: str) -> None:
    """k-NN top-1 against epochs and against training wall time, mean ± std over the seeds."""
    import matplotlib  # only --plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for i, (method, runs) in enumerate(table.items()):
        points = list(zip(*(r["curve"] for r in runs)))  # per epoch: one score per seed
        mean = [statistics.mean(p) for p in points]
        spread = [statistics.stdev(p) if len(p) > 1 else 0.0 for p in points]
        seconds = statistics.mean(r["train_seconds"] for r in runs)
        dodge = 0.04 * (i - (len(table) - 1) / 2)  # rows side by side, their error bars apart
        for axis, x in ((by_epoch, [e + dodge for e in range(epochs + 1)]),
                        (by_time, [seconds * e / epochs for e in range(epochs + 1)])):
            axis.errorbar(x, mean, yerr=spread, marker="o", markersize=4, capsize=3, label=method)
    by_epoch.set_xlabel("epoch (0: random initialisation)")
    by_epoch.set_ylabel("k-NN top-1 (%)")
    by_epoch.xaxis.get_major_locator().set_params(integer=True)
    by_time.set_xlabel("training wall time (s, mean over seeds)")
    by_epoch.legend(fontsize="small")
    for axis in (by_epoch, by_time):
        axis.grid(alpha=0.3)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=Path("../shared/data/cifar10-jpg.tar.gz"))
    parser.add_argument("--work", type=Path, default=Path(".data"))
    parser.add_argument("--per-class", type=int, default=1000, help="train images per class (10 classes)")
    parser.add_argument("--test-per-class", type=int, default=None, help="test images per class (default: all 1,000)")
    parser.add_argument("--methods", nargs="+", default=["simclr", "relic"], choices=rows(),
                        help="rows: the files of benchmarks/methods/")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-cifar10-subset"))
    parser.add_argument("--compare", nargs="*", default=[], metavar="A:B", help="rows whose k-NN difference to print")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="settings",
                        help="recipe overrides applied to every row (after its file), e.g. optim.lr=2e-3")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (run one process per core)")
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH",
                        help="write a PNG of k-NN against epochs and train time (scores every epoch's checkpoint)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    root = prepare(args.archive, args.work, args.per_class, args.test_per_class)
    tag = hashlib.sha1(" ".join(args.settings).encode()).hexdigest()[:10] if args.settings else ""
    table: dict[str, list[dict]] = {}
    for method in args.methods:
        for seed in args.seeds:
            table.setdefault(method, []).append(run(method, seed, args.epochs, root, args.out, curve=args.plot is not None,
                                                          settings=tuple(args.settings), tag=tag))
            print(json.dumps({"method": method, "seed": seed, **table[method][-1]}), flush=True)

    def cell(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.2f} ± {spread:.2f}"

    tests = f"{args.test_per_class * 10:,}" if args.test_per_class else "10,000"
    if args.plot is not None:
        plot(table, args.epochs, args.plot, f"CIFAR-10 JPEG copy: {args.per_class * 10:,} train / {tests} test images, "
             f"seeds {args.seeds}; k-NN cosine k=20 T=0.07, mean ± std")
        print(f"plot written to {args.plot}")
    print(f"\n{args.per_class * 10} train images (CIFAR-10 JPEG copy), {tests} test images, convnet [32, 64, 128] with a 2 x 2 output grid unless a row or --set says otherwise, "
          f"{args.epochs} epochs, seeds {args.seeds}; k-NN cosine k=20 T=0.07 (solo-learn), mean ± std"
          + (f"; every row with {' '.join(args.settings)}" if args.settings else "") + "\n")
    # random init per method: its heads draw from the seed too, and its views may skip normalisation
    print("| method | random init k-NN top-1 | trained k-NN top-1 | other metrics (trained) | train time per run |")
    print("|---|---|---|---|---|")
    for method, runs in table.items():
        seconds = statistics.mean(r["train_seconds"] for r in runs)
        others = ", ".join(f"{k} {cell([r['others'][k] for r in runs])}" for k in sorted(runs[0]["others"]))
        print(f"| {method} | {cell([r['random_init'] for r in runs])} | {cell([r['trained'] for r in runs])} "
              f"| {others or '-'} | {seconds:.0f} s |")
    for pair in args.compare:
        a, _, b = pair.partition(":")
        if a not in table or b not in table:
            raise SystemExit(f"--compare {pair}: both rows must be among --methods")
        x, y = [r["trained"] for r in table[a]], [r["trained"] for r in table[b]]
        diff = statistics.mean(x) - statistics.mean(y)
        se = math.sqrt(statistics.variance(x) / len(x) + statistics.variance(y) / len(y)) if min(len(x), len(y)) > 1 else float("nan")
        verdict = "counts (beyond 2 standard errors)" if abs(diff) > 2 * se else "within 2 standard errors: no difference shown"
        print(f"\n{a} - {b}: {diff:+.2f} k-NN points, standard error {se:.2f}; {verdict}")


if __name__ == "__main__":
    main()

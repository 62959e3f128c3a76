"""Training throughput of every method on one GPU, next to a bare PyTorch loop and the backbone's
own forward + backward as the ceiling. Prints a markdown table.

    python benchmarks/train_gpu.py                        # all methods, batch 256, bf16, channels_last
    python benchmarks/train_gpu.py --compile              # also the torch.compile ceiling rows
    python benchmarks/train_gpu.py --methods simclr relic care --repeats 5
    OMP_NUM_THREADS=1 python benchmarks/train_gpu.py --device cpu --batch 8 --steps 2 \\
        --methods simclr byol                             # CPU smoke test: checks the script runs

What runs. Every row trains ResNet-18 with the CIFAR stem (3x3 conv1, stride 1, padding 2 as in
solo-learn, no max-pool) on CIFAR-10-sized (32 px) images, under bf16 autocast (``--precision``,
whatever the recipe's ``train.precision``) with the model and the images in channels_last, as the
trainer does with ``train.precision = "bf16"`` and ``train.channels_last = true``:

- ceiling: the backbone alone, forward + backward of a batch of 2 x ``--batch`` images at 32 px
  and at 13 px (ReLIC's local views), no head, loss or optimizer; with ``--compile`` also under
  ``torch.compile``. Its images/s counts single views.
- reference: a bare loop doing SimCLR's work: the same backbone, an MLP head (512-2048-256), a
  plain NT-Xent (T 0.2, in float32) written here, the SimCLR row's batches and optimizer (the
  simclr-cifar10 recipe's LARS, built by ssl_kit.build.build_optimizer, biases and norms without
  weight decay).
- one row per method, built from its CIFAR recipe (METHODS below) through ssl_kit's build path
  (ssl_kit.build.build on a child recipe that ``extends`` it), so its heads, loss, views and
  optimizer are the recipe's. Two tables are replaced: ``[backbone]`` (the ResNet-18 above for
  every row: ReLIC's recipe has stem padding 1, CARE's a ResNet-50, QARe/SparseCLR's Conv4) and
  ``[data]`` (ssl_kit's ``fake`` dataset, ``--batch`` images per batch). One step is what the
  trainer's step does for the method: forward under autocast, backward, optimizer step,
  ``after_step`` (EMA, queues), zero_grad, the lr schedule; not the trainer's bookkeeping (its
  non-finite check, logging, online probe: benchmarks/overhead.py measures those).

Inputs: ``--batches`` batches are made before timing by the batched view path
(ssl_kit.data.batched, ``data.batched_views = "on"``) from the fake dataset's uint8 images, on the
device, with each method's own views (ReLIC's 4 local 13 px views, CARE's group views), then
cycled: view-making is not timed, the point is model throughput. Timing: ``--warmup`` steps, then
``--repeats`` times ``--steps`` steps between two torch.cuda.synchronize; the table gives the
median. images/s counts source images (an image = all its views), as the trainer's log does.
Peak memory is torch.cuda.max_memory_allocated over the row (warm-up included).

The ratio divides a row's images/s by the ceiling for its views: 1 / (sum over its views of
1 / ceiling images/s at the view's size), from the eager ceiling rows. A method that only passes
its views through the backbone once, with cheap heads and loss, gets close to 1; a method with a
momentum / EMA target encoder runs one more forward per view (about a third of a forward +
backward), so expect about 0.75 at best for MoCo, BYOL, ReLIC.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ssl_kit.build import build, build_loader, build_optimizer, build_schedule, param_groups, plan
from ssl_kit.errors import UserError
from ssl_kit.io import dumps_toml
from ssl_kit.plugins import get_registry
from ssl_kit.recipe import find_recipe, load_recipe

# method -> its CIFAR recipe (a registered name); plugins that are not installed are skipped
METHODS = {
    "simclr": "simclr-cifar10", "mocov2plus": "mocov2plus-cifar10", "byol": "byol-cifar10",
    "simsiam": "simsiam-cifar10", "relic": "relic",
    "geometric_simclr": "geometric-simclr-cifar10", "geometric_mocov2plus": "geometric-mocov2plus-cifar10",
    "geometric_byol": "geometric-byol-cifar10", "geometric_simsiam": "geometric-simsiam-cifar10",
    "care": "care-cifar10", "simclr_qare": "qare-cifar10", "sparseclr": "sparseclr-cifar10",
    "sparseclr_qare": "sparseclr-qare-cifar10", "decoupled_uniformity": "decoupled-uniformity-cifar10",
}
BACKBONE = {"name": "resnet18", "cifar_stem": True, "stem_padding": 2}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(step: Callable[[int], None], device: torch.device, args: argparse.Namespace) -> float:
    """Median over ``args.repeats`` of the mean seconds per step of ``args.steps`` steps, after
    ``args.warmup`` untimed steps."""
    for i in range(args.warmup):
        step(i)
    times, i = [], args.warmup
    for _ in range(args.repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step(i)
            i += 1
        sync(device)
        times.append((time.perf_counter() - start) / args.steps)
    return statistics.median(times)


def peak_mib(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}" if device.type == "cuda" else "-"


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def channels_last(batch: dict[str, Any]) -> dict[str, Any]:
    """The trainer's channels_last conversion: every image tensor of the view lists."""
    fmt = torch.channels_last
    return {k: [t.contiguous(memory_format=fmt) for t in v] if isinstance(v, list) else v for k, v in batch.items()}


def build_row(recipe_name: str, args: argparse.Namespace, tmp: Path):
    """Components of ``recipe_name`` with the benchmark's backbone and fake data, and
    ``args.batches`` batches of its views on the device."""
    child = {
        "extends": recipe_name,
        "backbone": BACKBONE,
        "data": {"name": "fake", "num_samples": args.batch * args.batches, "image_size": 32, "num_classes": 10,
                 "batch_size": args.batch, "num_workers": 0, "batched_views": "on"},
        "eval": {"online_probe": False},
        "train": {"output_dir": str(tmp / "unused")},
    }
    path = tmp / f"bench-{recipe_name}.toml"
    path.write_text(dumps_toml(child))
    recipe = load_recipe(str(path))
    parts = build(recipe)
    loader = build_loader(parts, rank=0, world_size=1, device=args.device)
    batches = [channels_last(b) for b in itertools.islice(iter(loader), args.batches)]
    return recipe, parts, batches


def time_method(recipe_name: str, args: argparse.Namespace, tmp: Path) -> tuple[float, str, Any]:
    """images/s and peak memory of one method's training step; also its final views."""
    device = args.device
    reset_memory(device)
    recipe, parts, batches = build_row(recipe_name, args, tmp)
    p = plan(recipe, len(parts.dataset), 1)
    method = parts.method.to(device).to(memory_format=torch.channels_last).train()
    o = recipe.optim
    optimizer = build_optimizer(param_groups(method, o.weight_decay, o.exclude_bias_norm), o, p.lr)
    scheduler = build_schedule(optimizer, o, p)
    method.on_train_start(p.steps_per_epoch, p.max_steps)

    def step(i: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            out = method(batches[i % len(batches)])
        out["loss"].backward()
        optimizer.step()
        method.after_step(i + 1, p.max_steps)
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

    seconds = seconds_per_step(step, device, args)
    return args.batch / seconds, peak_mib(device), method.views


def time_reference(args: argparse.Namespace, tmp: Path) -> tuple[float, str]:
    """A bare loop: the SimCLR row's backbone and batches, an MLP head, NT-Xent written here."""
    device = args.device
    reset_memory(device)
    recipe, parts, batches = build_row(METHODS["simclr"], args, tmp)
    backbone = parts.method.backbone  # a fresh ResNet-18 from the backbone registry
    head = nn.Sequential(nn.Linear(backbone.num_features, 2048), nn.ReLU(inplace=True), nn.Linear(2048, 256))
    model = nn.Sequential(backbone, head).to(device).to(memory_format=torch.channels_last).train()
    decay = [q for q in model.parameters() if q.ndim > 1]
    no_decay = [q for q in model.parameters() if q.ndim <= 1]
    p = plan(recipe, len(parts.dataset), 1)
    optimizer = build_optimizer([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], recipe.optim, p.lr)

    def step(i: int) -> None:
        views = batches[i % len(batches)]["global"]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            z = model(torch.cat(views))
        z = F.normalize(z.float(), dim=1)
        logits = z @ z.T / 0.2
        logits.fill_diagonal_(float("-inf"))
        n = len(views[0])
        target = (torch.arange(2 * n, device=device) + n) % (2 * n)  # each row's other view
        F.cross_entropy(logits, target).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return args.batch / seconds_per_step(step, device, args), peak_mib(device)


def time_ceiling(size: int, compiled: bool, args: argparse.Namespace) -> tuple[float, str]:
    """Single views per second through the backbone alone, forward + backward."""
    device = args.device
    reset_memory(device)
    comp = get_registry().get("backbones", BACKBONE["name"])  # the factory build() calls
    cfg = comp.config(**{k: v for k, v in BACKBONE.items() if k != "name"})
    backbone = comp.factory(cfg).to(device).to(memory_format=torch.channels_last).train()
    run = torch.compile(backbone) if compiled else backbone
    n = 2 * args.batch
    x = torch.randn(n, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)

    def step(i: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            y = run(x)
        y.float().mean().backward()
        backbone.zero_grad(set_to_none=True)

    return n / seconds_per_step(step, device, args), peak_mib(device)


def rate_text(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}"  # tiny CPU runs keep 3 digits


def describe(views) -> tuple[str, list[int]]:
    """'2 x 32 + 4 x 13' and the size of every view of one image."""
    size, local = views.sizes(32)
    kinds = [(views.global_views, size, ""), (views.local_views, local, ""), (views.group_views, size, " group")]
    text = " + ".join(f"{count} x {s}{tag}" for count, s, tag in kinds if count)
    return text, [s for count, s, _ in kinds for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--batch", type=int, default=256, help="images per step (each with all its views)")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches made before timing, cycled")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (cudnn autotuning, compile)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    parser.add_argument("--precision", choices=["bf16", "no"], default="bf16", help="autocast dtype")
    parser.add_argument("--compile", action="store_true", help="also time the ceiling under torch.compile")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    args.device = torch.device(args.device)
    if args.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer sets it on a GPU
    name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}, torch {torch.__version__}, batch {args.batch}, precision {args.precision}, "
          f"channels_last, {args.warmup} warm-up + {args.repeats} x {args.steps} timed steps (median)\n")

    ceiling: dict[int, float] = {}
    rows = []
    for compiled in (False, True) if args.compile else (False,):
        for size in (32, 13):
            rate, mem = time_ceiling(size, compiled, args)
            if not compiled:
                ceiling[size] = rate
            label = f"ceiling: ResNet-18 fwd+bwd, {size} px{', torch.compile' if compiled else ''}"
            rows.append(f"| {label} | - | 1 x {size} | {rate_text(rate)} (views/s) | {mem} | - |")
            print(rows[-1], file=sys.stderr, flush=True)  # progress; the table comes at the end

    def ratio(rate: float, sizes: list[int]) -> str:
        return f"{rate * sum(1 / ceiling[s] for s in sizes):.2f}"

    with tempfile.TemporaryDirectory() as tmp:
        rate, mem = time_reference(args, Path(tmp))
        rows.append(f"| reference: bare loop, MLP head + NT-Xent | simclr-cifar10 (optimizer) | 2 x 32 | {rate_text(rate)} "
                    f"| {mem} | {ratio(rate, [32, 32])} |")
        print(rows[-1], file=sys.stderr, flush=True)
        for method in args.methods:
            recipe = METHODS[method]
            try:
                find_recipe(recipe)
            except UserError:
                rows.append(f"| {method} | {recipe}: not registered (plugin not installed), skipped | | | | |")
                continue
            try:
                rate, mem, views = time_method(recipe, args, Path(tmp))
            except Exception as error:  # one row failing (e.g. CARE's groups at a small batch) keeps the others
                traceback.print_exc()
                rows.append(f"| {method} | {recipe}: failed: {str(error).splitlines()[0]} | | | | |")
                continue
            text, sizes = describe(views)
            rows.append(f"| {method} | {recipe} | {text} | {rate_text(rate)} | {mem} | {ratio(rate, sizes)} |")
            print(rows[-1], file=sys.stderr, flush=True)

    print("| row | recipe | views per image (px) | images/s | peak memory (MiB) | ratio to ceiling |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

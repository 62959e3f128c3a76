"""Views per second: the batched path (ssl_kit.data.batched) against per-sample pipelines.

    python benchmarks/views.py                            # 1 thread and the default, CPU
    python benchmarks/views.py --threads 1 --rounds 7 --device cuda

Three ways to make the same views of CIFAR-sized images (3 x 32 x 32 uint8, random pixels: the
cost of the ops does not depend on the content):

- ``batched``: :class:`ssl_kit.data.batched.BatchedViews` on a batch of ``--batch`` images on
  ``--device`` (what training uses when ``[data] batched_views`` allows), synchronised per batch;
- ``per-sample v2``: ssl_kit's per-sample path (the preset's torchvision v2 ops on float tensors,
  one image at a time, seeded per view as :class:`ssl_kit.data.views.MultiViewDataset` does);
- ``per-sample v1 PIL``: the same operations with torchvision v1 transforms on PIL images (what
  solo-learn and lightly users run).

Workloads: SimCLR (2 global views at 32 px, the ``simclr`` preset) and ReLIC (2 x 32 px +
4 x 13 px local views, the ``relic`` preset). Runs alternate between the pipelines ``--rounds``
times; the table gives the median images/s (an image = all its views) and the ratio of the
batched path to each per-sample one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from PIL import Image
from torchvision import transforms as v1

from ssl_kit.data.batched import BatchedViews
from ssl_kit.data.presets import build_transform, preset_relic, preset_simclr
from ssl_kit.data.views import mix_seed
from ssl_kit.spec import ViewContext, ViewSpec

WORKLOADS = {
    "simclr": (ViewSpec(global_views=2, preset="simclr"), preset_simclr),
    "relic": (ViewSpec(global_views=2, local_views=4, local_size=13, global_scale=(0.1, 1.0), local_scale=(0.05, 1.0),
                       preset="relic"), preset_relic),
}


def v1_pipeline(name: str, size: int, scale: tuple[float, float], kind: str) -> v1.Compose:
    """The preset's operations as torchvision v1 transforms on PIL images."""
    blur = max(3, int(0.1 * size) // 2 * 2 + 1)
    ops = [v1.RandomResizedCrop(size, scale=scale, interpolation=v1.InterpolationMode.BICUBIC),
           v1.RandomHorizontalFlip(),
           v1.RandomApply([v1.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8), v1.RandomGrayscale(p=0.2),
           v1.RandomApply([v1.GaussianBlur(blur, sigma=(0.1, 2.0))], p=0.5 if name == "simclr" else 1.0)]
    if name == "relic" and kind == "global":
        ops.append(v1.RandomSolarize(127, p=0.2))
    return v1.Compose([*ops, v1.ToTensor()])


def views_of(spec: ViewSpec) -> list[tuple[str, int, int, tuple[float, float]]]:
    size, local = spec.sizes(32)
    return [("global", v, size, spec.global_scale) for v in range(spec.global_views)] + \
           [("local", v, local, spec.local_scale) for v in range(spec.local_views)]


def bench(name: str, images: torch.Tensor, device: torch.device, rounds: int, per_sample: int) -> dict[str, float]:
    spec, preset = WORKLOADS[name]
    batched = BatchedViews(spec, preset, 3, 32, 32, None, None, seed=0)
    v2_views = [build_transform(preset(ViewContext(kind, v, s, sc, 3)), None, None) for kind, v, s, sc in views_of(spec)]
    v1_views = [v1_pipeline(name, s, sc, kind) for kind, v, s, sc in views_of(spec)]
    pil = [Image.fromarray(images[i].permute(1, 2, 0).numpy()) for i in range(per_sample)]
    on_device = images.to(device)
    index = torch.arange(len(images), device=device)
    generator = torch.default_generator

    def run_batched() -> float:
        start = time.perf_counter()
        batched(on_device, index, epoch=0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return len(images) / (time.perf_counter() - start)

    def run_v2() -> float:
        start = time.perf_counter()
        for i in range(per_sample):
            for v, transform in enumerate(v2_views):
                generator.manual_seed(mix_seed(0, 0, i, v))
                transform(images[i])
        return per_sample / (time.perf_counter() - start)

    def run_v1() -> float:
        start = time.perf_counter()
        for image in pil:
            for transform in v1_views:
                transform(image)
        return per_sample / (time.perf_counter() - start)

    run_batched()  # warm-up (allocations, kernels)
    rates: dict[str, list[float]] = {"batched": [], "per-sample v2": [], "per-sample v1 PIL": []}
    for _ in range(rounds):
        rates["batched"].append(run_batched())
        rates["per-sample v2"].append(run_v2())
        rates["per-sample v1 PIL"].append(run_v1())
    return {k: statistics.median(v) for k, v in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()],
                        help="torch thread counts to measure (default: 1 and the default count)")
    parser.add_argument("--batch", type=int, default=256, help="images per batch of the batched path")
    parser.add_argument("--per-sample", type=int, default=256, help="images per timed per-sample pass")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median reported)")
    parser.add_argument("--device", default="cpu", help="device of the batched path (cpu, cuda)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    args = parser.parse_args()
    images = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    device = torch.device(args.device)
    print(f"views/s of 32 px CIFAR-sized images (an image = all its views), batch {args.batch}, "
          f"batched path on {device}, median of {args.rounds} interleaved rounds\n")
    print("| workload | threads | batched img/s | per-sample v2 img/s | per-sample v1 PIL img/s | batched / v2 | batched / v1 PIL |")
    print("|---|---|---|---|---|---|---|")
    for threads in dict.fromkeys(args.threads):
        torch.set_num_threads(threads)
        for name in args.workloads:
            r = bench(name, images, device, args.rounds, args.per_sample)
            b, t2, t1 = r["batched"], r["per-sample v2"], r["per-sample v1 PIL"]
            print(f"| {name} | {threads} | {b:.0f} | {t2:.0f} | {t1:.0f} | {b / t2:.1f}x | {b / t1:.1f}x |", flush=True)


if __name__ == "__main__":
    main()

"""Views per second: ssl_kit's batched ops (ssl_kit.data.batched) against kornia.augmentation.

kornia is no dependency of ssl_kit: run this from the benchmark-only environment, where it is
installed beside an editable ssl_kit (``.venv-bench`` is git-ignored)::

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.14.1 torchvision==0.29.1 kornia && .venv-bench/bin/pip install -e .
    OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/views_kornia.py --threads 1
    OMP_NUM_THREADS=2 .venv-bench/bin/python benchmarks/views_kornia.py --threads 2

Pipelines, each making every view of the workload for one uint8 batch (3 x 32 x 32, random pixels)
on the CPU, an image = all its views:

- ``ssl_kit``: :class:`ssl_kit.data.batched.BatchedViews`, as ``benchmarks/views.py`` and training
  use it (parameters from the counter-based generator);
- ``kornia eager``: the same preset list translated op for op into ``kornia.augmentation`` modules
  (:func:`kornia_view`), one ``AugmentationSequential`` per view, kornia drawing its own parameters;
- ``kornia compiled`` and ``ssl_kit compiled``: the two under ``torch.compile`` (default inductor
  backend; ssl_kit's counter hash kept out of the graph with ``torch.compiler.disable``, as inductor
  fails to build a kernel with it inside on torch 2.14.1); the first call (compilation) is timed
  apart, the next four (recompilations) are not timed, neither is in the rates;
- ``kornia, ssl_kit params``: the kornia modules applied with ``params=`` built from ssl_kit's
  counter-based draws (:func:`kornia_params_views`): what it takes to keep ssl_kit's determinism
  (resume, 2 processes = 1) with kornia doing the pixels.

Workloads: SimCLR (2 global 32 px views, the ``simclr`` preset, normalised with CIFAR-10's mean and
std as training does) and ReLIC (2 x 32 px + 4 x 13 px, the ``relic`` preset, unnormalised). The
pipelines alternate (their order rotating) ``--rounds`` times, round ``r`` at epoch ``r``; the table
gives median images/s.

Unless ``--no-check``, it also prints, for fixed parameters, the largest difference of each
kornia op and each ssl_kit op from torchvision's functional op, and whether the views of
``kornia, ssl_kit params`` depend on the batch they are made in.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable

import kornia
import kornia.augmentation as K
import torch
import torchvision
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ssl_kit.data import batched_ops as ops
from ssl_kit.data.batched import STREAM, BatchedViews
from ssl_kit.data.presets import ClampUnit, preset_relic, preset_simclr
from ssl_kit.data.views import mix_seed
from ssl_kit.spec import ViewContext, ViewSpec

_UNIFORM = ops.uniform
CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
WORKLOADS = {
    "simclr": (ViewSpec(global_views=2, preset="simclr"), preset_simclr, CIFAR10),
    "relic": (ViewSpec(global_views=2, local_views=4, local_size=13, global_scale=(0.1, 1.0), local_scale=(0.05, 1.0),
                       preset="relic"), preset_relic, (None, None)),
}


class Clamp(nn.Module):
    """ssl_kit's ClampUnit for kornia's containers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 1.0)


def kornia_op(op: nn.Module, p: float = 1.0) -> nn.Module:
    """The kornia module doing what torchvision op ``op`` does (applied with probability ``p``);
    it keeps the torchvision op as ``tv`` and the probability as ``tv_p`` (ranges for ssl_kit's draws)."""
    if isinstance(op, v2.RandomApply):
        (inner,) = op.transforms
        return kornia_op(inner, p * op.p)
    p_own = p * getattr(op, "p", 1.0)
    mod: nn.Module
    if isinstance(op, v2.RandomResizedCrop):
        mode = str(getattr(op.interpolation, "value", op.interpolation))
        # slice mode with align_corners=False: torchvision's half-pixel grid (kornia has no antialias here)
        mod = K.RandomResizedCrop(tuple(op.size), scale=tuple(op.scale), ratio=tuple(op.ratio), resample=mode,
                                  align_corners=False, p=p)
    elif isinstance(op, ClampUnit):
        mod = Clamp()
    elif isinstance(op, v2.RandomHorizontalFlip):
        mod = K.RandomHorizontalFlip(p=p_own)
    elif isinstance(op, v2.ColorJitter):
        bounds = (op.brightness, op.contrast, op.saturation, op.hue)
        mod = K.ColorJitter(*(b if b is not None else 0.0 for b in bounds), p=p)
    elif isinstance(op, v2.RandomGrayscale):
        mod = K.RandomGrayscale(p=p_own)
    elif isinstance(op, v2.GaussianBlur):
        mod = K.RandomGaussianBlur(tuple(op.kernel_size), tuple(op.sigma), border_type="reflect", p=p)
    elif isinstance(op, v2.RandomSolarize):
        t = float(op.threshold)
        mod = K.RandomSolarize(thresholds=(t, t), additions=(0.0, 0.0), p=p_own)
    else:
        raise ValueError(f"no kornia translation for {type(op).__name__}")
    mod.tv, mod.tv_p = op, p_own
    return mod


def views_of(spec: ViewSpec) -> list[tuple[str, int, int, tuple[float, float], int]]:
    """(kind, view, size, scale, view id of ssl_kit's stream) of every view of ``spec``."""
    size, local = spec.sizes(32)
    return [("global", v, size, spec.global_scale, v) for v in range(spec.global_views)] + \
           [("local", v, local, spec.local_scale, 1000 + v) for v in range(spec.local_views)]


def kornia_view(preset: Callable, ctx: ViewContext, mean, std) -> tuple[list[nn.Module], nn.Module | None]:
    """The kornia modules of one view (one per preset op) and its normalisation (or None)."""
    mods = [kornia_op(op) for op in preset(ctx)]
    norm = K.Normalize(mean=torch.tensor(mean), std=torch.tensor(std)) if mean is not None else None
    return mods, norm


# --- kornia applying ssl_kit's parameters -----------------------------------------------------------
def _box_params(top: torch.Tensor, left: torch.Tensor, bh: torch.Tensor, bw: torch.Tensor, h: int, w: int,
                out: tuple[int, int]) -> dict[str, torch.Tensor]:
    """kornia's crop parameters for boxes (top, left, height, width) of (h, w) images resized to ``out``."""
    x0, y0, x1, y1 = left.float(), top.float(), (left + bw - 1).float(), (top + bh - 1).float()
    src = torch.stack([torch.stack([x0, y0], 1), torch.stack([x1, y0], 1), torch.stack([x1, y1], 1),
                       torch.stack([x0, y1], 1)], 1)
    n, (oh, ow) = len(top), out
    dst = torch.tensor([[0.0, 0.0], [ow - 1.0, 0.0], [ow - 1.0, oh - 1.0], [0.0, oh - 1.0]]).expand(n, 4, 2)
    return {"src": src, "dst": dst.clone(), "input_size": torch.tensor([[h, w]]).expand(n, 2).clone(),
            "output_size": torch.tensor([[oh, ow]]).expand(n, 2).clone(), "batch_prob": torch.ones(n)}


def _crop_params(u: torch.Tensor, mod: K.RandomResizedCrop, h: int, w: int) -> dict[str, torch.Tensor]:
    top, left, bh, bw = ops.random_crop_boxes(u, h, w, tuple(mod.tv.scale), tuple(mod.tv.ratio))
    return _box_params(top, left, bh, bw, h, w, tuple(mod.flags["size"]))


def _apply_jitter(mod: K.ColorJitter, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """torchvision's per-image random order with kornia's per-call order: one call per order present."""
    factors = {}
    for k, (name, neutral) in enumerate((("brightness", 1.0), ("contrast", 1.0), ("saturation", 1.0), ("hue", 0.0))):
        bounds = getattr(mod.tv, name)
        lo, hi = (float(b) for b in bounds) if bounds is not None else (neutral, neutral)
        factors[f"{name}_factor"] = lo + (hi - lo) * u[:, 1 + k]
    on = u[:, 0] < mod.tv_p
    order = u[:, 5:9].argsort(1)
    code = torch.where(on, (order * torch.tensor([64, 16, 4, 1])).sum(1), -1)
    out = x.clone()
    for c in code.unique().tolist():
        if c < 0:
            continue
        rows = (code == c).nonzero().squeeze(1)
        params = {k: v[rows] for k, v in factors.items()}
        params.update(order=order[rows[0]], batch_prob=torch.ones(len(rows)),
                      forward_input_shape=torch.tensor([len(rows), *x.shape[1:]]))
        out[rows] = mod(x[rows], params=params)
    return out


def kornia_params_views(images: torch.Tensor, index: torch.Tensor, epoch: int, seed: int, spec: ViewSpec,
                        views: list[tuple[list[nn.Module], nn.Module | None]]) -> list[torch.Tensor]:
    """Every view of ``images`` made by the kornia modules with ssl_kit's draws: op ``k`` of view
    ``v`` reads ``uniform(mix_seed(mix_seed(seed, epoch, v, STREAM), k), index)`` as BatchedViews does."""
    out = []
    for (_, _, _, _, view_id), (mods, norm) in zip(views_of(spec), views):
        stream = mix_seed(seed, epoch, view_id, STREAM)
        x = images.to(torch.float32) / 255.0
        for k, mod in enumerate(mods):
            if isinstance(mod, Clamp):
                x = mod(x)
                continue
            draws = {K.RandomResizedCrop: 22, K.ColorJitter: 9, K.RandomGaussianBlur: 2}.get(type(mod), 1)
            u = ops.uniform(mix_seed(stream, k), index, draws)
            if isinstance(mod, K.ColorJitter):
                x = _apply_jitter(mod, x, u)
                continue
            if isinstance(mod, K.RandomResizedCrop):
                params = _crop_params(u, mod, x.shape[-2], x.shape[-1])
            else:
                params = {"batch_prob": (u[:, 0] < mod.tv_p).float()}
                if isinstance(mod, K.RandomGaussianBlur):
                    lo, hi = (float(s) for s in mod.tv.sigma)
                    params["sigma"] = lo + (hi - lo) * u[:, 1]
                elif isinstance(mod, K.RandomSolarize):
                    params.update(thresholds=torch.full((len(x),), float(mod.tv.threshold)),
                                  additions=torch.zeros(len(x)))
            params["forward_input_shape"] = torch.tensor(x.shape)
            x = mod(x, params=params)
        out.append((norm(x) if norm is not None else x).contiguous())
    return out


# --- fixed-parameter equivalence to torchvision -----------------------------------------------------
def check_ops() -> list[tuple[str, float, float]]:
    """(op, max |kornia - torchvision|, max |ssl_kit - torchvision|) for fixed per-image parameters."""
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rows = []

    def per_image(fn, *columns):
        return torch.stack([fn(x[i], *(c[i] for c in columns)) for i in range(len(x))])

    def diff(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).abs().max())

    top, left = torch.tensor([0, 3, 5, 0, 10, 2]), torch.tensor([0, 1, 7, 4, 0, 9])
    h, w = torch.tensor([32, 10, 20, 28, 5, 23]), torch.tensor([32, 12, 25, 28, 7, 19])
    for size in (32, 13):
        mod = kornia_op(v2.RandomResizedCrop(size, interpolation=v2.InterpolationMode.BICUBIC))
        params = _box_params(top, left, h, w, 32, 32, (size, size))
        params["forward_input_shape"] = torch.tensor(x.shape)
        ref = per_image(lambda im, t, l, hh, ww: TF.resized_crop(im, int(t), int(l), int(hh), int(ww), [size, size],
                                                                  interpolation=v2.InterpolationMode.BICUBIC,
                                                                  antialias=True), top, left, h, w)
        ours = ops.resized_crop(x, top, left, h, w, (size, size), "bicubic")
        got = mod(x, params=params)
        rows.append((f"RandomResizedCrop bicubic to {size} px", diff(got, ref), diff(ours, ref)))
        plain = per_image(lambda im, t, l, hh, ww: TF.resized_crop(im, int(t), int(l), int(hh), int(ww), [size, size],
                                                                    interpolation=v2.InterpolationMode.BICUBIC,
                                                                    antialias=False), top, left, h, w)
        rows.append((f"RandomResizedCrop bicubic to {size} px, against torchvision antialias=False", diff(got, plain),
                     float("nan")))
    factors = {"brightness": torch.tensor([0.2, 0.5, 1.0, 1.5, 1.8, 0.9]),
               "contrast": torch.tensor([0.2, 0.5, 1.0, 1.5, 1.8, 0.9]),
               "saturation": torch.tensor([0.2, 0.5, 1.0, 1.5, 1.8, 0.9]),
               "hue": torch.tensor([-0.2, -0.05, 0.0, 0.1, 0.15, 0.2])}
    jitter = K.ColorJitter(0.8, 0.8, 0.8, 0.2)
    for k, (name, f) in enumerate(factors.items()):
        params = {"brightness_factor": torch.ones(6), "contrast_factor": torch.ones(6),
                  "saturation_factor": torch.ones(6), "hue_factor": torch.zeros(6),
                  "order": torch.tensor([k]), "batch_prob": torch.ones(6), "forward_input_shape": torch.tensor(x.shape)}
        params[f"{name}_factor"] = f
        ref = per_image(lambda im, v: getattr(TF, f"adjust_{name}")(im, float(v)), f)
        rows.append((f"ColorJitter {name}", float((jitter(x, params=params) - ref).abs().max()),
                     float((getattr(ops, name)(x, f) - ref).abs().max())))
    gray = K.RandomGrayscale(p=1.0)
    ref = per_image(lambda im: TF.rgb_to_grayscale(im, 3))
    rows.append(("RandomGrayscale", float((gray(x) - ref).abs().max()),
                 float((ops.grayscale(x).expand(-1, 3, -1, -1) - ref).abs().max())))
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 0.3])
    blur = K.RandomGaussianBlur((3, 3), (0.1, 2.0), border_type="reflect", p=1.0)
    ref = per_image(lambda im, s: TF.gaussian_blur(im, [3, 3], [float(s)] * 2), sigma)
    got = blur(x, params={"sigma": sigma, "batch_prob": torch.ones(6), "forward_input_shape": torch.tensor(x.shape)})
    rows.append(("GaussianBlur 3 px", diff(got, ref), diff(ops.gaussian_blur(x, 3, sigma), ref)))
    sol = K.RandomSolarize((0.5, 0.5), (0.0, 0.0), p=1.0)
    ref = TF.solarize(x, 0.5)
    rows.append(("RandomSolarize 0.5", diff(sol(x), ref), diff(ops.solarize(x, 0.5), ref)))
    return rows


def check_batch_independence(name: str, images: torch.Tensor) -> tuple[float, float]:
    """Largest difference between the views of a batch made at once and made in two halves (the two
    processes of a 2-process run), for kornia with ssl_kit's params and kornia with its own draws
    (global seed set per batch, as a loader worker would)."""
    spec, preset, (mean, std) = WORKLOADS[name]
    views = [kornia_view(preset, ViewContext(kind, v, s, sc, 3), mean, std) for kind, v, s, sc, _ in views_of(spec)]
    index = torch.arange(len(images))
    half = len(images) // 2
    whole = kornia_params_views(images, index, 3, 0, spec, views)
    halves = (slice(0, half), slice(half, None))
    parts = [kornia_params_views(images[sl], index[sl], 3, 0, spec, views) for sl in halves]
    ours = max(float((a - torch.cat([b, c])).abs().max()) for a, b, c in zip(whole, *parts))

    def own(imgs: torch.Tensor) -> list[torch.Tensor]:
        torch.manual_seed(3)
        return [mods_apply(imgs, m, n) for m, n in views]
    whole = own(images)
    parts = [own(images[sl]) for sl in halves]
    theirs = max(float((a - torch.cat([b, c])).abs().max()) for a, b, c in zip(whole, *parts))
    return ours, theirs


def mods_apply(images: torch.Tensor, mods: list[nn.Module], norm: nn.Module | None) -> torch.Tensor:
    x = images.to(torch.float32) / 255.0
    for mod in mods:
        x = mod(x)
    return norm(x) if norm is not None else x


# --- timing ------------------------------------------------------------------------------------------
def bench(name: str, images: torch.Tensor, rounds: int, compiled: bool) -> tuple[dict[str, float], dict[str, float]]:
    """Median images/s of each pipeline, and the seconds of the compiled ones' first calls."""
    spec, preset, (mean, std) = WORKLOADS[name]
    ours = BatchedViews(spec, preset, 3, 32, 32, mean, std, seed=0)
    views = [kornia_view(preset, ViewContext(kind, v, s, sc, 3), mean, std) for kind, v, s, sc, _ in views_of(spec)]
    seqs = [(K.AugmentationSequential(*mods), norm) for mods, norm in views]
    index = torch.arange(len(images))

    def kornia_all(imgs: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for seq, norm in seqs:
            x = seq(imgs.to(torch.float32) / 255.0)
            out.append(norm(x) if norm is not None else x)
        return out

    runs: dict[str, Callable[[int], object]] = {
        "ssl_kit": lambda epoch: ours(images, index, epoch),
        "kornia eager": lambda epoch: kornia_all(images),
        "kornia, ssl_kit params": lambda epoch: kornia_params_views(images, index, epoch, 0, spec, views),
    }
    setup: dict[str, float] = {}
    if compiled:
        # the counter hash stays out of the graph: with it inside, inductor's C++ build of one
        # kernel fails on this torch (the hash alone compiles; see docs/benchmarks.md)
        ops.uniform = torch.compiler.disable(_UNIFORM)
        for key, fn in (("kornia compiled", torch.compile(lambda epoch: kornia_all(images))),
                        ("ssl_kit compiled", torch.compile(lambda epoch: ours(images, index, epoch)))):
            start = time.perf_counter()
            fn(0)
            setup[key] = time.perf_counter() - start
            for epoch in range(1, 5):  # recompilations (row counts, epochs) settle here
                fn(epoch)
            runs[key] = fn
    for run in runs.values():
        run(0)  # warm-up
    rates: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            runs[k](r)
            rates[k].append(len(images) / (time.perf_counter() - start))
    ops.uniform = _UNIFORM
    return {k: statistics.median(v) for k, v in rates.items()}, setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (set OMP_NUM_THREADS to match)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (median reported)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile pipelines")
    parser.add_argument("--no-check", action="store_true", help="skip the equivalence and batch checks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch._logging.set_logs(dynamo=logging.ERROR, inductor=logging.ERROR)
    images = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, kornia {kornia.__version__}, "
          f"{torch.get_num_threads()} thread(s), batch {args.batch}, median of {args.rounds} interleaved rounds\n")
    if not args.no_check:
        print("| op (fixed parameters) | max abs diff kornia - torchvision | max abs diff ssl_kit - torchvision |")
        print("|---|---|---|")
        for op, k, s in check_ops():
            print(f"| {op} | {k:.2e} | {'-' if s != s else f'{s:.2e}'} |")
        print("\n| workload | views made whole vs in 2 halves: kornia + ssl_kit params | kornia own draws |")
        print("|---|---|---|")
        for name in args.workloads:
            a, b = check_batch_independence(name, images)
            print(f"| {name} | {a:.2e} | {b:.2e} |")
        print(flush=True)
    header = ["ssl_kit", "kornia eager", "ssl_kit compiled", "kornia compiled", "kornia, ssl_kit params"]
    print("| workload | threads | " + " | ".join(f"{h} img/s" for h in header) +
          " | ssl_kit / kornia eager | ssl_kit / kornia compiled | ssl_kit compiled / kornia compiled |"
          " first compiled call: ssl_kit, kornia |")
    print("|---|---|" + "---|" * (len(header) + 4))
    for name in args.workloads:
        rates, setup = bench(name, images, args.rounds, not args.no_compile)
        cells = [f"{rates[h]:.0f}" if h in rates else "-" for h in header]

        def ratio(a: str, b: str) -> str:
            return f"{rates[a] / rates[b]:.2f}" if a in rates and b in rates else "-"
        first = (f"{setup['ssl_kit compiled']:.0f} s, {setup['kornia compiled']:.0f} s" if setup else "-")
        print(f"| {name} | {args.threads} | " + " | ".join(cells) + f" | {ratio('ssl_kit', 'kornia eager')} | "
              f"{ratio('ssl_kit', 'kornia compiled')} | {ratio('ssl_kit compiled', 'kornia compiled')} | {first} |",
              flush=True)


if __name__ == "__main__":
    main()

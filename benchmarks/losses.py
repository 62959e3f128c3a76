"""Forward + backward time and peak memory of every ssl_kit loss, next to lightly's equivalent.

    OMP_NUM_THREADS=1 python benchmarks/losses.py                     # B 256 / 1024 / 4096, D 128
    OMP_NUM_THREADS=1 python benchmarks/losses.py --losses nt_xent moco --batches 1024 --repeats 5

Every loss of the core (``ssl_kit.losses``) and of the paper plugins (ReLIC, QARe / SparseCLR,
Geometric, CARE, Decoupled Uniformity; a plugin that is not installed gives no rows) gets the
inputs its docstring describes, drawn once per batch size from a fixed seed: two views of (B, D)
embeddings, MoCo's normalised queries and keys with a (D, 4096) queue, CARE's unit rows in 16
chunks, Decoupled Uniformity's (B, 2, D) views. Tensors that carry a gradient in training
(projections, predictions, queries, ReLIC's log-scale) are leaves with ``requires_grad``; targets,
keys and queues are not (the losses detach them anyway). Where lightly has the same loss the
same tensors go to it, in the way lightly's own examples call it:

    nt_xent(cat([z1, z2]))          lightly.loss.NTXentLoss(temperature)(z1, z2)
    moco_infonce(q, k, queue)       NTXentLoss(temperature, memory_bank_size=(4096, D))(q, k), the
                                    bank holding queue.T (its timing includes lightly's bank copy and
                                    enqueue, which ssl_kit's MoCo does outside the loss)
    byol_loss(p, z)                 NegativeCosineSimilarity()(p, z), as lightly's BYOL example (its
                                    -cos against BYOL's 2 - 2 cos: one elementwise op on (B,) less)
    simsiam_loss(p, z)              NegativeCosineSimilarity()(p, z)

Before timing, each pair's values are compared (BYOL through 2 + 2 x lightly's); a mismatch is
printed under the table. lightly (the ``lightly`` package) is a benchmark-only dependency,
imported lazily: without it the lightly columns read "n/a (lightly not installed)". ReLIC, QARe,
SparseCLR, CARE, Decoupled Uniformity and the geodesic losses have no lightly equivalent.

Time: one call is ``loss_fn(*inputs)`` then ``.backward()`` (input gradients reset to None before
it). After two warm-up calls per side (the second one timed), each side's call count per
measurement is set so that a measurement lasts at least ``--min-ms`` (so that sub-millisecond
losses are not timer noise);
then ``--repeats`` measurements per side, interleaved (ssl_kit, lightly, ssl_kit, ... with the
order swapped every repeat); the table gives the median ms per call and the ratio
ssl_kit / lightly of the medians (target: <= 1.0).

Peak memory: on CPU, one extra call under ``torch.profiler.profile(profile_memory=True)``; the
profiler records every allocation and free of torch's CPU allocator with its size, and the peak
is the maximum of their running sum, i.e. the most bytes held at once during forward + backward
above what was allocated before the call (the inputs themselves excluded; the input gradients
it creates included, those of earlier calls freed before it starts). On CUDA:
``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before the call.

Losses whose cost grows as B^3 (QARe's two float64 eigendecompositions; the RBF-kernel Decoupled
Uniformity's eigenvalues and solve) skip batches above ``--max-cubic-batch`` (default 1024).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssl_kit import losses as core

QUEUE = 4096  # MoCo negatives
TEMPERATURE = 0.2
CARE_CHUNKS = 16
NO_LIGHTLY = "n/a (lightly not installed)"


@dataclass
class Case:
    name: str  # the table's first column (and what --losses matches)
    inputs: Callable[[int, int, torch.dtype, torch.device, torch.Generator], tuple]
    ssl_kit: Callable[..., torch.Tensor]
    lightly: Callable[[int, torch.dtype, torch.device], Callable[..., torch.Tensor]] | None = None  # (D, dtype, device)
    lightly_name: str = ""
    to_ssl_kit: Callable[[float], float] = lambda v: v  # lightly's value -> ssl_kit's (for the check)
    cubic: bool = False  # cost ~ B^3: skipped above --max-cubic-batch


def _leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().requires_grad_(True)


def _randn(gen, device, dtype, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


def two_views(b, d, dtype, device, gen):
    """Two (B, D) raw projections, both with a gradient (SimCLR-like losses)."""
    z1 = _randn(gen, device, dtype, b, d)
    z2 = z1 + 0.5 * _randn(gen, device, dtype, b, d)
    return _leaf(z1), _leaf(z2)


def prediction_target(b, d, dtype, device, gen):
    """(B, D) predictions with a gradient and (B, D) targets without (BYOL / SimSiam)."""
    p, z = two_views(b, d, dtype, device, gen)
    return p, z.detach()


def unit_pair(b, d, dtype, device, gen):
    """Two (B, D) L2-normalised embeddings, both with a gradient (CARE)."""
    z1, z2 = two_views(b, d, dtype, device, gen)
    return _leaf(F.normalize(z1, dim=1)), _leaf(F.normalize(z2, dim=1))


def moco_inputs(b, d, dtype, device, gen):
    """Normalised queries (B, D) with a gradient, keys (B, D) and a queue (D, 4096) without."""
    q, k = two_views(b, d, dtype, device, gen)
    queue = F.normalize(_randn(gen, device, dtype, d, QUEUE), dim=0)
    return _leaf(F.normalize(q, dim=1)), F.normalize(k, dim=1).detach(), queue


def relic_inputs(variant):
    def make(b, d, dtype, device, gen):
        online, target = two_views(b, d, dtype, device, gen)
        log_scale = torch.tensor(0.0 if variant == "contrastive" else math.log(10.0), dtype=dtype, device=device)
        bias = torch.tensor(0.0 if variant == "contrastive" else -10.0, dtype=dtype, device=device)
        return online, target.detach(), _leaf(log_scale), _leaf(bias)
    return make


def du_inputs(prior: bool):
    def make(b, d, dtype, device, gen):
        z1, z2 = two_views(b, d, dtype, device, gen)
        z = _leaf(torch.stack([z1, z2], dim=1))  # (B, V=2, D)
        if not prior:
            return (z,)
        return z, _randn(gen, device, torch.float64, b, 8)
    return make


# ---------------------------------------------------------------- lightly (lazy, benchmark only)

def lightly_available() -> bool:
    try:
        import lightly.loss  # noqa: F401
    except ImportError:
        return False
    return True


def lightly_nt_xent(d, dtype, device):
    from lightly.loss import NTXentLoss

    return NTXentLoss(temperature=TEMPERATURE).to(device)


def lightly_moco(d, dtype, device):
    from lightly.loss import NTXentLoss

    loss = NTXentLoss(temperature=TEMPERATURE, memory_bank_size=(QUEUE, d)).to(device=device, dtype=dtype)

    def call(q, k, queue):
        return loss(q, k)

    def load(queue):  # the same negatives as ssl_kit's (the bank is (K, D))
        with torch.no_grad():
            loss.memory_bank.bank.copy_(queue.T)
            loss.memory_bank.bank_ptr.zero_()
    call.load = load
    return call


def lightly_negative_cosine(d, dtype, device):
    from lightly.loss import NegativeCosineSimilarity

    return NegativeCosineSimilarity()


def cases() -> list[Case]:
    out = [
        Case("nt_xent (SimCLR)", two_views, lambda z1, z2: core.nt_xent(torch.cat([z1, z2]), temperature=TEMPERATURE),
             lightly_nt_xent, "NTXentLoss"),
        Case("moco_infonce (MoCo v2, queue 4096)", moco_inputs,
             lambda q, k, queue: core.moco_infonce(q, k, queue, temperature=TEMPERATURE),
             lightly_moco, "NTXentLoss(memory_bank_size)"),
        Case("byol_loss", prediction_target, core.byol_loss, lightly_negative_cosine, "NegativeCosineSimilarity",
             to_ssl_kit=lambda v: 2 + 2 * v),
        Case("simsiam_loss", prediction_target, core.simsiam_loss, lightly_negative_cosine,
             "NegativeCosineSimilarity"),
    ]
    try:
        from ssl_kit_relic.loss import relic_loss
    except ImportError:
        pass
    else:
        for variant in ("contrastive", "siglip"):
            out.append(Case(f"relic_loss ({variant})", relic_inputs(variant),
                            functools.partial(_relic, relic_loss, variant)))
    try:
        from ssl_kit_qare import loss as qare
    except ImportError:
        pass
    else:
        out += [
            Case("qare_regularizer", two_views, qare.qare_regularizer, cubic=True),
            Case("lap_loss (SimCLR + QARe pairwise)", two_views,
                 lambda z1, z2: qare.lap_loss(z1, z2, similarity=qare.clipped_cosine)),
            Case("sparseclr_loss", two_views, qare.sparseclr_loss),
        ]
    try:
        from ssl_kit_geometric import loss as geo
    except ImportError:
        pass
    else:
        out += [
            Case("geodesic_nt_xent", two_views, lambda z1, z2: geo.geodesic_nt_xent(torch.cat([z1, z2]))),
            Case("geodesic_moco_infonce (queue 4096)", moco_inputs, geo.geodesic_moco_infonce),
            Case("squared_geodesic_loss", prediction_target, geo.squared_geodesic_loss),
            Case("released_byol_loss", prediction_target, geo.released_byol_loss),
            Case("released_simsiam_loss", prediction_target, geo.released_simsiam_loss),
        ]
    try:
        from ssl_kit_care.loss import equivariance_loss
    except ImportError:
        pass
    else:
        out.append(Case(f"equivariance_loss (CARE, {CARE_CHUNKS} chunks)", unit_pair,
                        lambda e1, e2: equivariance_loss(e1, e2, chunks=CARE_CHUNKS)))
    try:
        from ssl_kit_decoupled_uniformity.loss import decoupled_uniformity_loss
    except ImportError:
        pass
    else:
        out += [
            Case("decoupled_uniformity_loss (2 views)", du_inputs(False), lambda z: decoupled_uniformity_loss(z).loss),
            Case("decoupled_uniformity_loss (RBF prior, P 8)", du_inputs(True),
                 lambda z, prior: decoupled_uniformity_loss(z, prior, kernel="rbf", sigma=4.0).loss, cubic=True),
        ]
    return out


def _relic(relic_loss, variant, online, target, log_scale, bias):
    return relic_loss(online, target, log_scale, bias, variant=variant,
                      max_scale=5.0 if variant == "contrastive" else 15.0).loss


# ---------------------------------------------------------------- measurement

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clear(inputs) -> None:
    for x in inputs:
        if isinstance(x, torch.Tensor) and x.requires_grad:
            x.grad = None


def _call(fn, inputs) -> torch.Tensor:
    _clear(inputs)
    loss = fn(*inputs)
    loss.backward()
    return loss


def _time(fn, inputs, number: int, device) -> float:
    """ms per call over ``number`` calls."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(number):
        _call(fn, inputs)
    _sync(device)
    return (time.perf_counter() - start) * 1000 / number


def peak_mib(fn, inputs, device) -> float:
    _clear(inputs)  # the previous call's input gradients are freed before the baseline, not inside the call
    if device.type == "cuda":
        _sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        _call(fn, inputs)
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _call(fn, inputs)
    events = []

    def walk(nodes):
        for node in nodes:
            if isinstance(node.extra_fields, torch._C._profiler._ExtraFields_Allocation):
                events.append((node.start_time_ns, node.extra_fields.alloc_size))
            walk(node.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    held = peak = 0
    for _, size in sorted(events):
        held += size
        peak = max(peak, held)
    return peak / 2**20


def measure(sides: dict[str, tuple[Callable, tuple]], repeats: int, min_ms: float,
            device) -> dict[str, tuple[float, float]]:
    """{side: (median ms, peak MiB)} with the sides' measurements interleaved."""
    numbers = {}
    for side, (fn, inputs) in sides.items():
        _call(fn, inputs)
        warm = _time(fn, inputs, 1, device)
        numbers[side] = max(1, math.ceil(min_ms / max(warm, 1e-3)))
    times = {side: [] for side in sides}
    order = list(sides)
    for r in range(repeats):
        for side in order if r % 2 == 0 else order[::-1]:
            fn, inputs = sides[side]
            times[side].append(_time(fn, inputs, numbers[side], device))
    return {side: (statistics.median(times[side]), peak_mib(*sides[side], device)) for side in sides}


def fmt_ms(ms: float) -> str:
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved measurements per side")
    parser.add_argument("--min-ms", type=float, default=50.0, help="least duration of one measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--losses", nargs="+", default=None, help="only losses whose name contains one of these")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    parser.add_argument("--max-cubic-batch", type=int, default=1024,
                        help="largest batch for the B^3 losses (QARe, Decoupled Uniformity with a kernel)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    warnings.simplefilter("ignore", RuntimeWarning)  # DU's conditioning warning on random priors
    have_lightly = lightly_available()
    selected = [c for c in cases() if not args.losses or any(s.lower() in c.name.lower() for s in args.losses)]
    if not selected:
        sys.exit(f"no loss matches {args.losses}")
    rows, notes = [], []
    for case in selected:
        for b in args.batches:
            label = f"| {case.name} | {case.lightly_name or '-'} | {b} |"
            if case.cubic and b > args.max_cubic_batch:
                rows.append(f"{label} skipped (B^3, --max-cubic-batch {args.max_cubic_batch}) | | | | |")
                continue
            gen = torch.Generator().manual_seed(args.seed + b)
            inputs = case.inputs(b, args.dim, dtype, device, gen)
            sides = {"ssl_kit": (case.ssl_kit, inputs)}
            if case.lightly is not None and have_lightly:
                fn = case.lightly(args.dim, dtype, device)
                if hasattr(fn, "load"):
                    fn.load(inputs[2])
                with torch.no_grad():
                    ours, theirs = float(case.ssl_kit(*inputs)), case.to_ssl_kit(float(fn(*inputs)))
                if hasattr(fn, "load"):
                    fn.load(inputs[2])
                if not math.isclose(ours, theirs, rel_tol=1e-4, abs_tol=1e-5):
                    notes.append(f"{case.name} B {b}: ssl_kit {ours:.6g} vs lightly {theirs:.6g}")
                sides["lightly"] = (fn, inputs)
            result = measure(sides, args.repeats, args.min_ms, device)
            ms, mib = result["ssl_kit"]
            if "lightly" in result:
                lms, lmib = result["lightly"]
                rest = f" {fmt_ms(lms)} | {ms / lms:.2f} | {mib:.1f} | {lmib:.1f} |"
            elif case.lightly is not None:
                rest = f" {NO_LIGHTLY} | - | {mib:.1f} | {NO_LIGHTLY} |"
            else:
                rest = f" - | - | {mib:.1f} | - |"
            rows.append(f"{label} {fmt_ms(ms)} |{rest}")
            print(rows[-1], file=sys.stderr, flush=True)
    version = "not installed"
    if have_lightly:
        import lightly

        version = lightly.__version__
    print(f"\ntorch {torch.__version__}, lightly {version}, {args.device}, {args.dtype}, D {args.dim}, "
          f"{torch.get_num_threads()} thread(s), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"median of {args.repeats} interleaved measurements of >= {args.min_ms:g} ms\n")
    print("| loss | lightly | batch | ssl_kit ms | lightly ms | ratio | ssl_kit peak MiB | lightly peak MiB |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for note in notes:
        print(f"\nvalue mismatch: {note}")


if __name__ == "__main__":
    main()

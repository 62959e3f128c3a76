"""Test helpers: temporary plugins, optional dependencies, the distributed contract launch and
comparison, and negative-control plugins (re-exported by :mod:`ssl_kit.testing`)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ssl_kit.checkpoint import list_checkpoints
from ssl_kit.errors import PluginError
from ssl_kit.hooks import hookimpl
from ssl_kit.plugins import PluginInfo, get_registry


@contextlib.contextmanager
def temporary_plugin(plugin: Any, name: str, distribution: str = "", version: str = "0") -> Iterator[PluginInfo]:
    """Register ``plugin`` in the process-wide registry, and remove it afterwards."""
    registry = get_registry()
    info = registry.add_plugin(plugin, name, distribution or f"{name} (test)", version)
    try:
        if info.status != "ok":
            raise PluginError(f"temporary plugin '{name}' failed to register: {info.error}")
        yield info
    finally:
        registry.remove_plugin(name)


def need(module: str) -> Any:
    """Import an optional extra's module in a test; skip when it is missing, but fail under
    ``CI=true`` (CI installs every extra, so a skip there would hide a broken install)."""
    import pytest  # the test extra's: ssl_kit.testing's other helpers work without it

    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install the extra providing '{module}'")
        pytest.skip(f"optional dependency '{module}' is not installed")


def run_contract(out: Any, recipes: list[Any], processes: int, also_without_syncbn: bool = False,
                 timeout: float = 600, overrides: tuple[str, ...] = ()) -> None:
    """Launch :mod:`ssl_kit.testing.contract` once for all ``recipes`` with ``processes`` gloo/NCCL
    processes (``accelerate launch --multi_gpu``, started with this interpreter, so no activated
    environment is needed), or in this interpreter's subprocess for 1. ``overrides`` (``key=value``)
    apply to every recipe, after the contract's own (one optimizer step, SyncBN on)."""
    args = ["-m", "ssl_kit.testing.contract", str(out), *map(str, recipes), *(f"--override={o}" for o in overrides)]
    if also_without_syncbn:
        args.append("--also-without-syncbn")
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(20000 + os.getpid() % 20000), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"contract launch failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}")


def run_workers(source: str, folder: Any, processes: int = 2, timeout: float = 120) -> list[dict[str, Any]]:
    """Run the Python ``source`` as ``processes`` plain processes that meet through a file
    (``torch.distributed`` FileStore: no port, no launcher) and return what each wrote.

    Each process is started as ``python worker.py RANK WORLD_SIZE STORE_FILE FOLDER`` with one
    torch thread, and must write its measurements as JSON to ``FOLDER/rank{RANK}.json``; the
    assertions then run in the test. A process that fails fails the call with its stderr's tail.
    """
    folder = Path(folder)
    script = folder / "worker.py"
    script.write_text(source)
    store = folder / "rendezvous"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(processes), str(store), str(folder)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(processes)]
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:  # only the processes started here
            if p.poll() is None:
                p.kill()
    for r, (p, (_, err)) in enumerate(zip(procs, outputs)):
        if p.returncode != 0:
            raise AssertionError(f"worker {r} exited with {p.returncode}:\n{err[-3000:]}")
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(processes)]


def _run_losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "log.jsonl").read_text().splitlines()]


def compare_runs(a: Any, b: Any, check_replicas: bool = True, rtol: float = 0.0, atol: float = 0.0) -> dict[str, Any]:
    """How far two contract runs are apart: per-step logged losses and every floating-point
    tensor of the final checkpoint (parameters and buffers: BN statistics, EMA targets, queues).

    Returns ``loss`` and ``weights`` (the largest absolute differences), and for the worst element
    against the tolerance ``|x - y| <= atol + rtol * |y|`` (y from run ``b``): ``worst`` (``"loss at
    step N"`` or the tensor's name and index), ``worst_values`` (x, y) and ``excess`` (its
    ``|x - y| / (atol + rtol |y|)``; above 1 fails ``assert_same_runs``). Also checks that within
    each run every process ended with an identical copy of the method (the per-rank digests of
    the checkpoint) when ``check_replicas`` is true; without SyncBN, batch-norm running statistics
    legitimately differ between processes."""
    for run in (Path(a), Path(b)) if check_replicas else ():
        digests = {p.read_text() for p in list_checkpoints(run)[-1].glob("digest_rank*.txt")}
        if len(digests) != 1:
            raise AssertionError(f"{run}: the processes' copies of the method differ after training")
    la, lb = _run_losses(Path(a)), _run_losses(Path(b))
    if len(la) != len(lb):
        raise AssertionError(f"runs logged {len(la)} and {len(lb)} steps")
    wa = load_file(str(list_checkpoints(Path(a))[-1] / "model.safetensors"))
    wb = load_file(str(list_checkpoints(Path(b))[-1] / "model.safetensors"))
    if wa.keys() != wb.keys():
        raise AssertionError(f"runs saved different state keys: {sorted(set(wa) ^ set(wb))[:5]}")
    gap: dict[str, Any] = {"loss": 0.0, "weights": 0.0, "worst": "", "worst_values": (0.0, 0.0), "excess": 0.0}

    def excess(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """|x - y| in units of the tolerance (the absolute difference when none is given)."""
        diff = (x - y).abs()
        allowed = atol + rtol * y.abs() if rtol or atol else torch.ones_like(y)
        return torch.where(diff == 0, torch.zeros_like(diff), diff / allowed)

    def consider(where: Callable[[int], str], x: torch.Tensor, y: torch.Tensor) -> None:
        e = excess(x, y)
        i = int(e.argmax())
        if float(e[i]) > gap["excess"] or not gap["worst"]:
            gap.update(worst=where(i), worst_values=(float(x[i]), float(y[i])), excess=float(e[i]))

    x, y = torch.tensor(la, dtype=torch.float64), torch.tensor(lb, dtype=torch.float64)
    gap["loss"] = float((x - y).abs().max()) if len(x) else 0.0
    if len(x):
        consider(lambda i: f"loss at step {i + 1}", x, y)
    for key in wa:
        if wa[key].is_floating_point() and wa[key].numel():
            x, y = wa[key].double().flatten(), wb[key].double().flatten()
            gap["weights"] = max(gap["weights"], float((x - y).abs().max()))
            shape = wa[key].shape
            consider(lambda i, key=key, shape=shape: f"tensor '{key}' at index "
                     f"{tuple(int(v) for v in torch.unravel_index(torch.tensor(i), shape))}", x, y)
    return gap


def assert_same_runs(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-5, what: str = "runs",
                     check_replicas: bool = True) -> dict[str, Any]:
    """Fail unless every logged loss and checkpoint tensor of run ``a`` matches run ``b`` within
    ``|x - y| <= atol + rtol * |y|``; the message names the worst loss step or tensor and both values."""
    gap = compare_runs(a, b, check_replicas=check_replicas, rtol=rtol, atol=atol)
    if gap["excess"] > 1:
        x, y = gap["worst_values"]
        raise AssertionError(
            f"{what} differ: {gap['worst']}: {x!r} in {Path(a).name} vs {y!r} in {Path(b).name} (|difference| "
            f"{abs(x - y):.3g} > {atol:g} + {rtol:g} x |value|); largest absolute gaps: loss {gap['loss']:.3g}, "
            f"tensors {gap['weights']:.3g}. Runs: {a} and {b} (log.jsonl, checkpoints/step_N/model.safetensors)"
        )
    return gap


def _loss_variant_plugin(method: str, suffix: str, scale: float) -> Any:
    component = get_registry().get("methods", method)

    class Variant(component.factory):  # type: ignore[misc, valid-type]
        def forward(self, batch: Any) -> Any:
            out = super().forward(batch)
            return {**out, "loss": scale * out["loss"]}

    class Plugin:
        @hookimpl
        def register_methods(self, register: Any) -> None:
            register(f"{method}_{suffix}", Variant, config=component.config)

    return Plugin()


def sign_flipped_plugin(method: str) -> Any:
    """A plugin object registering ``<method>_flipped``: the registered method with its loss
    negated. Training it is the negative control of an accuracy threshold for contrastive methods:
    a threshold that a sign-flipped loss also reaches proves nothing. (For methods with a predictor
    and a stop-gradient, BYOL and SimSiam, the sign is a symmetry: the predictor can negate its
    output, so a flipped run learns as well; use :func:`no_gradient_plugin` there.)"""
    return _loss_variant_plugin(method, "flipped", -1.0)


def no_gradient_plugin(method: str) -> Any:
    """A plugin object registering ``<method>_nograd``: the same forward (batch-norm statistics,
    EMA and queue updates included) with the loss multiplied by zero, so no weight learns. The
    negative control for methods where a sign flip is a symmetry."""
    return _loss_variant_plugin(method, "nograd", 0.0)

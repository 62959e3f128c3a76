"""Test helpers: temporary plugins, optional dependencies, the distributed contract launch and
comparison, and negative-control plugins (re-exported by :mod:`ssl_kit.testing`)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def run_contract(out: Any, recipes: list[Any], processes: int, also_without_syncbn: bool = False, timeout: float = 600) -> None:
    """Launch :mod:`ssl_kit.testing.contract` once for all ``recipes`` with ``processes`` gloo/NCCL
    processes (``accelerate launch --multi_gpu``, started with this interpreter, so no activated
    environment is needed), or in this interpreter's subprocess for 1."""
    args = ["-m", "ssl_kit.testing.contract", str(out), *map(str, recipes)]
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


def compare_runs(a: Any, b: Any, check_replicas: bool = True) -> dict[str, float]:
    """Largest absolute differences between two contract runs: per-step logged losses and every
    floating-point tensor of the final checkpoint (parameters and buffers: BN statistics, EMA
    targets, queues). Also checks that within each run every process ended with an identical
    copy of the method (the per-rank digests of the checkpoint) when ``check_replicas`` is true;
    without SyncBN, batch-norm running statistics legitimately differ between processes."""
    def losses(run: Path) -> list[float]:
        return [json.loads(x)["loss"] for x in (run / "log.jsonl").read_text().splitlines()]

    for run in (Path(a), Path(b)) if check_replicas else ():
        digests = {p.read_text() for p in list_checkpoints(run)[-1].glob("digest_rank*.txt")}
        if len(digests) != 1:
            raise AssertionError(f"{run}: the processes' copies of the method differ after training")
    la, lb = losses(Path(a)), losses(Path(b))
    if len(la) != len(lb):
        raise AssertionError(f"runs logged {len(la)} and {len(lb)} steps")
    wa = load_file(str(list_checkpoints(Path(a))[-1] / "model.safetensors"))
    wb = load_file(str(list_checkpoints(Path(b))[-1] / "model.safetensors"))
    if wa.keys() != wb.keys():
        raise AssertionError("runs saved different state keys")
    weights = max(
        (float((wa[k].double() - wb[k].double()).abs().max()) for k in wa if wa[k].is_floating_point() and wa[k].numel()),
        default=0.0,
    )
    return {"loss": max(abs(x - y) for x, y in zip(la, lb)), "weights": weights}




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

"""Resumable training state: atomic checkpoints, what resume may continue, and RNG states.

Run directory layout::

    checkpoints/step_N/
      model.safetensors      every tensor of the trained modules: the method's (EMA targets and
                             queues too) and, prefixed ``online_probe.``, the online probe's
      optimizer.pt           optimizer state_dict       (torch.load(weights_only=True))
      scheduler.pt           lr scheduler state_dict    (torch.load(weights_only=True))
      rng_rank{R}.pt         RNG states of process R    (torch.load(weights_only=True))
      digest_rank{R}.txt     SHA-256 of process R's copy of the modules
      state.json             step, counters, format version

A checkpoint is written to ``checkpoints/.tmp-step_N`` and renamed into place, so a directory
named ``step_N`` is always complete, even after a kill during the save. Nothing here unpickles.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle
import random
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ssl_kit.errors import CheckpointError, UserError, one_line
from ssl_kit.io import FORMAT_VERSION, dumps_toml, fsync_dir, loads_toml, read_toml, read_versioned_json, write_json
from ssl_kit.weights import load_strict, save_tensors

CHECKPOINT_DIR = "checkpoints"
STATE_KEYS = ("step", "skipped_nonfinite")  # what state.json must hold (besides format_version)
MODEL = "model.safetensors"

#: Named modules of a checkpoint: the prefix of their keys in model.safetensors ("" for the method).
Modules = dict[str, nn.Module]


# --- which checkpoint to continue --------------------------------------------------------------
def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.startswith("step_") and entry.name[5:].isdigit():
            found.append((int(entry.name[5:]), entry))
    return [p for _, p in sorted(found)]


# What a checkpoint's weights, optimizer state and position inside an epoch depend on: resuming
# under a recipe that differs here would silently continue another run.
# The optimizer and its schedule are part of it: a resumed scheduler keeps its own lr, so an lr
# change would be half-applied (the recipe saying one lr, the steps using another); it is refused.
RUN_IDENTITY = {"method": None, "backbone": None, "views": None, "optim": None,
                "data": ("name", "batch_size", "train_split"), "train": ("seed", "grad_accumulation")}


def find_resume(mode: str, run_dir: Path, resolved: dict[str, Any]) -> Path | None:
    """The checkpoint ``train.resume = mode`` continues (None: start afresh). ``resolved`` is the
    recipe (``Recipe.resolved()``): a run directory holding another run's checkpoints is refused."""
    if mode == "never":
        if list_checkpoints(run_dir):
            raise UserError(
                f"run directory '{run_dir}' already has checkpoints and train.resume = 'never': "
                "choose another train.output_dir, delete the checkpoints, or set train.resume = 'auto'"
            )
        return None
    if mode == "auto":
        found = list_checkpoints(run_dir)
        path = found[-1] if found else None
    else:
        path = Path(mode)
        if not (path / "state.json").is_file():
            raise UserError(f"[train] resume = '{mode}': not a checkpoint directory (no state.json)")
    if path is not None:
        check_same_run(resolved, path.parent.parent / "recipe.toml")
    return path


def check_same_run(resolved: dict[str, Any], saved: Path) -> None:
    """Refuse to resume the checkpoints of a run whose recipe (``saved``, its recipe.toml) differs
    from ``resolved`` in what the checkpoint depends on; epochs, evaluation and logging may change."""
    if not saved.is_file():
        return
    old = read_toml(saved)
    new = loads_toml(dumps_toml(resolved))  # the same TOML types as the saved file
    for section, keys in RUN_IDENTITY.items():
        a, b = old.get(section, {}), new.get(section, {})
        for key in keys or sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                raise UserError(
                    f"{saved.parent} holds checkpoints of another run: [{section}] {key} was {a.get(key)!r}, the "
                    f"recipe says {b.get(key)!r}; choose another train.output_dir, or delete its checkpoints"
                )


# --- tensors of named modules ------------------------------------------------------------------
def module_tensors(modules: Modules) -> dict[str, torch.Tensor]:
    """Every tensor of ``modules``' state dicts, keys prefixed by the module's name (none for "")."""
    return {(f"{prefix}.{key}" if prefix else key): value
            for prefix, module in modules.items() for key, value in module.state_dict().items()}


def split_tensors(tensors: dict[str, torch.Tensor], prefixes: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """The inverse of :func:`module_tensors`: tensors per prefix ("" gets every unprefixed key)."""
    parts: dict[str, dict[str, torch.Tensor]] = {p: {} for p in ["", *prefixes]}
    for key, value in tensors.items():
        prefix = next((p for p in prefixes if key.startswith(p + ".")), "")
        parts[prefix][key[len(prefix) + 1:] if prefix else key] = value
    return parts


def load_modules(modules: Modules, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Load ``tensors`` (as :func:`module_tensors` wrote them) into ``modules``, strictly."""
    prefixes = [p for p in modules if p]
    for prefix, part in split_tensors(tensors, prefixes).items():
        if prefix in modules:
            load_strict(modules[prefix], part, what)
        elif part:
            raise CheckpointError(f"{what} holds tensors this run has no module for: {sorted(part)[:3]}")


def state_digest(modules: Modules) -> str:
    """SHA-256 of every tensor of ``modules`` (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, tensor in module_tensors(modules).items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# --- RNG and optimizer state as weights_only-loadable values ------------------------------------
def rng_state() -> dict[str, Any]:
    """Every RNG that can influence training on this process, as weights_only-loadable values."""
    version, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [version, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((version, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


UNSAVED = "__ssl_kit_not_saved__"


def portable(obj: Any) -> Any:
    """``obj`` with everything ``torch.load(weights_only=True)`` cannot read replaced by a marker.

    Optimizer states are plain tensors and numbers, except for wrappers such as DeepSpeed's,
    which keep objects (a loss scaler) in theirs. Those are not saved; :func:`restore_unsaved`
    takes them from the freshly built optimizer on resume.
    """
    if type(obj) in (dict, collections.OrderedDict):
        return {k: portable(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(portable(v) for v in obj)
    if obj is None or isinstance(obj, torch.Tensor) or type(obj) in (str, int, float, bool, torch.Size):
        return obj  # exact types: an IntEnum is an int but not loadable with weights_only
    return {UNSAVED: type(obj).__qualname__}


def restore_unsaved(saved: Any, current: Any) -> Any:
    """Put the current values back where :func:`portable` left a marker."""
    if isinstance(saved, dict):
        if UNSAVED in saved:
            return current
        return {k: restore_unsaved(v, current.get(k) if isinstance(current, dict) else None) for k, v in saved.items()}
    if isinstance(saved, (list, tuple)):
        items = current if isinstance(current, (list, tuple)) and len(current) == len(saved) else [None] * len(saved)
        return type(saved)(restore_unsaved(v, c) for v, c in zip(saved, items))
    return saved


# --- save and load -----------------------------------------------------------------------------
def _torch_save(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    run_dir: Path,
    step: int,
    modules: Modules,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    *,
    keep: int,
    is_main: bool,
    rank: int,
    barrier: Callable[[], None],
) -> Path:
    """Write checkpoint ``step`` atomically (every process calls this; ``barrier`` syncs them)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    tmp = root / f".tmp-step_{step}"
    final = root / f"step_{step}"
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    barrier()
    try:
        _torch_save(rng_state(), tmp / f"rng_rank{rank}.pt")
        # Every process's digest of its own copy of the modules: replicas (EMA targets, queues, BN
        # statistics included) must be identical on every rank; ssl_kit.testing.compare_runs checks.
        (tmp / f"digest_rank{rank}.txt").write_text(state_digest(modules) + "\n")
        if is_main:
            save_tensors(module_tensors(modules), tmp / MODEL, metadata={})
            _fault_injection("model")
            _torch_save(portable(optimizer.state_dict()), tmp / "optimizer.pt")
            _torch_save(scheduler.state_dict(), tmp / "scheduler.pt")
            write_json(tmp / "state.json", {**state, "format_version": FORMAT_VERSION})
    except (OSError, RuntimeError, SafetensorError) as err:  # disk full, quota, a vanished folder
        shutil.rmtree(tmp, ignore_errors=True)
        free = shutil.disk_usage(root).free / 2**20 if root.is_dir() else 0.0
        raise CheckpointError(f"cannot write checkpoint step {step} into '{root}' ({free:.0f} MiB free): "
                              f"{one_line(err, 200)}; the previous checkpoints are intact") from None
    barrier()
    if is_main:
        fsync_dir(tmp)
        if final.exists():  # the same step saved again (e.g. the final save): replace it
            _remove(final, root)
        os.replace(tmp, final)
        fsync_dir(root)
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            _remove(old, root)
    barrier()
    return final


def _remove(path: Path, root: Path) -> None:
    """Rename out of the ``step_N`` namespace first, so a crash mid-delete never leaves a partial
    checkpoint that looks complete."""
    trash = root / f".trash-{path.name}-{os.getpid()}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def clean_partial(run_dir: Path) -> None:
    """Remove what a kill during a save or a delete left behind."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(entry, ignore_errors=True)


_saves_seen: dict[str, int] = {}


def _fault_injection(point: str) -> None:
    """Test hook: ``SSL_KIT_TEST_KILL_AT=save:<point>@<n>`` kills this process with SIGKILL at
    ``point`` of its n-th checkpoint save, so tests prove a kill mid-save never breaks resume."""
    target = os.environ.get("SSL_KIT_TEST_KILL_AT", "")
    if not target.startswith(f"save:{point}@"):
        return
    _saves_seen[point] = _saves_seen.get(point, 0) + 1
    if _saves_seen[point] == int(target.rsplit("@", 1)[1]):
        os.kill(os.getpid(), signal.SIGKILL)


def read_model(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of checkpoint ``path`` (its model.safetensors), with a one-line error."""
    try:
        return load_file(str(Path(path) / MODEL))
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"checkpoint '{path}' cannot be loaded: {MODEL}: {one_line(err)}") from None


def load_checkpoint(path: Path, modules: Modules, optimizer: Any, scheduler: Any, rank: int) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns its state.json dict."""
    path = Path(path)
    state = read_versioned_json(path, "state.json", "checkpoint")
    missing = [key for key in STATE_KEYS if not isinstance(state.get(key), int)]
    if missing:
        raise CheckpointError(f"checkpoint '{path}': state.json lacks the integer key(s) {', '.join(missing)}; "
                              "it is damaged: delete this checkpoint to resume from an older one")
    rng_file = path / f"rng_rank{rank}.pt"
    if not rng_file.exists() and (path / f"digest_rank{rank}.txt").exists():
        raise CheckpointError(f"checkpoint '{path}' lacks {rng_file.name} (process {rank}'s RNG state), which "
                              "its writer saved: it is damaged; delete this checkpoint to resume from an older one")
    try:
        load_modules(modules, read_model(path), f"checkpoint '{path}'")
        saved = torch.load(path / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(restore_unsaved(saved, optimizer.state_dict()))
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        if rng_file.exists():  # absent: the checkpoint was written by fewer processes than resume it
            set_rng_state(torch.load(rng_file, weights_only=True))
    except (OSError, RuntimeError, ValueError, SafetensorError, pickle.UnpicklingError) as err:
        raise CheckpointError(f"checkpoint '{path}' cannot be loaded: {one_line(err)}") from None
    return state

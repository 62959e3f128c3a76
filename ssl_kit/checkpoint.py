"""Exports (the evaluated encoder as safetensors plus a config.json) and resumable checkpoints.
Nothing here unpickles."""

from __future__ import annotations

import collections
import json
import pickle
import os
import platform
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"  # the encoder the evaluators see
METHOD_WEIGHTS = "method.safetensors"  # optional: every tensor of the method
CONFIG = "config.json"


def _versions() -> dict[str, str]:
    import ssl_kit

    return {"ssl_kit": ssl_kit.__version__, "torch": torch.__version__, "python": platform.python_version()}


def encoder_inputs(dataset: Any, spec: Any) -> dict[str, Any]:
    """What an exported encoder expects: channels, image size, and the normalisation training used."""
    return {"channels": getattr(dataset, "channels", 3),
            "image_size": spec.global_size or getattr(dataset, "image_size", None),
            "mean": list(getattr(dataset, "mean", []) or []) if spec.normalize else None,
            "std": list(getattr(dataset, "std", []) or []) if spec.normalize else None}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename (readers never see half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def save_weights(module: nn.Module, path: Path, contents: str) -> str:
    """``module``'s state dict as safetensors (written atomically); returns its sha256."""
    import hashlib

    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "format_version": str(FORMAT_VERSION), "contents": contents})
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def method_about(method: nn.Module) -> dict[str, str]:
    """What the model card says about the method: its module docstring's first line, and the
    ``paper`` (reference or URL) and ``citation`` (BibTeX) class attributes when it defines them."""
    import sys

    doc = (sys.modules[type(method).__module__].__doc__ or "").strip().splitlines()
    about = {"description": doc[0].strip() if doc else ""}
    for key in ("paper", "citation"):
        if isinstance(getattr(method, key, None), str):
            about[key] = getattr(method, key)
    return {k: v for k, v in about.items() if v}


def export_encoder(
    method: nn.Module, recipe: Any, out_dir: Path, results: dict[str, Any], inputs: dict[str, Any] | None = None,
    full_method: bool = False,
) -> Path:
    """Write ``model.safetensors`` (the module the evaluators see: ``eval.features``, by default
    ``method.encoder()``), ``config.json``, and with ``full_method`` ``method.safetensors``.

    ``inputs`` describes what the encoder expects (:func:`encoder_inputs`). config.json records the
    sha256 of each weight file; loading checks it. The model card is written by
    :func:`ssl_kit.hub.finalize_export`.
    """
    from ssl_kit.eval.features import feature_module

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    features = getattr(recipe.eval, "features", "encoder")
    encoder = feature_module(method, features)
    sha256 = {WEIGHTS: save_weights(encoder, out_dir / WEIGHTS, "ssl_kit encoder")}
    if full_method:
        sha256[METHOD_WEIGHTS] = save_weights(method, out_dir / METHOD_WEIGHTS, "ssl_kit method")
    elif (out_dir / METHOD_WEIGHTS).exists():
        (out_dir / METHOD_WEIGHTS).unlink()  # from an earlier export: it would not match this one
    resolved = recipe.resolved()
    num_features = getattr(encoder, "num_features", None) or getattr(method.backbone, "num_features", 0)
    if features not in ("encoder", "backbone"):  # backbone + head: the head's output width
        was_training, size = encoder.training, (inputs or {}).get("image_size") or 32
        probe = torch.zeros(2, (inputs or {}).get("channels") or 3, size, size)
        with torch.no_grad():
            num_features = encoder.eval()(probe.to(next(encoder.parameters()).device)).flatten(1).shape[1]
        encoder.train(was_training)
    config = {
        "format_version": FORMAT_VERSION,
        "library_name": "ssl_kit",
        "method": recipe.method_name,
        "recipe_name": recipe.name,
        "backbone": resolved["backbone"],
        "about": method_about(method),
        "features": features,
        # True when the weights are exactly a backbone's (then torchvision/timm load them directly)
        "backbone_only": set(encoder.state_dict()) == set(method.backbone.state_dict()),
        "num_features": int(num_features),
        "inputs": inputs or {},
        "data": resolved["data"],
        "views": {k: v for k, v in resolved["views"].items()},
        "recipe": resolved,
        "results": {k: v for k, v in results.items() if k in ("protocols", "results")},
        "versions": _versions(),
        "sha256": sha256,
    }
    write_json(out_dir / CONFIG, config)
    return out_dir


def read_versioned_json(folder: Path, name: str, what: str) -> dict[str, Any]:
    """``folder/name`` as a dict, with a clear error when it is unreadable or its
    ``format_version`` is not the one this ssl_kit reads."""
    from ssl_kit.errors import CheckpointError

    try:
        data = json.loads((folder / name).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{what} '{folder}': cannot read {name}: {err}") from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        found = data.get("format_version") if isinstance(data, dict) else None
        raise CheckpointError(
            f"{what} '{folder}' has format_version {found!r}; this ssl_kit reads format_version {FORMAT_VERSION}"
        )
    return data


def check_safetensors(path: Path, what: str) -> None:
    """A one-line error for a missing, truncated, tampered or non-safetensors file, before anything
    loads it: the header must parse and its tensors must exactly fill the file."""
    from safetensors import SafetensorError, safe_open

    from ssl_kit.errors import CheckpointError

    try:
        with safe_open(str(path), "pt") as f:
            for key in f.keys():  # every tensor's byte range must lie inside the file
                f.get_slice(key).get_shape()
        size = path.stat().st_size
        with open(path, "rb") as raw:
            header_len = int.from_bytes(raw.read(8), "little")
            header = json.loads(raw.read(header_len))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + header_len + end != size:
            raise ValueError(f"file is {size} bytes, its header describes {8 + header_len + end}")
    except FileNotFoundError:
        raise CheckpointError(f"{what}: {path.name} is missing") from None
    except (OSError, SafetensorError, ValueError, KeyError, TypeError) as err:
        detail = " ".join(str(err).split())[:300] or type(err).__name__
        raise CheckpointError(f"{what}: {path.name} cannot be read: it is truncated or corrupted "
                              f"(not a valid safetensors file): {detail}") from None


def verify_checksums(folder: Path, config: dict[str, Any], what: str) -> None:
    """Check the sha256 that config.json records for each weight file present."""
    import hashlib

    from ssl_kit.errors import CheckpointError

    for name, expected in (config.get("sha256") or {}).items():
        path = Path(folder) / name
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise CheckpointError(f"{what}: {name} does not match the sha256 recorded in {CONFIG}: "
                                  "the file was modified or damaged")


def load_strict(module: nn.Module, path: Path, what: str) -> nn.Module:
    """Check ``path`` (safetensors) and load it into ``module`` with ``strict=True``."""
    from safetensors.torch import load_file

    from ssl_kit.errors import CheckpointError

    check_safetensors(path, what)
    state = load_file(str(path))
    if "online_probe.linear.weight" in state and not hasattr(module, "online_probe"):
        # The trainer attaches the online probe to the method (it travels with checkpoints).
        from ssl_kit.eval.online import OnlineProbe

        classes, width = state["online_probe.linear.weight"].shape
        module.add_module("online_probe", OnlineProbe(width, classes))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).strip().splitlines()[1:])[:400]
        raise CheckpointError(f"{what}: {path.name} does not match the model: {detail}") from None
    return module


def rebuild_method(folder: Path, config: dict[str, Any]) -> nn.Module:
    """The method an export was made from, freshly built from the recipe in its config.json."""
    from ssl_kit.recipe import recipe_from_tree
    from ssl_kit.trainer import build_method

    recipe = recipe_from_tree(config["recipe"], str(Path(folder) / CONFIG), config.get("recipe_name", "export"))
    return build_method(recipe, (config.get("inputs") or {}).get("channels") or 3)


def load_encoder(path: str | Path) -> nn.Module:
    """The encoder of an export folder (model.safetensors + config.json), loaded strictly, in eval mode.

    The method is rebuilt from the recipe stored in config.json (its plugins must be installed);
    the weights are checked (file structure, recorded sha256) and loaded into the module the
    evaluators saw (``features`` in config.json) with ``strict=True``. Nothing unpickles.
    """
    from ssl_kit.eval.features import feature_module

    path = Path(path)
    what = f"export '{path}'"
    config = read_versioned_json(path, CONFIG, "export")
    check_safetensors(path / WEIGHTS, what)
    verify_checksums(path, config, what)
    encoder = feature_module(rebuild_method(path, config), config.get("features", "encoder"))
    return load_strict(encoder, path / WEIGHTS, what).eval()


def load_method(path: str | Path) -> nn.Module:
    """The whole method of an export that holds method.safetensors, loaded strictly, in eval mode."""
    from ssl_kit.errors import CheckpointError

    path = Path(path)
    what = f"export '{path}'"
    config = read_versioned_json(path, CONFIG, "export")
    if not (path / METHOD_WEIGHTS).exists():
        raise CheckpointError(
            f"{what} holds only the encoder ({WEIGHTS}), not the whole method: re-export with "
            "'python -m ssl_kit export RUN_DIR --full-method', or load the encoder with from_pretrained"
        )
    check_safetensors(path / METHOD_WEIGHTS, what)
    verify_checksums(path, config, what)
    return load_strict(rebuild_method(path, config), path / METHOD_WEIGHTS, what).eval()


# --- resumable training state ------------------------------------------------------------------
# checkpoints/step_N/
#   model.safetensors      every parameter and buffer of the method (EMA targets, queues too)
#   optimizer.pt           optimizer state_dict       (torch.load(weights_only=True))
#   scheduler.pt           lr scheduler state_dict    (torch.load(weights_only=True))
#   rng_rank{R}.pt         RNG states of process R    (torch.load(weights_only=True))
#   state.json             step, epoch position, counters, format version
# A checkpoint is written to checkpoints/.tmp-step_N and renamed into place, so a directory named
# step_N is always complete, even after a kill during the save.

CHECKPOINT_DIR = "checkpoints"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _torch_save(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def rng_state() -> dict[str, Any]:
    """Every RNG that can influence training on this process, as weights_only-loadable values."""
    import random

    import numpy as np

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
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    version, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((version, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


_UNSAVED = "__ssl_kit_not_saved__"


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
    return {_UNSAVED: type(obj).__qualname__}


def restore_unsaved(saved: Any, current: Any) -> Any:
    """Put the current values back where :func:`portable` left a marker."""
    if isinstance(saved, dict):
        if _UNSAVED in saved:
            return current
        return {k: restore_unsaved(v, current.get(k) if isinstance(current, dict) else None) for k, v in saved.items()}
    if isinstance(saved, (list, tuple)):
        items = current if isinstance(current, (list, tuple)) and len(current) == len(saved) else [None] * len(saved)
        return type(saved)(restore_unsaved(v, c) for v, c in zip(saved, items))
    return saved


def state_digest(module: nn.Module) -> str:
    """SHA-256 of every tensor of a module's state_dict (names, dtypes, shapes and bytes)."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


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


def save_checkpoint(
    run_dir: Path,
    step: int,
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    keep: int,
    is_main: bool,
    rank: int,
    barrier: Any,
) -> Path:
    """Write checkpoint ``step`` atomically (every process calls this; ``barrier`` syncs them)."""
    from safetensors.torch import save_file

    root = Path(run_dir) / CHECKPOINT_DIR
    tmp = root / f".tmp-step_{step}"
    final = root / f"step_{step}"
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        tmp.mkdir()
    barrier()
    _torch_save(rng_state(), tmp / f"rng_rank{rank}.pt")
    # Every process's digest of its own copy of the method: replicas (EMA targets, queues, BN
    # statistics included) must be identical on every rank; ssl_kit.testing.compare_runs checks.
    (tmp / f"digest_rank{rank}.txt").write_text(state_digest(method) + "\n")
    if is_main:
        tensors = {k: v.detach().cpu().contiguous() for k, v in method.state_dict().items()}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format_version": str(FORMAT_VERSION)})
        _fault_injection("model")
        _torch_save(portable(optimizer.state_dict()), tmp / "optimizer.pt")
        _torch_save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "format_version": FORMAT_VERSION}, indent=2))
    barrier()
    if is_main:
        for path in tmp.iterdir():
            if path.suffix == ".safetensors":
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again (e.g. the final save): replace it
            _remove(final, root)
        os.replace(tmp, final)
        _fsync_dir(root)
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            _remove(old, root)
    barrier()
    return final


def _remove(path: Path, root: Path) -> None:
    """Rename out of the ``step_N`` namespace first, so a crash mid-delete never leaves a partial
    checkpoint that looks complete."""
    import shutil

    trash = root / f".trash-{path.name}-{os.getpid()}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def clean_partial(run_dir: Path) -> None:
    """Remove what a kill during a save or a delete left behind."""
    import shutil

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
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def load_checkpoint(path: Path, method: nn.Module, optimizer: Any, scheduler: Any, rank: int) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns its state.json dict.

    Nothing is unpickled: weights come from safetensors, everything else through
    ``torch.load(weights_only=True)``.
    """
    from safetensors.torch import load_file

    from ssl_kit.errors import CheckpointError

    path = Path(path)
    state = read_versioned_json(path, "state.json", "checkpoint")
    from safetensors import SafetensorError

    try:
        tensors = load_file(str(path / "model.safetensors"))
        method.load_state_dict(tensors, strict=True)
        saved = torch.load(path / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(restore_unsaved(saved, optimizer.state_dict()))
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        rng_file = path / f"rng_rank{rank}.pt"
        if rng_file.exists():
            set_rng_state(torch.load(rng_file, weights_only=True))
    except (OSError, RuntimeError, ValueError, SafetensorError, pickle.UnpicklingError) as err:
        detail = " ".join(str(err).strip().split())[:400] or type(err).__name__
        raise CheckpointError(f"checkpoint '{path}' cannot be loaded: {detail}") from None
    return state

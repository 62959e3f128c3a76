"""Loading exports (and other weights files) without unpickling anything.

:func:`load_encoder` and :func:`load_method` read an export folder (:mod:`ssl_kit.export`): the
method is rebuilt from the recipe in its config.json by the build step (its plugins must be
installed), the weight files are checked (structure, recorded sha256) and loaded with
``strict=True``. :func:`load_legacy_weights` reads third-party weight files, refusing pickles.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_kit.build import build_method
from ssl_kit.checkpoint import split_tensors
from ssl_kit.errors import CheckpointError, one_line
from ssl_kit.eval.features import feature_module
from ssl_kit.eval.online import PREFIX
from ssl_kit.export import CONFIG, METHOD_WEIGHTS, WEIGHTS, read_config
from ssl_kit.weights import load_strict, read_tensors, sha256_file
from ssl_kit.methods.base import Method
from ssl_kit.recipe import recipe_from_tree
from ssl_kit.spec import DatasetInfo

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def verify_checksums(folder: Path, config: dict[str, Any], what: str) -> None:
    """Check the sha256 that config.json records for each weight file present."""
    for name, expected in (config.get("sha256") or {}).items():
        path = Path(folder) / name
        if path.exists() and sha256_file(path) != expected:
            raise CheckpointError(f"{what}: {name} does not match the sha256 recorded in {CONFIG}: "
                                  "the file was modified or damaged")


def rebuild_method(folder: Path, config: dict[str, Any]) -> Method:
    """The method an export was made from, freshly built from the recipe in its config.json."""
    recipe = recipe_from_tree(config["recipe"], str(Path(folder) / CONFIG), config.get("recipe_name", "export"))
    inputs = config.get("inputs") or {}
    info = DatasetInfo(channels=inputs.get("channels") or 3, image_size=inputs.get("image_size"))
    return build_method(recipe, info)


def _load(path: str | os.PathLike, weights: str, module_of: Any) -> nn.Module:
    path = Path(path)
    what = f"export '{path}'"
    config = read_config(path)
    # method.safetensors of ssl_kit <= 0.1 also held the online probe (then part of the method)
    tensors = split_tensors(read_tensors(path / weights, what), [PREFIX])[""]
    verify_checksums(path, config, what)
    return load_strict(module_of(rebuild_method(path, config), config), tensors, f"{what}: {weights}").eval()


def load_encoder(path: str | os.PathLike) -> nn.Module:
    """The encoder of an export folder (model.safetensors + config.json), loaded strictly, in eval
    mode: the module the evaluators saw (``features`` in config.json)."""
    return _load(path, WEIGHTS, lambda method, config: feature_module(method, config.get("features", "encoder")))


def load_method(path: str | os.PathLike) -> Method:
    """The whole method of an export that holds method.safetensors, loaded strictly, in eval mode."""
    if not (Path(path) / METHOD_WEIGHTS).exists():
        raise CheckpointError(
            f"export '{path}' holds only the encoder ({WEIGHTS}), not the whole method: re-export with "
            "'python -m ssl_kit export RUN_DIR --full-method', or load the encoder with from_pretrained"
        )
    return _load(path, METHOD_WEIGHTS, lambda method, config: method)


def load_legacy_weights(path: str | os.PathLike, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from a weights file. ``.safetensors`` always loads; pickle-based files
    (.bin/.pt/.pth/.ckpt) are refused unless ``allow_pickle=True``, and then read only with
    ``torch.load(weights_only=True)`` (tensors and plain containers; no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file '{path}' does not exist")
    if path.suffix == ".safetensors":
        return read_tensors(path, f"weights file '{path}'")
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        raise CheckpointError(f"'{path}': unknown weights format '{path.suffix}' (expected .safetensors, or "
                              f"{'/'.join(PICKLE_SUFFIXES)} with allow_pickle=True)")
    if not allow_pickle:
        raise CheckpointError(
            f"'{path}' is a pickle-based file, which can run arbitrary code when loaded; refusing it. "
            "Prefer a .safetensors file; if you trust its source, pass allow_pickle=True "
            "(it is then read with torch.load(weights_only=True))"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"'{path}' cannot be read with torch.load(weights_only=True) (it holds objects other than tensors "
            f"and plain containers, or is damaged); it was not unpickled: {one_line(err)}"
        ) from None
    if isinstance(state, dict) and set(state) == {"state_dict"} and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"'{path}' holds a {type(state).__name__}, not a state dict")
    return state

"""Tensors on disk: safetensors files written atomically, checked before anything loads them,
and strict loading into modules. Nothing here unpickles."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ssl_kit.errors import CheckpointError
from ssl_kit.io import FORMAT_VERSION


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> Path:
    """Write ``tensors`` (moved to the CPU, contiguous) as safetensors, atomically; returns the path
    (exports record its :func:`sha256_file`; checkpoints need not read it back)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={"format_version": str(FORMAT_VERSION), **metadata})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def check_safetensors(path: Path, what: str) -> None:
    """A one-line error for a missing, truncated, tampered or non-safetensors file, before anything
    loads it: the header must parse and its tensors must exactly fill the file."""
    path = Path(path)
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


def read_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (checked first with :func:`check_safetensors`)."""
    check_safetensors(path, what)
    return load_file(str(path))


def load_strict(module: nn.Module, tensors: dict[str, torch.Tensor], what: str) -> nn.Module:
    """``module.load_state_dict(tensors, strict=True)`` with a one-line error naming ``what``."""
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).strip().splitlines()[1:])[:400]
        raise CheckpointError(f"{what} does not match the model: {detail}") from None
    return module

"""Exports: the evaluated encoder as safetensors plus a config.json. Nothing here unpickles."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    import ssl_kit

    return {"ssl_kit": ssl_kit.__version__, "torch": torch.__version__, "python": platform.python_version()}


def export_encoder(method: nn.Module, recipe: Any, out_dir: Path, results: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` (the encoder the method evaluates) and ``config.json``."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = method.encoder() if hasattr(method, "encoder") else method.backbone
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    tmp = out_dir / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt", "format_version": str(FORMAT_VERSION)})
    os.replace(tmp, out_dir / "model.safetensors")
    resolved = recipe.resolved()
    config = {
        "format_version": FORMAT_VERSION,
        "library_name": "ssl_kit",
        "method": recipe.method_name,
        "backbone": resolved["backbone"],
        "num_features": int(getattr(encoder, "num_features", 0)),
        "data": resolved["data"],
        "views": {k: v for k, v in resolved["views"].items()},
        "recipe": resolved,
        "results": {k: v for k, v in results.items() if k in ("protocols", "results")},
        "versions": _versions(),
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out_dir

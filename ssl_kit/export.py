"""Exports: the evaluated encoder as safetensors, a config.json, and a model card.

Export folder (``runs/<name>/export``)::

    model.safetensors    the evaluated encoder (strictly loadable, nothing unpickles)
    config.json          ssl_kit keys (recipe, inputs, results, sha256 of the weights) and, for timm
                         backbones, timm's keys (architecture, num_classes, num_features,
                         global_pool, model_args, pretrained_cfg), so
                         ``timm.create_model("hf-hub:<repo>")`` reads it too
    README.md            the model card (ssl_kit/templates/model_card.md: front matter, results with
                         protocols, loading code that runs)
    method.safetensors   optional: every tensor of the whole method (projector, predictor, EMA)

:mod:`ssl_kit.loading` reads these folders back; :mod:`ssl_kit.hub` uploads them.
"""

from __future__ import annotations

import json
import platform
import re
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData

from ssl_kit.errors import CheckpointError
from ssl_kit.eval.features import feature_module
from ssl_kit.eval.report import results_table
from ssl_kit.io import FORMAT_VERSION, dumps_toml, read_versioned_json, write_json, write_text_atomic
from ssl_kit.methods.base import Method
from ssl_kit.recipe import Recipe
from ssl_kit.spec import DatasetInfo, ViewSpec
from ssl_kit.version import __version__
from ssl_kit.weights import save_tensors, sha256_file

WEIGHTS = "model.safetensors"  # the encoder the evaluators see
METHOD_WEIGHTS = "method.safetensors"  # optional: every tensor of the method
CONFIG = "config.json"
CARD = "README.md"
TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50")
TIMM_CONFIG_KEYS = ("architecture", "num_classes", "num_features", "global_pool", "model_args", "pretrained_cfg")
MODEL_LINE = re.compile(r'^MODEL = "[^"\n]*".*$', re.MULTILINE)


def read_config(export_dir: str | Path) -> dict[str, Any]:
    """An export's config.json (format version checked)."""
    return read_versioned_json(Path(export_dir), CONFIG, "export")


def encoder_inputs(info: DatasetInfo, views: ViewSpec) -> dict[str, Any]:
    """What an exported encoder expects: channels, image size, and the normalisation training used."""
    mean, std = info.normalisation(views.normalize)
    return {"channels": info.channels, "image_size": views.sizes(info.image_size)[0],
            "mean": list(mean) if mean is not None else None, "std": list(std) if std is not None else None}


def method_about(method: Method) -> dict[str, str]:
    """What the model card says about the method: its :meth:`~ssl_kit.Method.summary`, and the
    ``paper`` (reference or URL) and ``citation`` (BibTeX) class attributes."""
    about = {"description": method.summary(), "paper": method.paper, "citation": method.citation}
    return {k: v for k, v in about.items() if isinstance(v, str) and v}


def timm_keys(config: dict[str, Any]) -> dict[str, Any] | None:
    """timm's hub keys for an export of a timm backbone (None for other backbones), from timm's
    public ``save_for_hf`` on the same architecture with the export's input size, mean and std."""
    backbone = config.get("backbone") or {}
    if backbone.get("name") != "timm" or not config.get("backbone_only", True):
        return None  # timm cannot rebuild a backbone followed by a head (eval.features)
    import timm  # heavy: only exports of timm backbones need it

    inputs = config.get("inputs") or {}
    channels = backbone.get("in_channels") or inputs.get("channels") or 3
    model_args = {"in_chans": channels, **(backbone.get("kwargs") or {})}
    model = timm.create_model(backbone["model"], pretrained=False, num_classes=0, **model_args)
    data_config: dict[str, Any] = {}
    if inputs.get("image_size"):
        data_config["input_size"] = (channels, inputs["image_size"], inputs["image_size"])
    if inputs.get("mean") and inputs.get("std"):
        data_config.update(mean=tuple(inputs["mean"]), std=tuple(inputs["std"]))
    with tempfile.TemporaryDirectory() as tmp:
        timm.models.save_for_hf(model, tmp, model_args=model_args, safe_serialization=True,
                                data_config=data_config or None)
        hf_config = json.loads((Path(tmp) / CONFIG).read_text())
    if hf_config.get("num_features") != config.get("num_features"):
        raise CheckpointError(f"timm reports {hf_config.get('num_features')} features, the export "
                              f"{config.get('num_features')}")
    cfg = hf_config.get("pretrained_cfg", {})
    for key in ("tag", "license", "origin_url", "paper_ids", "paper_name", "notes", "description", "test_crop_pct",
                "test_input_size", "hf_hub_id", "hf_hub_filename", "url", "file"):
        cfg.pop(key, None)  # these describe timm's own weights, not this export
    cfg["crop_pct"] = 1.0  # ssl_kit evaluates on the image resized to input_size, without cropping
    return {k: hf_config[k] for k in TIMM_CONFIG_KEYS if k in hf_config}


def export_encoder(
    method: Method, recipe: Recipe, out_dir: Path, results: dict[str, Any], inputs: dict[str, Any],
    full_method: bool = False,
) -> Path:
    """Write ``model.safetensors`` (the module the evaluators see: ``eval.features``, by default
    ``method.encoder()``), ``config.json`` (with timm's keys for a timm backbone), and with
    ``full_method`` ``method.safetensors``. config.json records the sha256 of each weight file;
    loading checks it. The model card is :func:`write_model_card`'s (after the final results)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    features = recipe.eval.features
    encoder = feature_module(method, features)
    sha256 = {WEIGHTS: sha256_file(save_tensors(encoder.state_dict(), out_dir / WEIGHTS,
                                                {"format": "pt", "contents": "ssl_kit encoder"}))}
    if full_method:
        sha256[METHOD_WEIGHTS] = sha256_file(save_tensors(method.state_dict(), out_dir / METHOD_WEIGHTS,
                                                          {"format": "pt", "contents": "ssl_kit method"}))
    elif (out_dir / METHOD_WEIGHTS).exists():
        (out_dir / METHOD_WEIGHTS).unlink()  # from an earlier export: it would not match this one
    resolved = recipe.resolved()
    num_features = getattr(encoder, "num_features", None) or method.backbone.num_features
    if features not in ("encoder", "backbone"):  # backbone + head: the head's output width
        was_training, size = encoder.training, inputs.get("image_size") or 32
        probe = torch.zeros(2, inputs.get("channels") or 3, size, size)
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
        "inputs": inputs,
        "data": resolved["data"],
        "views": resolved["views"],
        "recipe": resolved,
        "results": {k: v for k, v in results.items() if k in ("protocols", "results")},
        "versions": {"ssl_kit": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "sha256": sha256,
    }
    config.update(timm_keys(config) or {})
    write_json(out_dir / CONFIG, config)
    return out_dir


# --- model card --------------------------------------------------------------------------------
def _backbone_text(backbone: dict[str, Any]) -> str:
    name = backbone.get("name", "?")
    if name == "timm":
        return f"timm `{backbone.get('model')}`"
    if name in TORCHVISION_RESNETS:
        stem = (f", CIFAR stem (3x3 stride-1 conv1, padding {backbone.get('stem_padding', 1)}, no max-pool)"
                if backbone.get("cifar_stem") else "")
        return f"torchvision `{name}`{stem}"
    return f"`{name}`"


def _model_line(ref: str) -> str:
    return f'MODEL = "{ref}"  # this folder, or the Hub repo id'


def ssl_kit_snippet(ref: str, channels: int, size: int, features: Any) -> str:
    return "\n".join([_model_line(ref), "import torch", "import ssl_kit", "",
                      "encoder = ssl_kit.from_pretrained(MODEL)  # strict load, eval mode",
                      "with torch.no_grad():",
                      f"    features = encoder(torch.rand(2, {channels}, {size}, {size}))  # (batch, {features})"])


WEIGHTS_PATH = ('import os\n'
                'from safetensors.torch import load_file\n\n'
                'if os.path.isdir(MODEL):\n'
                '    weights = os.path.join(MODEL, "model.safetensors")\n'
                'else:\n'
                '    from huggingface_hub import hf_hub_download\n\n'
                '    weights = hf_hub_download(MODEL, "model.safetensors")\n')


def torchvision_snippet(ref: str, backbone: dict[str, Any], channels: int) -> str | None:
    """Loading code with torchvision only (None when the backbone is not a torchvision ResNet)."""
    name = backbone.get("name")
    if name not in TORCHVISION_RESNETS:
        return None
    lines = [_model_line(ref), "import torch", "import torchvision", WEIGHTS_PATH, f"model = torchvision.models.{name}()"]
    channels = backbone.get("in_channels") or channels
    if backbone.get("cifar_stem"):
        pad = backbone.get("stem_padding", 1)
        lines += [f"model.conv1 = torch.nn.Conv2d({channels}, 64, kernel_size=3, stride=1, padding={pad}, bias=False)",
                  "model.maxpool = torch.nn.Identity()"]
    elif channels != 3:
        lines.append(f"model.conv1 = torch.nn.Conv2d({channels}, 64, kernel_size=7, stride=2, padding=3, bias=False)")
    lines += ["model.fc = torch.nn.Identity()  # the export is the encoder: no classifier",
              "model.load_state_dict(load_file(weights), strict=True)",
              "model.eval()"]
    return "\n".join(lines)


def timm_snippet(ref: str) -> str:
    return "\n".join([_model_line(ref), "import os", "import timm", "",
                      'source = ("local-dir:" if os.path.isdir(MODEL) else "hf-hub:") + MODEL',
                      "model = timm.create_model(source, pretrained=True, num_classes=0).eval()  # strict load"])


def code_blocks(card_text: str) -> list[str]:
    """The ```python blocks of a model card (the tests execute them)."""
    return re.findall(r"```python\n(.*?)```", card_text, flags=re.DOTALL)


def render_model_card(config: dict[str, Any], results: dict[str, Any], recipe_resolved: dict[str, Any], ref: str,
                      has_method_weights: bool) -> str:
    """The model card text (a Hugging Face card: YAML front matter, then markdown) of an export
    whose config.json is ``config``. Its loading snippets start with ``MODEL = "<ref>"``."""
    method = recipe_resolved.get("method", {}).get("name") or config.get("method", "?")
    backbone = recipe_resolved.get("backbone") or config.get("backbone") or {}
    data_cfg, train_cfg = recipe_resolved.get("data") or {}, recipe_resolved.get("train") or {}
    inputs, data, about = config.get("inputs") or {}, results.get("data") or {}, config.get("about") or {}
    channels, size = inputs.get("channels") or 3, inputs.get("image_size") or 32
    schedule = f"{train_cfg.get('epochs', '?')} epoch(s)"
    if train_cfg.get("max_steps") is not None:
        schedule += f", capped at max_steps = {train_cfg['max_steps']}"
    if results.get("steps") is not None:
        schedule += f"; {results['steps']} optimizer steps run"
    plain = config.get("backbone_only", True)  # weights of a backbone alone: torchvision/timm load them
    features = config.get("features", "encoder")
    tags = ["ssl_kit", "self-supervised", str(method)] + (["timm"] if backbone.get("name") == "timm" else [])
    card_data = ModelCardData(library_name="ssl_kit", license="mit", tags=tags, pipeline_tag="image-feature-extraction")
    template = resources.files("ssl_kit").joinpath("templates", "model_card.md")
    card = ModelCard.from_template(
        card_data,
        template_path=str(template),
        title=f"{method} {_backbone_text(backbone).replace('`', '')} on {data_cfg.get('name', '?')}",
        method=method,
        about=about,
        backbone=_backbone_text(backbone),
        num_features=config.get("num_features", "?"),
        dataset=data_cfg.get("name", "?"),
        train_split=data.get("train", data_cfg.get("train_split", "not recorded")),
        test_split=data.get("test", "not recorded"),
        schedule=schedule,
        inputs=f"{channels} channel(s), {inputs.get('image_size', '?')} px"
        + (f", normalised with mean {inputs['mean']} and std {inputs['std']}" if inputs.get("mean") else ", not normalised"),
        results_intro="Frozen features of this encoder, evaluated as each protocol says"
        + ("." if features in ("encoder", "backbone") else
           f" (the backbone followed by the method's `{features}`, as `[eval] features` chose; these are the exported weights)."),
        results_table=results_table(results),
        ssl_kit_snippet=ssl_kit_snippet(ref, channels, size, config.get("num_features", "D")),
        torchvision_snippet=torchvision_snippet(ref, backbone, channels) if plain else None,
        torchvision_note="The weights are a torchvision ResNet state dict without `fc`; set `fc` to `Identity` and they "
        "load with `strict=True`" + (". With the CIFAR stem the stock model changes in three lines: swap `conv1` (3x3, "
                                     "stride 1), drop `maxpool`, and `fc` as said." if backbone.get("cifar_stem") else "."),
        timm_snippet=timm_snippet(ref) if plain and backbone.get("name") == "timm" and "architecture" in config else None,
        recipe_toml=dumps_toml(recipe_resolved).rstrip(),
        files=[f"`{WEIGHTS}`: the encoder (safetensors)",
               f"`{CONFIG}`: recipe, inputs, results and versions" + (" (and timm's keys)" if "architecture" in config else ""),
               *([f"`{METHOD_WEIGHTS}`: the whole method (load with `ssl_kit.load_method`)"] if has_method_weights else []),
               f"versions: {', '.join(f'{k} {v}' for k, v in (config.get('versions') or {}).items())}"],
    )
    return str(card) + "\n"


def write_model_card(export_dir: str | Path, results: dict[str, Any], recipe_resolved: dict[str, Any]) -> Path:
    """Write ``README.md`` into an export folder; its snippets name the folder's absolute path."""
    export_dir = Path(export_dir)
    text = render_model_card(read_config(export_dir), results, recipe_resolved, str(export_dir.resolve()),
                             (export_dir / METHOD_WEIGHTS).exists())
    write_text_atomic(export_dir / CARD, text)
    return export_dir / CARD


def card_for_repo(export_dir: Path, repo_id: str) -> bytes:
    """The export's model card as uploaded to ``repo_id``: its snippets name the repo (a card is
    written from config.json when the folder has none)."""
    card = export_dir / CARD
    if card.exists():
        text = card.read_text()
    else:
        config = read_config(export_dir)
        results_file = export_dir.parent / "results.json"
        results = json.loads(results_file.read_text()) if results_file.exists() else dict(config.get("results") or {})
        text = render_model_card(config, results, config.get("recipe") or {}, repo_id, (export_dir / METHOD_WEIGHTS).exists())
    return MODEL_LINE.sub(_model_line(repo_id), text).encode()

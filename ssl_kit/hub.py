"""Export, load and share trained encoders: model cards, the Hugging Face Hub, loading without ssl_kit.

Export folder (``runs/<name>/export``)::

    model.safetensors    the evaluated encoder (strictly loadable, nothing unpickles)
    config.json          ssl_kit keys (recipe, inputs, results, sha256 of the weights) and, for timm
                         backbones, timm's keys (architecture, num_classes, num_features,
                         global_pool, model_args, pretrained_cfg), so
                         ``timm.create_model("hf-hub:<repo>")`` reads it too
    README.md            the model card (front matter, results with protocols, loading code)
    method.safetensors   optional: every tensor of the whole method (projector, predictor, EMA)

The weight files and config.json are written and read by :mod:`ssl_kit.checkpoint`
(``export_encoder``, ``load_encoder``, ``load_method``); this module adds what the Hub needs on
top: the model card and timm's keys (:func:`finalize_export`), downloading
(:func:`from_pretrained`, :func:`load_method`), uploading (:func:`push_to_hub`), and refusing
pickles (:func:`load_legacy_weights`). CLI helpers :func:`cmd_export`, :func:`cmd_push`. Nothing
here prints, logs or writes a token.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_kit.checkpoint import CONFIG, METHOD_WEIGHTS, WEIGHTS, check_safetensors, read_versioned_json, write_json
from ssl_kit.errors import CheckpointError, UserError

CARD = "README.md"
HUB_FILES = (CONFIG, WEIGHTS, CARD)  # what from_pretrained downloads from a Hub repo
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50")
TIMM_CONFIG_KEYS = ("architecture", "num_classes", "num_features", "global_pool", "model_args", "pretrained_cfg")
_MODEL_LINE = re.compile(r'^MODEL = "[^"\n]*".*$', re.MULTILINE)


# --- reading exports ---------------------------------------------------------------------------
def _read_config(export_dir: str | os.PathLike) -> dict[str, Any]:
    return read_versioned_json(Path(export_dir), CONFIG, "export")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:400] or type(err).__name__


def _looks_like_repo_id(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text)) and ".." not in text


def _resolve(path_or_repo_id: str | os.PathLike, revision: str | None, files: tuple[str, ...]) -> Path:
    """A local export folder, or the snapshot of a Hub repo holding ``files`` (downloaded)."""
    local = Path(path_or_repo_id)
    if local.is_dir():
        return local
    text = str(path_or_repo_id)
    if local.exists():
        raise CheckpointError(f"'{text}' is a file; pass the export folder that holds {CONFIG} and {WEIGHTS}")
    if not _looks_like_repo_id(text):
        raise CheckpointError(f"'{text}' is neither an export folder nor a Hub repo id ('user/name')")
    import huggingface_hub

    try:
        folder = huggingface_hub.snapshot_download(text, revision=revision, allow_patterns=list(files))
    except Exception as err:  # network, 404, offline mode, gated repo: one line for the user
        raise CheckpointError(f"cannot download '{text}' from the Hugging Face Hub: {type(err).__name__}: "
                              f"{_one_line(err)}") from None
    return Path(folder)


# --- loading -----------------------------------------------------------------------------------
def from_pretrained(path_or_repo_id: str | os.PathLike, revision: str | None = None) -> nn.Module:
    """The encoder of an export folder or a Hub repo id, loaded strictly, in eval mode.

    A Hub repo is fetched with ``huggingface_hub.snapshot_download`` (config.json, model.safetensors
    and README.md only). The returned module has ``push_to_hub(repo_id, ...)``, which uploads its
    current weights with the export's config and model card.
    """
    from ssl_kit.checkpoint import load_encoder

    folder = _resolve(path_or_repo_id, revision, HUB_FILES)
    encoder = load_encoder(folder)
    _attach_push(encoder, folder)
    return encoder


def load_method(path_or_repo_id: str | os.PathLike, revision: str | None = None) -> nn.Module:
    """The whole method (backbone, projector, predictor, EMA target...) of an export that holds
    ``method.safetensors`` (``export --full-method``, or ``[hub] full_method = true``), rebuilt from
    config.json's recipe and loaded strictly, in eval mode."""
    from ssl_kit.checkpoint import load_method as load

    return load(_resolve(path_or_repo_id, revision, (*HUB_FILES, METHOD_WEIGHTS)))


def load_legacy_weights(path: str | os.PathLike, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from a weights file. ``.safetensors`` always loads; pickle-based files
    (.bin/.pt/.pth/.ckpt) are refused unless ``allow_pickle=True``, and then read only with
    ``torch.load(weights_only=True)`` (tensors and plain containers; no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file '{path}' does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        check_safetensors(path, f"weights file '{path}'")
        return load_file(str(path))
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
            f"and plain containers, or is damaged); it was not unpickled: {_one_line(err)}"
        ) from None
    if isinstance(state, dict) and set(state) == {"state_dict"} and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"'{path}' holds a {type(state).__name__}, not a state dict")
    return state


# --- timm's keys -------------------------------------------------------------------------------
def timm_config(export_dir: str | os.PathLike) -> dict[str, Any] | None:
    """timm's hub keys for an export of a timm backbone (None for other backbones), built by timm's
    own ``save_config_for_hf`` on the same architecture, with the export's input size, mean and std."""
    export_dir = Path(export_dir)
    config = _read_config(export_dir)
    backbone = config.get("backbone") or {}
    if backbone.get("name") != "timm" or not config.get("backbone_only", True):
        return None  # timm cannot rebuild a backbone followed by a head (eval.features)
    import timm
    from timm.models._hub import save_config_for_hf

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
        save_config_for_hf(model, str(Path(tmp) / CONFIG), model_args=model_args, data_config=data_config or None)
        hf_config = json.loads((Path(tmp) / CONFIG).read_text())
    if hf_config.get("num_features") != config.get("num_features"):
        raise CheckpointError(f"export '{export_dir}': timm reports {hf_config.get('num_features')} features, "
                              f"the export {config.get('num_features')}")
    cfg = hf_config.get("pretrained_cfg", {})
    for key in ("tag", "license", "origin_url", "paper_ids", "paper_name", "notes", "description", "test_crop_pct",
                "test_input_size", "hf_hub_id", "hf_hub_filename", "url", "file"):
        cfg.pop(key, None)  # these describe timm's own weights, not this export
    cfg["crop_pct"] = 1.0  # ssl_kit evaluates on the image resized to input_size, without cropping
    return {k: hf_config[k] for k in TIMM_CONFIG_KEYS if k in hf_config}


def timm_hub_files(export_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Merge timm's keys into the export's config.json (ssl_kit ignores them), so the same folder
    loads with ``timm.create_model("hf-hub:<repo>", pretrained=True, num_classes=0)`` or
    ``"local-dir:<folder>"``. Returns the merged keys, or None (and changes nothing) when the
    backbone is not a timm model."""
    keys = timm_config(export_dir)
    if keys is None:
        return None
    config = _read_config(export_dir)
    config.update(keys)
    write_json(Path(export_dir) / CONFIG, config)
    return keys


# --- model card --------------------------------------------------------------------------------
def _protocol_of(metric: str, protocols: dict[str, str]) -> str:
    for name in sorted(protocols, key=len, reverse=True):
        if metric == name or metric.startswith(name + "_"):
            return protocols[name]
    if len(protocols) == 1:
        return next(iter(protocols.values()))
    return "protocol not recorded"


def results_table(results: dict[str, Any]) -> str:
    """Markdown: one line per number, naming its features, metric, and evaluation protocol."""
    from ssl_kit.eval.report import ROW_NAMES

    rows = results.get("results") or {}
    protocols = results.get("protocols") or {}
    if not rows:
        return f"No evaluation results ({results.get('note', 'evaluation disabled')})."
    lines = ["| features | metric | value | protocol |", "|---|---|---|---|"]
    for row, metrics in rows.items():
        for key, value in metrics.items():
            shown = f"{value:.2f}" if isinstance(value, (int, float)) else str(value)
            lines.append(f"| {ROW_NAMES.get(row, row)} | `{key}` | {shown} | {_protocol_of(key, protocols)} |")
    return "\n".join(lines)


def _backbone_text(backbone: dict[str, Any]) -> str:
    name = backbone.get("name", "?")
    if name == "timm":
        return f"timm `{backbone.get('model')}`"
    if name in TORCHVISION_RESNETS:
        stem = (f", CIFAR stem (3x3 stride-1 conv1, padding {backbone.get('stem_padding', 1)}, no max-pool)"
                if backbone.get("cifar_stem") else "")
        return f"torchvision `{name}`{stem}"
    return f"`{name}`"


def _snippet_ssl_kit(ref: str, channels: int, size: int, features: Any) -> str:
    return (f'MODEL = "{ref}"  # this folder, or the Hub repo id\n'
            "import torch\n"
            "import ssl_kit\n\n"
            "encoder = ssl_kit.from_pretrained(MODEL)  # strict load, eval mode\n"
            "with torch.no_grad():\n"
            f"    features = encoder(torch.rand(2, {channels}, {size}, {size}))  # (batch, {features})\n")


_WEIGHTS_PATH = ('import os\n'
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
    lines = [f'MODEL = "{ref}"  # this folder, or the Hub repo id', "import torch", "import torchvision",
             _WEIGHTS_PATH, f"model = torchvision.models.{name}()"]
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
    return "\n".join(lines) + "\n"


def timm_snippet(ref: str) -> str:
    return (f'MODEL = "{ref}"  # this folder, or the Hub repo id\n'
            "import os\n"
            "import timm\n\n"
            'source = ("local-dir:" if os.path.isdir(MODEL) else "hf-hub:") + MODEL\n'
            "model = timm.create_model(source, pretrained=True, num_classes=0).eval()  # strict load\n")


def code_blocks(card_text: str) -> list[str]:
    """The ```python blocks of a model card (the tests execute them)."""
    return re.findall(r"```python\n(.*?)```", card_text, flags=re.DOTALL)


def write_model_card(
    export_dir: str | os.PathLike, results: dict[str, Any], recipe_resolved: dict[str, Any],
    repo_id: str | None = None,
) -> Path:
    """Write ``README.md`` (a Hugging Face model card) into the export folder.

    The loading snippets start with ``MODEL = "<ref>"``: the export folder's absolute path, or
    ``repo_id`` when given (:func:`push_to_hub` rewrites that line for the repo it uploads to), so
    every snippet runs as is.
    """
    from huggingface_hub import ModelCardData

    from ssl_kit.recipe import dumps_toml

    export_dir = Path(export_dir)
    config = _read_config(export_dir)
    method = recipe_resolved.get("method", {}).get("name") or config.get("method", "?")
    backbone = recipe_resolved.get("backbone") or config.get("backbone") or {}
    data_cfg = recipe_resolved.get("data") or {}
    inputs = config.get("inputs") or {}
    channels = inputs.get("channels") or 3
    size = inputs.get("image_size") or 32
    ref = repo_id or str(export_dir.resolve())
    train_cfg = recipe_resolved.get("train") or {}
    data = results.get("data") or {}
    about = config.get("about") or {}
    tags = ["ssl_kit", "self-supervised", str(method)]
    if backbone.get("name") == "timm":
        tags.append("timm")
    card_data = ModelCardData(library_name="ssl_kit", license="mit", tags=tags,
                              datasets=None, pipeline_tag="image-feature-extraction")
    title = f"{method} {_backbone_text(backbone).replace('`', '')} on {data_cfg.get('name', '?')}"
    steps = results.get("steps")
    schedule = f"{train_cfg.get('epochs', '?')} epoch(s)"
    if train_cfg.get("max_steps") is not None:
        schedule += f", capped at max_steps = {train_cfg['max_steps']}"
    if steps is not None:
        schedule += f"; {steps} optimizer steps run"
    parts = [
        "---", card_data.to_yaml(), "---", "",
        f"# {title}", "",
        "A self-supervised image encoder trained with [ssl_kit](https://pypi.org/project/ssl-kit/). "
        "It maps images to feature vectors; it has no classifier.", "",
        f"- **Method:** {method}" + (f": {about['description']}" if about.get("description") else ""),
        *([f"- **Paper:** {about['paper']}"] if about.get("paper") else []),
        f"- **Backbone:** {_backbone_text(backbone)}, {config.get('num_features', '?')} features",
        f"- **Dataset:** `{data_cfg.get('name', '?')}`",
        f"  - training/evaluation train split: {data.get('train', data_cfg.get('train_split', 'not recorded'))}",
        f"  - evaluation test split: {data.get('test', 'not recorded')}",
        f"- **Training:** {schedule}",
        f"- **Inputs:** {channels} channel(s), {inputs.get('image_size', '?')} px"
        + (f", normalised with mean {inputs['mean']} and std {inputs['std']}" if inputs.get("mean") else ", not normalised"),
        "",
        "## Results", "",
        "Frozen features of this encoder, evaluated as each protocol says"
        + ("." if config.get("features", "encoder") in ("encoder", "backbone") else
           f" (the backbone followed by the method's `{config['features']}`, as `[eval] features` chose; "
           "these are the exported weights)."), "",
        results_table(results), "",
        "## Use with ssl_kit", "",
        "```python", _snippet_ssl_kit(ref, channels, size, config.get("num_features", "D")).rstrip(), "```", "",
    ]
    plain = config.get("backbone_only", True)  # weights of a backbone alone: torchvision/timm load them
    tv = torchvision_snippet(ref, backbone, channels) if plain else None
    if tv is not None:
        parts += ["## Use without ssl_kit (torchvision)", "",
                  "The weights are a torchvision ResNet state dict without `fc`; set `fc` to `Identity` "
                  "and they load with `strict=True`"
                  + (". With the CIFAR stem the stock model changes in three lines: swap `conv1` (3x3, stride 1), "
                     "drop `maxpool`, and `fc` as said." if backbone.get("cifar_stem") else "."), "",
                  "```python", tv.rstrip(), "```", ""]
    if plain and backbone.get("name") == "timm" and "architecture" in config:
        parts += ["## Use without ssl_kit (timm)", "",
                  "`config.json` carries timm's keys too; use `num_classes=0` (the export has no classifier; "
                  "another value adds a new, untrained head).", "",
                  "```python", timm_snippet(ref).rstrip(), "```", ""]
    if about.get("citation"):
        parts += ["## Citation", "", "```bibtex", about["citation"].strip(), "```", ""]
    parts += ["## Recipe", "", "Every key, defaults filled in; save it as `recipe.toml` and run `python -m ssl_kit recipe.toml`.", "",
              "```toml", dumps_toml(recipe_resolved).rstrip(), "```", "",
              "## Files", "",
              f"- `{WEIGHTS}`: the encoder (safetensors)",
              f"- `{CONFIG}`: recipe, inputs, results and versions"
              + (" (and timm's keys)" if "architecture" in config else ""),
              *( [f"- `{METHOD_WEIGHTS}`: the whole method (load with `ssl_kit.load_method`)"]
                 if (export_dir / METHOD_WEIGHTS).exists() else []),
              f"- versions: {', '.join(f'{k} {v}' for k, v in (config.get('versions') or {}).items())}", ""]
    path = export_dir / CARD
    tmp = path.with_name(CARD + ".tmp")
    tmp.write_text("\n".join(parts))
    os.replace(tmp, path)
    return path


def finalize_export(export_dir: str | os.PathLike, results: dict[str, Any], recipe_resolved: dict[str, Any]) -> Path:
    """After ``checkpoint.export_encoder``: timm's keys into config.json (timm backbones), then the
    model card from ``results`` (pass the final results, as written to results.json)."""
    timm_hub_files(export_dir)
    return write_model_card(export_dir, results, recipe_resolved)


# --- sharing -----------------------------------------------------------------------------------
def _export_dir_of(run_or_export_dir: str | os.PathLike) -> Path:
    path = Path(run_or_export_dir)
    if not path.is_dir():
        raise UserError(f"'{run_or_export_dir}' does not exist (expected a run directory or its export folder)")
    if (path / "export" / WEIGHTS).exists():
        path = path / "export"
    if not (path / WEIGHTS).exists() or not (path / CONFIG).exists():
        raise UserError(f"'{run_or_export_dir}' is not a run directory or export folder "
                        f"(no {WEIGHTS} and {CONFIG}); run 'python -m ssl_kit export RUN_DIR' first")
    return path


def _card_for_repo(export_dir: Path, repo_id: str) -> bytes:
    card = export_dir / CARD
    if card.exists():
        text = card.read_text()
    else:  # an export without a card: write one from what config.json records
        config = _read_config(export_dir)
        results_file = export_dir.parent / "results.json"
        results = json.loads(results_file.read_text()) if results_file.exists() else dict(config.get("results") or {})
        with tempfile.TemporaryDirectory() as tmp:
            for name in (CONFIG,):
                (Path(tmp) / name).write_text((export_dir / name).read_text())
            text = write_model_card(tmp, results, config.get("recipe") or {}, repo_id=repo_id).read_text()
    return _MODEL_LINE.sub(f'MODEL = "{repo_id}"  # this folder, or the Hub repo id', text).encode()


def push_to_hub(
    run_or_export_dir: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    create_pr: bool = False,
    token: str | None = None,
    commit_message: str = "Upload ssl_kit model",
    revision: str | None = None,
) -> str:
    """Upload an export (model.safetensors, config.json, README.md, method.safetensors if present)
    to the Hub model repo ``repo_id``, creating it if needed. Returns the commit (or PR) URL.

    The token comes from ``token`` or huggingface_hub's usual sources (``HF_TOKEN``, ``hf auth
    login``); it is never printed, logged or written. The uploaded card's snippets name ``repo_id``.
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from ssl_kit.checkpoint import verify_checksums

    export_dir = _export_dir_of(run_or_export_dir)
    if not _looks_like_repo_id(repo_id):
        raise UserError(f"repo id '{repo_id}' is not of the form 'user/name'")
    what = f"export '{export_dir}'"
    for name in (WEIGHTS, METHOD_WEIGHTS):  # never upload a damaged file
        if name == WEIGHTS or (export_dir / name).exists():
            check_safetensors(export_dir / name, what)
    verify_checksums(export_dir, _read_config(export_dir), what)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(export_dir / name))
                  for name in (WEIGHTS, CONFIG, METHOD_WEIGHTS) if (export_dir / name).exists()]
    operations.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=_card_for_repo(export_dir, repo_id)))
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.create_commit(repo_id, operations, commit_message=commit_message, create_pr=create_pr,
                                 revision=revision, repo_type="model")
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", "?")
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"push to '{repo_id}' failed (HTTP {status}): {first[:300]}") from None
    return str(info.pr_url or info.commit_url)


def check_can_push() -> None:
    """A one-line error when an upload cannot work: offline mode, or no token in huggingface_hub's
    usual places (checked before training when ``[hub] push = true``)."""
    from huggingface_hub import constants, get_token

    if constants.is_offline_mode():
        raise UserError("[hub] push = true but huggingface_hub is in offline mode (HF_HUB_OFFLINE): "
                        "unset it, or set hub.push=false and push later with 'python -m ssl_kit push'")
    if get_token() is None:
        raise UserError("[hub] push = true but no Hugging Face token was found: set HF_TOKEN or run "
                        "'hf auth login' (or set hub.push=false and push later with 'python -m ssl_kit push')")


def push_after_training(run_dir: str | os.PathLike, hub_config: Any) -> str:
    """The ``[hub] push`` step at the end of training (main process, after the export)."""
    try:
        return push_to_hub(run_dir, hub_config.repo_id, private=hub_config.private, create_pr=hub_config.create_pr)
    except UserError as err:
        raise UserError(f"training finished and '{Path(run_dir) / 'export'}' is complete, but the push failed: "
                        f"{err}. Retry with: python -m ssl_kit push {run_dir} --repo-id {hub_config.repo_id}") from None


def _attach_push(module: nn.Module, export_dir: Path) -> None:
    """Give a loaded encoder ``push_to_hub(repo_id, ...)``: it uploads the module's *current*
    weights with the export's config.json and model card."""
    source = Path(export_dir).resolve()

    def push(self: nn.Module, repo_id: str, private: bool = False, create_pr: bool = False,
             token: str | None = None, commit_message: str = "Upload ssl_kit model") -> str:
        from ssl_kit.checkpoint import save_weights

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            config = _read_config(source)
            # The weights may have changed since the export (fine-tuning): record theirs.
            config["sha256"] = {WEIGHTS: save_weights(self, out / WEIGHTS, "ssl_kit encoder")}
            write_json(out / CONFIG, config)
            if (source / CARD).exists():
                (out / CARD).write_text((source / CARD).read_text())
            return push_to_hub(out, repo_id, private=private, create_pr=create_pr, token=token,
                               commit_message=commit_message)

    push.__name__ = push.__qualname__ = "push_to_hub"
    object.__setattr__(module, "push_to_hub", push.__get__(module))
    object.__setattr__(module, "ssl_kit_export_dir", str(source))


# --- CLI helpers -------------------------------------------------------------------------------
def cmd_export(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, full_method: bool = False) -> Path:
    """``python -m ssl_kit export RUN_DIR [--out DIR] [--full-method]``: rebuild the method from the
    run's recipe.toml and newest checkpoint, export the encoder (and the method), write the card."""
    import dataclasses

    from ssl_kit.checkpoint import encoder_inputs, export_encoder, list_checkpoints, load_strict
    from ssl_kit.recipe import load_recipe
    from ssl_kit.trainer import build_dataset, build_method, view_spec

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory '{run_dir}' does not exist")
    if not (run_dir / "recipe.toml").is_file():
        raise UserError(f"'{run_dir}' is not a run directory (no recipe.toml); pass the train.output_dir of a run")
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise CheckpointError(f"run '{run_dir}' has no complete checkpoint to export (checkpoints/step_N)")
    newest = checkpoints[-1]
    results_file = run_dir / "results.json"
    try:
        results = json.loads(results_file.read_text()) if results_file.exists() else {}
    except json.JSONDecodeError as err:
        raise UserError(f"'{results_file}' is not valid JSON: {_one_line(err)}") from None
    recipe = load_recipe(str(run_dir / "recipe.toml"))
    recipe = dataclasses.replace(recipe, name=results.get("recipe") or run_dir.name)
    dataset = build_dataset(recipe, recipe.data.train_split)
    channels = getattr(dataset, "channels", 3)
    method = build_method(recipe, channels)
    inputs = encoder_inputs(dataset, view_spec(method, recipe))
    load_strict(method, newest / WEIGHTS, f"checkpoint '{newest}'").eval()
    out_dir = Path(out) if out is not None else run_dir / "export"
    results.setdefault("steps", int(newest.name[5:]))
    export_encoder(method, recipe, out_dir, results, inputs, full_method=full_method or recipe.hub.full_method)
    finalize_export(out_dir, results, recipe.resolved())
    print(f"exported {newest.name} of {run_dir} to {out_dir}")
    return out_dir


def cmd_push(run_or_export_dir: str | os.PathLike, repo_id: str, private: bool = False,
             create_pr: bool = False, revision: str | None = None) -> str:
    """``python -m ssl_kit push RUN_OR_EXPORT_DIR --repo-id user/name [--private] [--create-pr]
    [--revision BRANCH]``."""
    url = push_to_hub(run_or_export_dir, repo_id, private=private, create_pr=create_pr, revision=revision)
    print(f"pushed {_export_dir_of(run_or_export_dir)} to {repo_id}: {url}")
    return url

"""The Hugging Face Hub: download an export (:func:`from_pretrained`, :func:`load_method`) and
upload one (:func:`push_to_hub`). Export folders are :mod:`ssl_kit.export`'s; nothing here prints,
logs or writes a token.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError
from torch import nn

from ssl_kit import loading
from ssl_kit.errors import CheckpointError, UserError, one_line
from ssl_kit.export import CARD, CONFIG, METHOD_WEIGHTS, WEIGHTS, card_for_repo, read_config
from ssl_kit.io import write_json
from ssl_kit.methods.base import Method
from ssl_kit.weights import check_safetensors, save_tensors, sha256_file

HUB_FILES = (CONFIG, WEIGHTS, CARD)  # what from_pretrained downloads from a Hub repo


def looks_like_repo_id(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text)) and ".." not in text


def resolve(path_or_repo_id: str | os.PathLike, revision: str | None = None, files: tuple[str, ...] = HUB_FILES) -> Path:
    """A local export folder, or the snapshot of a Hub repo holding ``files`` (downloaded)."""
    local = Path(path_or_repo_id)
    if local.is_dir():
        return local
    text = str(path_or_repo_id)
    if local.exists():
        raise CheckpointError(f"'{text}' is a file; pass the export folder that holds {CONFIG} and {WEIGHTS}")
    if not looks_like_repo_id(text):
        raise CheckpointError(f"'{text}' is neither an export folder nor a Hub repo id ('user/name')")
    try:
        folder = huggingface_hub.snapshot_download(text, revision=revision, allow_patterns=list(files))
    except Exception as err:  # network, 404, offline mode, gated repo: one line for the user
        raise CheckpointError(f"cannot download '{text}' from the Hugging Face Hub: {type(err).__name__}: "
                              f"{one_line(err)}") from None
    return Path(folder)


class PushToHub:
    """What :func:`from_pretrained` adds to the encoder it returns: ``push_to_hub(repo_id, ...)``
    uploads the module's *current* weights with the export's config.json and model card."""

    ssl_kit_export_dir: str

    def push_to_hub(self, repo_id: str, private: bool = False, create_pr: bool = False,
                    token: str | None = None, commit_message: str = "Upload ssl_kit model") -> str:
        source = Path(self.ssl_kit_export_dir)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            config = read_config(source)
            # The weights may have changed since the export (fine-tuning): record theirs.
            weights = save_tensors(self.state_dict(), out / WEIGHTS,  # type: ignore[attr-defined]
                                   {"format": "pt", "contents": "ssl_kit encoder"})
            config["sha256"] = {WEIGHTS: sha256_file(weights)}
            write_json(out / CONFIG, config)
            if (source / CARD).exists():
                (out / CARD).write_text((source / CARD).read_text())
            return push_to_hub(out, repo_id, private=private, create_pr=create_pr, token=token,
                               commit_message=commit_message)


_pushable: dict[type, type] = {}


def from_pretrained(path_or_repo_id: str | os.PathLike, revision: str | None = None) -> nn.Module:
    """The encoder of an export folder or a Hub repo id, loaded strictly, in eval mode.

    A Hub repo is fetched with ``huggingface_hub.snapshot_download`` (config.json, model.safetensors
    and README.md only). The returned module is its own class with :class:`PushToHub` mixed in:
    ``encoder.push_to_hub(repo_id, ...)`` uploads its current weights with the export's card.
    """
    folder = resolve(path_or_repo_id, revision, HUB_FILES)
    encoder = loading.load_encoder(folder)
    cls = type(encoder)
    if cls not in _pushable:
        _pushable[cls] = type(cls.__name__, (cls, PushToHub), {"__module__": cls.__module__})
    encoder.__class__ = _pushable[cls]
    encoder.ssl_kit_export_dir = str(folder.resolve())
    return encoder


def load_method(path_or_repo_id: str | os.PathLike, revision: str | None = None) -> Method:
    """The whole method (backbone, projector, predictor, EMA target...) of an export that holds
    ``method.safetensors`` (``export --full-method``, or ``[hub] full_method = true``), rebuilt from
    config.json's recipe and loaded strictly, in eval mode."""
    return loading.load_method(resolve(path_or_repo_id, revision, (*HUB_FILES, METHOD_WEIGHTS)))


def export_dir_of(run_or_export_dir: str | os.PathLike) -> Path:
    """The export folder of a run directory, or the folder itself when it is an export."""
    path = Path(run_or_export_dir)
    if not path.is_dir():
        raise UserError(f"'{run_or_export_dir}' does not exist (expected a run directory or its export folder)")
    if (path / "export" / WEIGHTS).exists():
        path = path / "export"
    if not (path / WEIGHTS).exists() or not (path / CONFIG).exists():
        raise UserError(f"'{run_or_export_dir}' is not a run directory or export folder "
                        f"(no {WEIGHTS} and {CONFIG}); run 'python -m ssl_kit export RUN_DIR' first")
    return path


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
    export_dir = export_dir_of(run_or_export_dir)
    if not looks_like_repo_id(repo_id):
        raise UserError(f"repo id '{repo_id}' is not of the form 'user/name'")
    what = f"export '{export_dir}'"
    for name in (WEIGHTS, METHOD_WEIGHTS):  # never upload a damaged file
        if name == WEIGHTS or (export_dir / name).exists():
            check_safetensors(export_dir / name, what)
    loading.verify_checksums(export_dir, read_config(export_dir), what)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(export_dir / name))
                  for name in (WEIGHTS, CONFIG, METHOD_WEIGHTS) if (export_dir / name).exists()]
    operations.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card_for_repo(export_dir, repo_id)))
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

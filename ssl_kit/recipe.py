"""Recipes: TOML -> validated, typed configuration.

A recipe has one table per component (``[method]``, ``[backbone]``, ``[data]``, ``[views]``,
``[optim]``, ``[train]``, ``[eval]``, ``[expected]``, ``[hub]``). ``[method]``, ``[backbone]`` and ``[data]``
name a registered component (``name = "simclr"``) and add that component's own keys; every table
is checked against its config dataclass, so an unknown key, a wrong type or an out-of-range value is
an error naming the file, the table, the key and what is allowed.

``extends = "base"`` (a path relative to the recipe, or a registered recipe name) deep-merges the
recipe over its base; cycles are an error. A file whose ``extends`` names its own stem (the clone's
``recipes/relic.toml`` holding ``extends = "relic"``) is a pointer to the registered recipe of that
name, which a plugin ships as package data: one copy of each recipe, runnable by path from a clone. Command-line overrides ``section.key=value`` are applied
last; values are parsed as TOML (``train.epochs=5``, ``eval.baselines=["raw"]``) and fall back to
plain strings (``data.name=digits``).
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from pathlib import Path
from typing import Any, Literal

from ssl_kit.config import build_config, knob, to_dict
from ssl_kit.data.views import ViewSpec
from ssl_kit.errors import RecipeError, UserError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclasses.dataclass
class DataConfig:
    name: str = knob(help="registered dataset (python -m ssl_kit plugins lists them)")
    batch_size: int = knob(256, "GLOBAL batch per optimizer micro-step, split across processes", min=1)
    num_workers: int = knob(0, "DataLoader worker processes per training process", min=0)
    pin_memory: bool = knob(False, "pin host memory of batches (faster host-to-GPU copies)")
    persistent_workers: bool = knob(False, "keep workers alive between loader passes")
    prefetch_factor: int | None = knob(None, "batches prefetched per worker (default: PyTorch's)", min=1)
    train_split: str = knob("train", "dataset split used for self-supervised training")


@dataclasses.dataclass
class OptimConfig:
    lr: float = knob(help="base learning rate (see lr_scaling)", gt=0)
    lr_scaling: Literal["none", "linear"] = knob(
        help="'linear': effective lr = lr x global batch x grad_accumulation / 256; 'none': lr as given"
    )
    name: Literal["sgd", "adam", "adamw", "lars"] = knob("sgd", "optimizer (timm.optim / torch.optim)")
    weight_decay: float = knob(0.0, "weight decay", min=0)
    momentum: float = knob(0.9, "SGD / LARS momentum", min=0, lt=1)
    nesterov: bool = knob(False, "Nesterov momentum (SGD / LARS)")
    betas: tuple[float, float] = knob((0.9, 0.999), "Adam / AdamW betas", min=0, lt=1)
    eps: float = knob(1e-8, "Adam / AdamW epsilon", gt=0)
    exclude_bias_norm: bool = knob(True, "no weight decay (hence no LARS adaptation) on biases and norm layers")
    lars_eta: float = knob(0.02, "LARS trust coefficient", gt=0)
    lars_trust_clip: bool = knob(True, "clip the LARS trust ratio at 1 (solo-learn's clip_lr)")
    schedule: Literal["cosine", "constant"] = knob("cosine", "per-step schedule after warm-up")
    warmup_epochs: float = knob(0.0, "linear warm-up length in epochs", min=0)
    warmup_start_lr: float = knob(0.0, "learning rate at the first warm-up step", min=0)
    min_lr: float = knob(0.0, "final learning rate of the cosine schedule", min=0)
    grad_clip: float | None = knob(None, "clip the global gradient norm to this value", gt=0)


TRACKERS = ("tensorboard", "wandb")


@dataclasses.dataclass
class TrainConfig:
    epochs: int = knob(100, "passes over the training split", min=1)
    max_steps: int | None = knob(None, "stop after this many optimizer steps (the schedule is shortened)", min=1)
    seed: int = knob(0, "seed of initialisation, data order and every augmentation")
    precision: Literal["no", "fp16", "bf16", "auto"] = knob(
        "no", "mixed precision: 'auto' picks bf16 (or fp16) on GPUs and full precision on CPU; fp16 without a GPU falls back to full precision with a warning"
    )
    grad_accumulation: int = knob(1, "micro-batches per optimizer step", min=1)
    output_dir: str = knob("runs/{name}", "run directory; {name} is the recipe name")
    log_every: int = knob(10, "write a log line every N optimizer steps", min=1)
    progress: bool = knob(True, "show a progress bar on the main process")
    export: bool = knob(True, "export the evaluated encoder at the end (export/ in the run directory)")
    checkpoint_every: int = knob(500, "save a resumable checkpoint every N optimizer steps (0: only at the end)", min=0)
    checkpoint_minutes: float = knob(30.0, "also save when this many minutes passed since the last save (0: off)", min=0)
    keep_checkpoints: int = knob(2, "keep the newest K checkpoints", min=1)
    resume: str = knob(
        "auto", "'auto': continue from the newest checkpoint of the run directory if any; 'never'; or a checkpoint path"
    )
    skip_nonfinite: bool = knob(False, "skip optimizer steps whose loss is NaN/inf (counted) instead of stopping")
    trackers: list[str] = knob([], "extra experiment trackers through accelerate: 'tensorboard', 'wandb' (log.jsonl is always written)")
    tracker_project: str = knob("ssl_kit", "project name given to the trackers")
    deterministic: bool = knob(False, "torch.use_deterministic_algorithms and no cuDNN autotuning (slower on GPUs)")
    channels_last: bool = knob(False, "channels-last memory format for model and images (faster convnets on GPUs)")
    compile: bool = knob(False, "torch.compile the method (first steps are slow while it compiles)")
    sync_batchnorm: bool = knob(False, "batch-norm statistics over all processes (torch's SyncBatchNorm on GPUs, ssl_kit's elsewhere)")

    def __post_init__(self) -> None:
        for tracker in self.trackers:
            if tracker not in TRACKERS:
                raise ValueError(
                    f"key 'trackers' has unknown entry '{tracker}'.{did_you_mean(tracker, TRACKERS)} "
                    f"Allowed: {', '.join(TRACKERS)}"
                )

@dataclasses.dataclass
class EvalConfig:
    enabled: bool = knob(True, "evaluate at the end of training")
    evaluators: list[str] = knob(
        ["knn", "linear"], "evaluators to run, in table order (python -m ssl_kit plugins lists them; e.g. "
        "knn, linear, linear_torch)"
    )
    baselines: list[str] = knob([], "extra table rows: 'raw' (pixels) and/or 'random_init'")
    train_split: str = knob("train", "split whose features train the evaluators")
    test_split: str = knob("test", "split the evaluators are scored on")
    batch_size: int = knob(256, "batch size of feature extraction", min=1)
    features: str = knob(
        "encoder",
        "features the evaluators see: 'encoder' (the method's choice, e.g. an EMA target), 'backbone' "
        "(the online backbone), or a head of the method, e.g. 'projector' or 'projector.0' (the backbone "
        "followed by that head up to and including layer 0)",
    )
    online_probe: bool = knob(
        True, "train a linear classifier on detached features during training (solo-learn's online "
        "probe; off when the data has no labels or the method returns no 'features')"
    )
    online_lr: float | None = knob(
        None, "online probe learning rate before lr_scaling (default: 0.1 for sgd/lars, 1e-3 for adam/adamw)", gt=0
    )
    plots: bool = knob(True, "write PNG plots into plots/: loss and lr, online-probe accuracy, a 2-D map of test features")
    embedding_map: Literal["pca", "tsne"] = knob("pca", "projection of the 2-D test-feature map (t-SNE is slower)")
    map_samples: int = knob(2000, "test images shown in the 2-D map (a fixed random subset)", min=10)

    def __post_init__(self) -> None:
        for b in self.baselines:
            if b not in ("raw", "random_init"):
                raise ValueError(
                    f"key 'baselines' has unknown entry '{b}'.{did_you_mean(b, ['raw', 'random_init'])} "
                    "Allowed: raw, random_init"
                )


@dataclasses.dataclass
class ExpectedConfig:
    value: float = knob(help="the number this recipe should reach, in percent")
    protocol: str = knob(help="the protocol of that number, e.g. 'online linear', 'k-NN (k=20, T=0.07)'")
    metric: str = knob("", "the results.json key it compares to, if ssl_kit computes it")
    epochs: int | None = knob(None, "epochs behind the number", min=1)
    data: str = knob("", "which copy of the data the number was obtained on")
    source: Literal["paper", "reproduced"] = knob("paper", "the paper's number or reproduced by us")
    note: str = knob("", "anything else a reader must know")


@dataclasses.dataclass
class HubConfig:
    push: bool = knob(False, "after training and export, upload export/ to the Hugging Face Hub (main process; token from HF_TOKEN or 'hf auth login', never written)")
    repo_id: str = knob("", "Hub model repo 'user/name' (or 'org/name'); required when push = true")
    private: bool = knob(False, "create the repo as private (an existing repo keeps its visibility)")
    create_pr: bool = knob(False, "open a pull request instead of committing to the main branch")
    full_method: bool = knob(False, "also export method.safetensors (every head, EMA target, queue) for ssl_kit.load_method")

    def __post_init__(self) -> None:
        import re

        if self.repo_id and (not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", self.repo_id) or ".." in self.repo_id):
            raise ValueError(f"key 'repo_id' must be of the form 'user/name', got {self.repo_id!r}")
        if self.push and not self.repo_id:
            raise ValueError("key 'push' is true but 'repo_id' is not set (e.g. repo_id = \"user/name\")")


SECTIONS = ("method", "backbone", "data", "views", "optim", "train", "eval", "expected", "hub")
TOP_LEVEL_KEYS = ("extends", "description")


@dataclasses.dataclass
class Recipe:
    """A validated recipe. ``raw`` is the merged table tree (after extends and overrides)."""

    name: str
    source: str
    raw: dict[str, Any]
    method_name: str
    method: Any
    backbone_name: str
    backbone: Any
    data: DataConfig
    dataset: Any
    views: dict[str, Any]
    optim: OptimConfig
    train: TrainConfig
    eval: EvalConfig
    evaluators: dict[str, Any]
    expected: ExpectedConfig | None
    hub: HubConfig = dataclasses.field(default_factory=HubConfig)

    def resolved(self) -> dict[str, Any]:
        """Every table with defaults filled in, as written to the run directory."""
        out: dict[str, Any] = {}
        if "description" in self.raw:
            out["description"] = self.raw["description"]
        out["method"] = {"name": self.method_name, **(to_dict(self.method) if self.method else {})}
        out["backbone"] = {"name": self.backbone_name, **(to_dict(self.backbone) if self.backbone else {})}
        out["data"] = {**to_dict(self.data), **(to_dict(self.dataset) if self.dataset else {})}
        out["views"] = dict(self.views)
        out["optim"] = to_dict(self.optim)
        out["train"] = to_dict(self.train)
        out["eval"] = to_dict(self.eval)
        for name, cfg in self.evaluators.items():
            out["eval"][name] = to_dict(cfg) if cfg is not None else {}
        if self.expected is not None:
            out["expected"] = to_dict(self.expected)
        out["hub"] = to_dict(self.hub)
        return out


# --- reading -----------------------------------------------------------------------------------
def find_recipe(source: str) -> Path:
    """A recipe path, or the file of a registered recipe name."""
    path = Path(source)
    if path.is_file():
        return path
    if path.suffix == ".toml" or "/" in source or "\\" in source:
        raise UserError(f"recipe file '{source}' not found")
    from ssl_kit.plugins import get_registry

    registry = get_registry()
    names = registry.names("recipes")
    if source in names:
        return Path(registry.get("recipes", source).factory)
    raise UserError(
        f"'{source}' is neither a recipe file nor a registered recipe.{did_you_mean(source, names)} "
        f"Registered recipes: {', '.join(names) or '(none)'} (python -m ssl_kit recipes)"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: invalid TOML: {err}") from None
    except OSError as err:
        raise RecipeError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a UTF-8 text file") from None


COMPONENT_TABLES = ("method", "backbone", "data")


def deep_merge(base: dict[str, Any], child: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """``child`` over ``base``; tables merge key by key, anything else is replaced. A component
    table ([method], [backbone], [data]) whose ``name`` changes replaces the base table: the base's
    keys belong to another component."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        base_value = out.get(key)
        renamed = (
            top and key in COMPONENT_TABLES and isinstance(value, dict) and isinstance(base_value, dict)
            and "name" in value and value["name"] != base_value.get("name")
        )
        if renamed:
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(base_value, dict):
            out[key] = deep_merge(base_value, value, top=False)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_tree(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise RecipeError(f"{path}: 'extends' forms a cycle: {cycle}")
    tree = _read_toml(path)
    base = tree.pop("extends", None)
    if base is None:
        return tree
    if not isinstance(base, str):
        raise RecipeError(f"{path}: 'extends' must be a string (a recipe path or name), got {base!r}")
    candidate = path.parent / base
    if base == path.stem:  # a pointer to the plugin recipe of this name
        try:
            base_path = find_recipe(base)
        except UserError:
            hint = tree.get("description") or f"install the plugin that provides recipe '{base}'"
            raise RecipeError(
                f"{path}: points at recipe '{base}', which no installed plugin registers: {hint}"
            ) from None
        if base_path.resolve() == resolved:
            raise RecipeError(f"{path}: 'extends' names the file itself")
    elif candidate.is_file():
        base_path = candidate
    elif (path.parent / f"{base}.toml").is_file():
        base_path = path.parent / f"{base}.toml"
    else:
        try:
            base_path = find_recipe(base)
        except UserError as err:
            raise RecipeError(f"{path}: extends '{base}': {err}") from None
    return deep_merge(_load_tree(base_path, (*chain, resolved)), tree)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.epochs=5'`` -> (['train', 'epochs'], 5)."""
    if "=" not in text:
        raise RecipeError(
            f"override '{text}' is not of the form section.key=value (e.g. train.epochs=5)"
        )
    key, value_text = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(p.strip() for p in parts):
        raise RecipeError(
            f"override '{text}': the key must be section.key (e.g. train.epochs=5), got '{key}'"
        )
    try:
        value = tomllib.loads(f"v = {value_text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text.strip()  # a bare word is a string: data.name=digits
    return [p.strip() for p in parts], value


def apply_override(tree: dict[str, Any], parts: list[str], value: Any, text: str) -> None:
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise RecipeError(f"override '{text}': '{where}' is a value, not a table")
        node = child
    node[parts[-1]] = value


def load_recipe(source: str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, merge, override and validate a recipe (a path or a registered name)."""
    path = find_recipe(source)
    tree = _load_tree(path)
    override_keys: dict[str, str] = {}
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] not in SECTIONS:
            raise RecipeError(
                f"override '{text}': unknown section '{parts[0]}'.{did_you_mean(parts[0], SECTIONS)} "
                f"Sections: {', '.join(SECTIONS)}"
            )
        apply_override(tree, parts, value, text)
        override_keys[".".join(parts)] = text
    name = path.stem
    try:
        return _validate(tree, str(path), name)
    except RecipeError as err:
        key = getattr(err, "key", None)
        if key in override_keys:
            raise RecipeError(f"{err} (from override '{override_keys[key]}')") from None
        raise


def recipe_from_tree(tree: dict[str, Any], source: str, name: str) -> Recipe:
    """Validate an already-read recipe tree (e.g. the one stored in an export's config.json)."""
    return _validate(copy.deepcopy(tree), source, name)


def _error(message: str, key: str | None = None) -> RecipeError:
    err = RecipeError(message)
    err.key = key  # type: ignore[attr-defined]
    return err


def _table(tree: dict[str, Any], section: str, where: str, required: bool) -> dict[str, Any]:
    value = tree.get(section)
    if value is None:
        if required:
            raise _error(f"{where}: missing table [{section}]")
        return {}
    if not isinstance(value, dict):
        raise _error(f"{where}: '{section}' must be a table ([{section}]), got {value!r}", section)
    return dict(value)


def _named(table: dict[str, Any], section: str, where: str) -> str:
    name = table.pop("name", None)
    if name is None:
        raise _error(f"{where}: [{section}] missing required key 'name'", f"{section}.name")
    if not isinstance(name, str):
        raise _error(f"{where}: [{section}] key 'name' must be a string, got {name!r}", f"{section}.name")
    return name


def _build(cls: type, values: dict[str, Any], where: str, section: str) -> Any:
    try:
        return build_config(cls, values, f"{where}: [{section}]")
    except RecipeError as err:
        bad = next((k for k in values if f"'{k}'" in str(err)), None)
        raise _error(str(err), f"{section}.{bad}" if bad else None) from None


def _validate(tree: dict[str, Any], where: str, name: str) -> Recipe:
    from ssl_kit.plugins import get_registry

    for key, value in tree.items():
        if key in SECTIONS or key in TOP_LEVEL_KEYS:
            continue
        hint = did_you_mean(key, SECTIONS + TOP_LEVEL_KEYS)
        kind = "table" if isinstance(value, dict) else "key"
        raise _error(f"{where}: unknown top-level {kind} '{key}'.{hint} Allowed: {', '.join(SECTIONS)}, {', '.join(TOP_LEVEL_KEYS)}", key)
    registry = get_registry()

    def component(kind: str, section: str) -> tuple[str, Any]:
        table = _table(tree, section, where, required=True)
        comp_name = _named(table, section, where)
        try:
            comp = registry.get(kind, comp_name, where=f"{where}: [{section}]")
        except UserError as err:
            raise _error(str(err), f"{section}.name") from None
        if comp.config is None:
            if table:
                raise _error(f"{where}: [{section}] '{comp_name}' takes no options, got {sorted(table)}")
            return comp_name, None
        return comp_name, _build(comp.config, table, where, section)

    method_name, method_cfg = component("methods", "method")
    backbone_name, backbone_cfg = component("backbones", "backbone")

    data_table = _table(tree, "data", where, required=True)
    data_name = _named(dict(data_table), "data", where)
    try:
        data_comp = registry.get("datasets", data_name, where=f"{where}: [data]")
    except UserError as err:
        raise _error(str(err), "data.name") from None
    core_keys = {f.name for f in dataclasses.fields(DataConfig)}
    dataset_fields = {f.name for f in dataclasses.fields(data_comp.config)} if data_comp.config else set()
    for key in data_table:
        if key not in core_keys and key not in dataset_fields:
            known = sorted(core_keys | dataset_fields)
            raise _error(
                f"{where}: [data] unknown key '{key}' for dataset '{data_name}'.{did_you_mean(key, known)} "
                f"Known keys: {', '.join(known)}",
                f"data.{key}",
            )
    data_cfg = _build(DataConfig, {k: v for k, v in data_table.items() if k in core_keys}, where, "data")
    dataset_values = {k: v for k, v in data_table.items() if k not in core_keys}
    dataset_cfg = _build(data_comp.config, dataset_values, where, "data") if data_comp.config else None

    views = _table(tree, "views", where, required=False)
    _build(ViewSpec, views, where, "views")  # validate now; merged over the method's spec later
    preset = views.get("preset")
    if preset is not None:
        try:
            registry.get("view_presets", preset, where=f"{where}: [views] preset:")
        except UserError as err:
            raise _error(str(err), "views.preset") from None

    optim = _build(OptimConfig, _table(tree, "optim", where, required=True), where, "optim")
    train = _build(TrainConfig, _table(tree, "train", where, required=False), where, "train")

    eval_table = _table(tree, "eval", where, required=False)
    eval_core = {f.name for f in dataclasses.fields(EvalConfig)}
    eval_cfg = _build(EvalConfig, {k: v for k, v in eval_table.items() if k in eval_core}, where, "eval")
    evaluators: dict[str, Any] = {}
    for ev_name in eval_cfg.evaluators:
        try:
            comp = registry.get("evaluators", ev_name, where=f"{where}: [eval] evaluators:")
        except UserError as err:
            raise _error(str(err), "eval.evaluators") from None
        sub = eval_table.get(ev_name, {})
        if not isinstance(sub, dict):
            raise _error(f"{where}: [eval] '{ev_name}' must be a table ([eval.{ev_name}])", f"eval.{ev_name}")
        evaluators[ev_name] = _build(comp.config, sub, where, f"eval.{ev_name}") if comp.config else None
    for key, value in eval_table.items():
        if key not in eval_core and key not in evaluators:
            hint = did_you_mean(key, sorted(eval_core) + registry.names("evaluators"))
            what = (
                f"table [eval.{key}] configures evaluator '{key}', which is not in eval.evaluators"
                if isinstance(value, dict)
                else f"unknown key '{key}'"
            )
            raise _error(f"{where}: [eval] {what}.{hint} Known keys: {', '.join(sorted(eval_core))}", f"eval.{key}")

    expected_table = _table(tree, "expected", where, required=False)
    expected = _build(ExpectedConfig, expected_table, where, "expected") if expected_table else None
    hub = _build(HubConfig, _table(tree, "hub", where, required=False), where, "hub")

    if data_cfg.batch_size < 2:
        raise _error(f"{where}: [data] key 'batch_size' must be >= 2 for self-supervised training", "data.batch_size")
    if hub.push and not train.export:
        raise _error(f"{where}: [hub] push = true needs [train] export = true (push uploads the export)", "hub.push")
    return Recipe(
        name=name,
        source=where,
        raw=tree,
        method_name=method_name,
        method=method_cfg,
        backbone_name=backbone_name,
        backbone=backbone_cfg,
        data=data_cfg,
        dataset=dataset_cfg,
        views=views,
        optim=optim,
        train=train,
        eval=eval_cfg,
        evaluators=evaluators,
        expected=expected,
        hub=hub,
    )


# --- writing -----------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dumps_toml(tree: dict[str, Any]) -> str:
    """Write a recipe tree as TOML (tables of scalars, lists and nested tables; None omitted)."""
    lines: list[str] = []

    def table(node: dict[str, Any], prefix: str) -> None:
        # Sections, and evaluator tables inside [eval], are TOML tables; other dicts are inline.
        def is_table(v: Any) -> bool:
            return isinstance(v, dict) and prefix in ("", "eval")

        if prefix:
            lines.append(f"\n[{prefix}]")
        for key, value in node.items():
            if value is not None and not is_table(value):
                lines.append(f"{key} = {_toml_value(value)}")
        for key, value in node.items():
            if is_table(value):
                table(value, f"{prefix}.{key}" if prefix else key)

    table(tree, "")
    return "\n".join(lines).lstrip("\n") + "\n"

"""The recipe's own tables (``[data]``, ``[optim]``, ``[train]``, ``[eval]``, ``[expected]``,
``[hub]``) as config dataclasses, and :class:`Recipe`, the validated whole."""

from __future__ import annotations

import dataclasses
import re
import string
from typing import Any, Literal

from ssl_kit.config import knob, to_dict
from ssl_kit.errors import did_you_mean

@dataclasses.dataclass(frozen=True)
class DataConfig:
    name: str = knob(help="registered dataset (python -m ssl_kit plugins lists them)")
    batch_size: int = knob(256, "GLOBAL batch per optimizer micro-step, split across processes", min=1)
    num_workers: int = knob(0, "DataLoader worker processes per training process", min=0)
    pin_memory: bool = knob(False, "pin host memory of batches (faster host-to-GPU copies)")
    persistent_workers: bool = knob(False, "keep workers alive between loader passes")
    prefetch_factor: int | None = knob(None, "batches prefetched per worker (default: PyTorch's)", min=1)
    train_split: str = knob("train", "dataset split used for self-supervised training")
    batched_views: Literal["auto", "on", "hybrid", "off"] = knob(
        "auto", "where views are made (ssl_kit.data.batched; docs/training.md): 'on': the split decoded once into "
        "memory on the training device and every view made there with batched ops (an error when it cannot); "
        "'hybrid': images decoded and cropped per sample in DataLoader workers, the rest of the ops batched on the "
        "device (for splits that do not fit or whose images differ in size); 'auto': 'on' where the preset compiles "
        "and the split fits a quarter of the free device memory, else 'hybrid' where the preset compiles, else "
        "per-sample views; 'off': per-sample views (torchvision transforms in DataLoader workers)"
    )


@dataclasses.dataclass(frozen=True)
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


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = knob(100, "passes over the training split", min=1)
    max_steps: int | None = knob(None, "stop after this many optimizer steps (the schedule is shortened)", min=1)
    seed: int = knob(0, "seed of initialisation, data order and every augmentation (0 to 2**32 - 1)", min=0, max=2**32 - 1)
    precision: Literal["no", "fp16", "bf16", "auto"] = knob(
        "no", "mixed precision: 'auto' picks bf16 (or fp16) on GPUs and full precision on CPU; fp16 without a GPU falls back to full precision with a warning"
    )
    grad_accumulation: int = knob(1, "micro-batches per optimizer step", min=1)
    output_dir: str = knob("runs/{name}", "run directory; {name} is the recipe name")
    log_every: int = knob(10, "write a log line every N optimizer steps", min=1)
    progress: bool = knob(True, "show a progress bar on the main process")
    export: bool = knob(True, "export the evaluated encoder at the end (export/ in the run directory)")
    checkpoint_every: int = knob(500, "save a resumable checkpoint every N optimizer steps (0: only at the end)", min=0)
    checkpoint_minutes: float = knob(30.0, "also save when this many minutes passed since the last save, checked at each log step (every train.log_every steps; 0: off)", min=0)
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
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.output_dir) if f is not None]
        except ValueError as err:  # a lone '{' or '}'
            raise ValueError(f"key 'output_dir' is not a valid path template ({err}; write '{{{{' or '}}}}' for a literal brace): "
                             f"{self.output_dir!r}") from None
        for field in fields:
            if field != "name":
                raise ValueError(f"key 'output_dir' has the placeholder '{{{field}}}'; the only one allowed is "
                                 f"'{{name}}' (the recipe name): {self.output_dir!r}")
        for tracker in self.trackers:
            if tracker not in TRACKERS:
                raise ValueError(
                    f"key 'trackers' has unknown entry '{tracker}'.{did_you_mean(tracker, TRACKERS)} "
                    f"Allowed: {', '.join(TRACKERS)}"
                )

@dataclasses.dataclass(frozen=True)
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
    extra_features: list[str] = knob(
        [], "more feature sources (values as for 'features') that every evaluator also scores, each as a "
        "table row 'trained:<source>' (Geometric CL reports backbone and projector features)"
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
        seen = [self.features]
        for f in self.extra_features:
            if f in seen:
                raise ValueError(f"key 'extra_features' lists '{f}' twice (or it is already 'features')")
            seen.append(f)


@dataclasses.dataclass(frozen=True)
class ExpectedConfig:
    value: float = knob(help="the number this recipe should reach, in percent")
    protocol: str = knob(help="the protocol of that number, e.g. 'online linear', 'k-NN (k=20, T=0.07)'")
    metric: str = knob("", "the results.json key it compares to, if ssl_kit computes it")
    epochs: int | None = knob(None, "epochs behind the number", min=1)
    data: str = knob("", "which copy of the data the number was obtained on")
    source: Literal["paper", "reproduced"] = knob("paper", "the paper's number or reproduced by us")
    note: str = knob("", "anything else a reader must know")


@dataclasses.dataclass(frozen=True)
class HubConfig:
    push: bool = knob(False, "after training and export, upload export/ to the Hugging Face Hub (main process; token from HF_TOKEN or 'hf auth login', never written)")
    repo_id: str = knob("", "Hub model repo 'user/name' (or 'org/name'); required when push = true")
    private: bool = knob(False, "create the repo as private (an existing repo keeps its visibility)")
    create_pr: bool = knob(False, "open a pull request instead of committing to the main branch")
    full_method: bool = knob(False, "also export method.safetensors (every head, EMA target, queue) for ssl_kit.load_method")

    def __post_init__(self) -> None:
        if self.repo_id and (not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", self.repo_id) or ".." in self.repo_id):
            raise ValueError(f"key 'repo_id' must be of the form 'user/name', got {self.repo_id!r}")
        if self.push and not self.repo_id:
            raise ValueError("key 'push' is true but 'repo_id' is not set (e.g. repo_id = \"user/name\")")


SECTIONS = ("method", "backbone", "data", "views", "optim", "train", "eval", "expected", "hub")
TOP_LEVEL_KEYS = ("extends", "description")


@dataclasses.dataclass(frozen=True)
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

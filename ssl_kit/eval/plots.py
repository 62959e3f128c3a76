"""Readable PNG plots of a run: loss and learning rate, online-probe accuracy, and a 2-D map of
test features coloured by class (PCA or t-SNE from scikit-learn). matplotlib, headless."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a run's log.jsonl (the last record wins where a resumed run repeats a step)."""
    if not path.is_file():
        return []
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if isinstance(record, dict) and "step" in record:
            by_step[int(record["step"])] = record
    return [by_step[s] for s in sorted(by_step)]


def plot_training(records: list[dict[str, Any]], out: Path, title: str) -> list[Path]:
    """``loss.png`` (SSL loss, online-probe loss, learning rate) and ``online_probe.png``."""
    plt = _pyplot()
    written: list[Path] = []
    steps = [r["step"] for r in records]
    if any("loss" in r for r in records):
        fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
        ax.plot(steps, [r.get("loss", np.nan) for r in records], label="SSL loss", color="tab:blue")
        if any("online_probe_loss" in r for r in records):
            ax.plot(steps, [r.get("online_probe_loss", np.nan) for r in records], label="online probe CE",
                    color="tab:orange", alpha=0.8)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        lr_ax = ax.twinx()
        lr_ax.plot(steps, [r.get("lr", np.nan) for r in records], label="learning rate", color="tab:gray", ls="--")
        lr_ax.set_ylabel("learning rate")
        lines = ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
        ax.legend(lines, [line.get_label() for line in lines], loc="upper right")
        ax.set_title(f"{title}: training loss and learning rate")
        fig.tight_layout()
        written.append(out / "loss.png")
        fig.savefig(written[-1])
        plt.close(fig)
    if any("online_probe_acc" in r for r in records):
        fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
        ax.plot(steps, [r.get("online_probe_acc", np.nan) for r in records], color="tab:green")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("top-1 on the training batch (%)")
        ax.set_title(f"{title}: online linear probe (augmented training views)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        written.append(out / "online_probe.png")
        fig.savefig(written[-1])
        plt.close(fig)
    return written


def plot_embedding(
    features: Any, labels: Any, out: Path, title: str, method: str = "pca", samples: int = 2000,
    classes: list[str] | None = None, seed: int = 0,
) -> Path:
    """``embedding.png``: test features projected to 2-D (PCA or t-SNE), coloured by class."""
    plt = _pyplot()
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if len(x) > samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), samples, replace=False))
        x, y = x[keep], y[keep]
    if method == "tsne":
        from sklearn.manifold import TSNE  # imported when used: its import is slow

        xy = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, (len(x) - 1) / 3)).fit_transform(x)
    else:
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(x)
    fig, ax = plt.subplots(figsize=(6.5, 6), dpi=120)
    cmap = plt.get_cmap("tab10" if len(np.unique(y)) <= 10 else "tab20")
    for i, c in enumerate(np.unique(y)):
        name = classes[c] if classes is not None and 0 <= c < len(classes) else str(c)
        ax.scatter(xy[y == c, 0], xy[y == c, 1], s=6, alpha=0.7, color=cmap(i % cmap.N), label=name)
    if len(np.unique(y)) <= 20:
        ax.legend(markerscale=3, fontsize=7, loc="best")
    ax.set_title(f"{title}: test features ({method.upper() if method == 'pca' else 't-SNE'}, {len(x)} images)")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path = out / "embedding.png"
    fig.savefig(path)
    plt.close(fig)
    return path

"""Results as text: the tables of results.md and model cards, and the ``[expected]`` comparison.
Pure functions of result dicts (every number names its protocol)."""

from __future__ import annotations

from typing import Any

from ssl_kit.config import to_dict

ROW_NAMES = {"raw": "raw pixels", "random_init": "random init", "trained": "trained"}


def format_table(rows: dict[str, dict[str, float]], columns: list[tuple[str, str]]) -> str:
    """A markdown table: one row per feature source, one column per (title, metric key)."""
    header = ["features"] + [title for title, _ in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row, metrics in rows.items():
        cells = [ROW_NAMES.get(row, row)]
        cells += [f"{metrics[key]:.2f}" if key in metrics else "-" for _, key in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def protocol_of(metric: str, protocols: dict[str, str]) -> str:
    """The protocol of a results key: the evaluator whose name prefixes it (the longest)."""
    for name in sorted(protocols, key=len, reverse=True):
        if metric == name or metric.startswith(name + "_"):
            return protocols[name]
    if len(protocols) == 1:
        return next(iter(protocols.values()))
    return "protocol not recorded"


def results_table(results: dict[str, Any]) -> str:
    """Markdown: one line per number, naming its features, metric, and evaluation protocol."""
    rows = results.get("results") or {}
    protocols = results.get("protocols") or {}
    if not rows:
        return f"No evaluation results ({results.get('note', 'evaluation disabled')})."
    lines = ["| features | metric | value | protocol |", "|---|---|---|---|"]
    for row, metrics in rows.items():
        for key, value in metrics.items():
            shown = f"{value:.2f}" if isinstance(value, (int, float)) else str(value)
            lines.append(f"| {ROW_NAMES.get(row, row)} | `{key}` | {shown} | {protocol_of(key, protocols)} |")
    return "\n".join(lines)


def compare_expected(expected: Any, trained: dict[str, float]) -> dict[str, Any]:
    """The recipe's ``[expected]`` number beside the measured one of the SAME protocol: its
    ``metric`` key must be in this run's results (e.g. ``online_linear_top1`` for an "online
    linear" number), otherwise nothing is compared and the summary says why."""
    out: dict[str, Any] = {**to_dict(expected), "measured": None}
    what = f"expected {expected.value:.2f} ({expected.source}, {expected.protocol}"
    what += f", {expected.epochs} epochs)" if expected.epochs else ")"
    if expected.metric and expected.metric in trained:
        out["measured"] = trained[expected.metric]
        out["summary"] = f"{what}; measured {out['measured']:.2f} with the same protocol ({expected.metric})"
    elif expected.metric:
        out["summary"] = (f"{what}; not compared: this run reports no '{expected.metric}' (its evaluators or "
                          "online probe are off)")
    else:
        out["summary"] = f"{what}; not compared: [expected] names no metric of this run with that protocol"
    return out

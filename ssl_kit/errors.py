"""User-facing errors.

Anything the user can fix (a recipe key, a file, a component name) raises :class:`UserError` (or a
subclass). The CLI prints its message on one line and exits with code 2, without a traceback.
Internal bugs raise ordinary exceptions and keep their traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""


class RecipeError(UserError):
    """A recipe (file or override) is malformed or invalid."""


class PluginError(UserError):
    """A plugin failed to load, or two plugins claim one component name."""


class DataError(UserError):
    """A dataset or data file cannot be read."""


class CheckpointError(UserError):
    """A checkpoint or export cannot be read."""


def one_line(err: BaseException, limit: int = 400) -> str:
    """An exception's message on one line (whitespace collapsed), at most ``limit`` characters; its
    type name when the message is empty. torch.load's refusal of a pickled object is cut to its
    reason: its advice to load with ``weights_only=False`` (unpickling, which runs the file's code)
    is never relayed to a user."""
    text = str(err)
    if text.startswith("Weights only load failed"):
        if "WeightsUnpickler error:" in text:
            reason = text.split("WeightsUnpickler error:", 1)[1].split(". Please", 1)[0]
        else:
            reason = text.rsplit("trusted source.", 1)[-1].split("Check the documentation", 1)[0]
        text = f"it holds objects torch.load(weights_only=True) refuses to unpickle ({reason.strip().rstrip('.')})"
    return " ".join(text.split())[:limit] or type(err).__name__


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest choice, or an empty string."""
    matches = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{matches[0]}'?" if matches else ""

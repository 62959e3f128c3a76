"""Test helpers for ssl_kit and its plugins.

``temporary_plugin(obj, name)`` registers a plugin object (a module, class instance or namespace
with ``@hookimpl`` functions) for the duration of a ``with`` block::

    class Flipped:
        @hookimpl
        def register_methods(self, register):
            register("simclr_flipped", FlippedSimCLR, config=SimCLRConfig)

    with temporary_plugin(Flipped(), "flipped"):
        train(load_recipe("recipes/quickstart.toml", ["method.name=simclr_flipped"]))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ssl_kit.errors import PluginError
from ssl_kit.plugins import PluginInfo, get_registry


@contextlib.contextmanager
def temporary_plugin(plugin: Any, name: str, distribution: str = "", version: str = "0") -> Iterator[PluginInfo]:
    """Register ``plugin`` in the process-wide registry, and remove it afterwards."""
    registry = get_registry()
    info = registry.add_plugin(plugin, name, distribution or f"{name} (test)", version)
    try:
        if info.status != "ok":
            raise PluginError(f"temporary plugin '{name}' failed to register: {info.error}")
        yield info
    finally:
        registry.remove_plugin(name)


def need(module: str) -> Any:
    """Import an optional extra's module in a test; skip when it is missing, but fail under
    ``CI=true`` (CI installs every extra, so a skip there would hide a broken install)."""
    import importlib
    import os

    import pytest

    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install the extra providing '{module}'")
        pytest.skip(f"optional dependency '{module}' is not installed")

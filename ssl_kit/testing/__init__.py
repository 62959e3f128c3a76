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

from ssl_kit.testing.helpers import (
    assert_same_runs,
    compare_runs,
    need,
    no_gradient_plugin,
    run_contract,
    run_workers,
    sign_flipped_plugin,
    temporary_plugin,
)
from ssl_kit.testing.suite import MethodContract, first_batch

__all__ = ["MethodContract", "assert_same_runs", "compare_runs", "first_batch", "need", "no_gradient_plugin", "run_contract",
           "run_workers", "sign_flipped_plugin", "temporary_plugin"]

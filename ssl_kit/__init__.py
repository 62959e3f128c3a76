"""ssl_kit: self-supervised visual representation learning with pluggable methods.

Public API: ``hookimpl`` and ``register_recipe_folder`` for plugins; ``Method``, ``ViewSpec`` and
``DatasetInfo`` for component authors; ``load_recipe`` and ``train`` (build -> train -> evaluate
-> export -> push) to run recipes from Python; ``from_pretrained``, ``load_encoder``,
``load_method`` and ``push_to_hub`` to load and share exports. Losses live in ``ssl_kit.losses``.
The layers and what each module may import: docs/architecture.md.
"""

import importlib

from ssl_kit.hooks import hookimpl, register_recipe_folder
from ssl_kit.version import __version__

__all__ = ["DatasetInfo", "Method", "ViewSpec", "__version__", "from_pretrained", "hookimpl", "load_encoder",
           "load_method", "load_recipe", "push_to_hub", "register_recipe_folder", "train"]

# Imported on first use: `import ssl_kit` (plugin discovery, `from ssl_kit import hookimpl`) stays
# light, and no module inside ssl_kit ever imports this facade.
_LAZY = {
    "DatasetInfo": "ssl_kit.spec",
    "ViewSpec": "ssl_kit.spec",
    "Method": "ssl_kit.methods.base",
    "load_recipe": "ssl_kit.recipe",
    "train": "ssl_kit.run:run",
    "from_pretrained": "ssl_kit.hub",
    "load_method": "ssl_kit.hub",
    "push_to_hub": "ssl_kit.hub",
    "load_encoder": "ssl_kit.loading",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'ssl_kit' has no attribute {name!r}")
    module, _, attribute = _LAZY[name].partition(":")
    return getattr(importlib.import_module(module), attribute or name)

"""ssl_kit: self-supervised visual representation learning with pluggable methods.

Public API: ``hookimpl`` for plugins, ``Method`` and ``ViewSpec`` for method authors,
``load_recipe`` and ``train`` to run recipes from Python; ``from_pretrained``, ``load_method`` and
``push_to_hub`` to load and share exports (:mod:`ssl_kit.hub`). Losses live in ``ssl_kit.losses``.
"""

__version__ = "0.1.0"

from ssl_kit.plugins import hookimpl  # noqa: E402

__all__ = ["hookimpl", "Method", "ViewSpec", "load_recipe", "train", "from_pretrained", "load_method",
           "push_to_hub", "__version__"]


def __getattr__(name: str):  # lazy: keep `import ssl_kit` light for plugin discovery
    if name == "Method":
        from ssl_kit.methods.base import Method

        return Method
    if name == "ViewSpec":
        from ssl_kit.data.views import ViewSpec

        return ViewSpec
    if name == "load_recipe":
        from ssl_kit.recipe import load_recipe

        return load_recipe
    if name == "train":
        from ssl_kit.trainer import train

        return train
    if name in ("from_pretrained", "load_method", "push_to_hub"):
        from ssl_kit import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'ssl_kit' has no attribute {name!r}")

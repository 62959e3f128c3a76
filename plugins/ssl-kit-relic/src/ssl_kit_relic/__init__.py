"""ssl_kit plugin: ReLIC (Mitrovic et al., ICLR 2021) with ReLICv2's multi-crop, and its recipes."""

from importlib.resources import files

from ssl_kit import hookimpl, register_recipe_folder

from ssl_kit_relic.loss import RelicLoss, relic_loss
from ssl_kit_relic.method import ReLIC, ReLICConfig

__all__ = ["ReLIC", "ReLICConfig", "RelicLoss", "relic_loss"]


@hookimpl
def register_methods(register):
    register("relic", ReLIC, config=ReLICConfig)


@hookimpl
def register_recipes(register):
    register_recipe_folder(register, files("ssl_kit_relic") / "recipes")

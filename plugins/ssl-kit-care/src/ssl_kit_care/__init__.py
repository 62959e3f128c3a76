"""ssl_kit plugin: CARE (Gupta et al., ICLR 2024) on SimCLR and MoCo v2, a colour-sensitivity evaluator, and recipes."""

from importlib.resources import files

from ssl_kit import hookimpl, register_recipe_folder

from ssl_kit_care.loss import equivariance_loss
from ssl_kit_care.method import CARE, CAREConfig
from ssl_kit_care.presets import PRESETS
from ssl_kit_care.sensitivity import ColourSensitivity, ColourSensitivityConfig, measure_sensitivity, sensitivity_scores

__all__ = ["CARE", "CAREConfig", "ColourSensitivity", "ColourSensitivityConfig", "equivariance_loss",
           "measure_sensitivity", "sensitivity_scores"]


@hookimpl
def register_methods(register):
    register("care", CARE, config=CAREConfig)


@hookimpl
def register_evaluators(register):
    register("colour_sensitivity", ColourSensitivity, config=ColourSensitivityConfig)


@hookimpl
def register_view_presets(register):
    for name, factory in PRESETS.items():
        register(name, factory)


@hookimpl
def register_recipes(register):
    register_recipe_folder(register, files("ssl_kit_care") / "recipes")

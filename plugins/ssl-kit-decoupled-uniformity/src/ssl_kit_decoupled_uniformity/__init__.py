"""ssl_kit plugin: Decoupled Uniformity (Dufumier et al., ICML 2023) with kernel priors, datasets with a computed thumbnail prior, a cheap digits preset, and its recipes."""

from importlib.resources import files

from ssl_kit import hookimpl, register_recipe_folder

from ssl_kit_decoupled_uniformity.loss import (
    DecoupledUniformityLoss,
    centroid_weights,
    decoupled_uniformity_loss,
    prior_kernel,
)
from ssl_kit_decoupled_uniformity.method import (
    DecoupledUniformity,
    DecoupledUniformityConfig,
    DecoupledUniformityProjector,
    FirstLayerEncoder,
)
from ssl_kit_decoupled_uniformity.presets import preset_digits_crops
from ssl_kit_decoupled_uniformity.priors import (
    DigitsThumbnailConfig,
    ImageFolderThumbnailConfig,
    digits_thumbnail_prior,
    image_folder_thumbnail_prior,
    thumbnail_prior,
)

__all__ = [
    "DecoupledUniformity",
    "DecoupledUniformityConfig",
    "DecoupledUniformityLoss",
    "DecoupledUniformityProjector",
    "DigitsThumbnailConfig",
    "FirstLayerEncoder",
    "ImageFolderThumbnailConfig",
    "centroid_weights",
    "decoupled_uniformity_loss",
    "digits_thumbnail_prior",
    "image_folder_thumbnail_prior",
    "preset_digits_crops",
    "prior_kernel",
    "thumbnail_prior",
]


@hookimpl
def register_methods(register):
    register("decoupled_uniformity", DecoupledUniformity, config=DecoupledUniformityConfig)


@hookimpl
def register_datasets(register):
    register("digits_thumbnail_prior", digits_thumbnail_prior, config=DigitsThumbnailConfig)
    register("image_folder_thumbnail_prior", image_folder_thumbnail_prior, config=ImageFolderThumbnailConfig)


@hookimpl
def register_view_presets(register):
    register("digits_crops", preset_digits_crops)


@hookimpl
def register_recipes(register):
    register_recipe_folder(register, files("ssl_kit_decoupled_uniformity") / "recipes")

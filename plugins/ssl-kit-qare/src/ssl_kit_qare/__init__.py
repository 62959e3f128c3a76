"""ssl_kit plugin: QARe and SparseCLR (Moskalev et al., ECCV 2022), the Conv4 backbone, and their recipes."""

from importlib.resources import files

from ssl_kit import hookimpl, register_recipe_folder

from ssl_kit_qare.backbone import Conv4, Conv4Config
from ssl_kit_qare.loss import clipped_cosine, lap_loss, qare_regularizer, sparseclr_loss, sparsemax
from ssl_kit_qare.method import (
    QAReProjectionHead,
    SetContrastive,
    SimCLRQARe,
    SimCLRQAReConfig,
    SparseCLR,
    SparseCLRConfig,
    SparseCLRQARe,
    SparseCLRQAReConfig,
)

__all__ = [
    "Conv4",
    "Conv4Config",
    "QAReProjectionHead",
    "SetContrastive",
    "SimCLRQARe",
    "SimCLRQAReConfig",
    "SparseCLR",
    "SparseCLRConfig",
    "SparseCLRQARe",
    "SparseCLRQAReConfig",
    "clipped_cosine",
    "lap_loss",
    "qare_regularizer",
    "sparseclr_loss",
    "sparsemax",
]


@hookimpl
def register_methods(register):
    register("simclr_qare", SimCLRQARe, config=SimCLRQAReConfig)
    register("sparseclr", SparseCLR, config=SparseCLRConfig)
    register("sparseclr_qare", SparseCLRQARe, config=SparseCLRQAReConfig)


@hookimpl
def register_backbones(register):
    register("conv4", Conv4, config=Conv4Config)


@hookimpl
def register_recipes(register):
    register_recipe_folder(register, files("ssl_kit_qare") / "recipes")

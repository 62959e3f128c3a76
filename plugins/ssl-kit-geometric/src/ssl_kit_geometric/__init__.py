"""ssl_kit plugin: Geometric Contrastive Learning (Koishekenov et al., ICCV 2023 workshop) for SimCLR,
MoCo v2+, BYOL and SimSiam, and its recipes."""

from importlib.resources import files

from ssl_kit import hookimpl, register_recipe_folder

from ssl_kit_geometric.loss import (
    geodesic_distance,
    geodesic_moco_infonce,
    geodesic_nt_xent,
    geodesic_similarity,
    pairwise_geodesic_similarity,
    released_byol_loss,
    released_simsiam_loss,
    squared_geodesic_loss,
)
from ssl_kit_geometric.method import (
    GeometricBYOL,
    GeometricBYOLConfig,
    GeometricMoCo,
    GeometricMoCoConfig,
    GeometricSimCLR,
    GeometricSimCLRConfig,
    GeometricSimSiam,
    GeometricSimSiamConfig,
)

__all__ = [
    "GeometricBYOL",
    "GeometricBYOLConfig",
    "GeometricMoCo",
    "GeometricMoCoConfig",
    "GeometricSimCLR",
    "GeometricSimCLRConfig",
    "GeometricSimSiam",
    "GeometricSimSiamConfig",
    "geodesic_distance",
    "geodesic_moco_infonce",
    "geodesic_nt_xent",
    "geodesic_similarity",
    "pairwise_geodesic_similarity",
    "released_byol_loss",
    "released_simsiam_loss",
    "squared_geodesic_loss",
]


@hookimpl
def register_methods(register):
    register("geometric_simclr", GeometricSimCLR, config=GeometricSimCLRConfig)
    register("geometric_mocov2plus", GeometricMoCo, config=GeometricMoCoConfig)
    register("geometric_byol", GeometricBYOL, config=GeometricBYOLConfig)
    register("geometric_simsiam", GeometricSimSiam, config=GeometricSimSiamConfig)


@hookimpl
def register_recipes(register):
    register_recipe_folder(register, files("ssl_kit_geometric") / "recipes")

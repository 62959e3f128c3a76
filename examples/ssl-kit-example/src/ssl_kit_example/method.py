"""Alignment and uniformity on the hypersphere (Wang & Isola, ICML 2020) as an ssl_kit method."""

import dataclasses

import torch
import torch.nn.functional as F

from ssl_kit import Method, ViewSpec
from ssl_kit.config import knob
from ssl_kit.distributed import all_reduce_sum, gather, rank_offset
from ssl_kit.losses import exact, working_dtype
from ssl_kit.methods.heads import mlp


@exact
def align_uniform_loss(z1, z2, alpha=2.0, t=2.0, uniform_weight=1.0):
    """Wang & Isola (2020), eq. 4-5:
        L_align   = mean_i ||x_i - y_i||^alpha
        L_uniform = (log mean_{i!=j} exp(-t ||x_i - x_j||^2) + the same for y) / 2
    with x = z1/||z1||, y = z2/||z2||, negatives gathered from every process.
    Args: z1, z2 (N, D) raw projections of two views of the same N images.
    Returns: (loss, align, uniform) scalars; float64 in, float64 out.
    """
    x, y = F.normalize(working_dtype(z1), dim=1), F.normalize(working_dtype(z2), dim=1)
    align = (x - y).norm(dim=1).pow(alpha).mean()

    def uniform(a):
        # a mean over all pairs of all processes: sum locally, then all-reduce the sums (with
        # gradient), so that N processes compute exactly the one-process loss
        every = gather(a)
        not_self = torch.ones(len(a), len(every), dtype=torch.bool, device=a.device)
        rows = torch.arange(len(a), device=a.device)
        not_self[rows, rank_offset(len(a)) + rows] = False
        kernel = torch.exp(-t * torch.cdist(a, every).pow(2))[not_self]
        return torch.log(all_reduce_sum(kernel.sum()) / all_reduce_sum(kernel.new_tensor(float(kernel.numel()))))

    uni = (uniform(x) + uniform(y)) / 2
    return align + uniform_weight * uni, align, uni


@dataclasses.dataclass
class AlignUniformConfig:
    alpha: float = knob(2.0, "exponent of the alignment term (paper: 2)", gt=0)
    t: float = knob(2.0, "scale of the uniformity kernel (paper: 2)", gt=0)
    uniform_weight: float = knob(1.0, "weight of the uniformity term (paper: 1)", min=0)
    proj_dim: int = knob(32, "projector output width", min=1)


class AlignUniform(Method):
    """backbone -> MLP projector -> alignment + uniformity of two views."""

    views = ViewSpec(global_views=2, preset="simclr")

    def __init__(self, backbone, cfg: AlignUniformConfig):
        super().__init__(backbone, cfg)
        self.projector = mlp(backbone.num_features, 2 * cfg.proj_dim, cfg.proj_dim)

    def forward(self, batch):
        h = [self.backbone(v) for v in batch["global"]]
        z1, z2 = (self.projector(x) for x in h)
        loss, align, uniform = align_uniform_loss(z1, z2, self.cfg.alpha, self.cfg.t, self.cfg.uniform_weight)
        # features: the backbone's, view-major; the online linear probe trains on them (detached)
        return {"loss": loss, "align": align.detach(), "uniform": uniform.detach(), "features": torch.cat(h)}

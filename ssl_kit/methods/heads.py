"""Head builders shared by methods and plugins."""

from __future__ import annotations

from torch import nn


def mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    num_layers: int = 2,
    batch_norm: bool = False,
    last_batch_norm: bool = False,
    bias: bool = True,
) -> nn.Sequential:
    """Linear(-BN)-ReLU blocks then a final Linear(-BN without affine).

    ``num_layers`` counts Linear layers. ``batch_norm`` adds BN after each hidden Linear (its bias
    is then dropped); ``last_batch_norm`` adds a non-affine BN at the end (SimSiam's projector).
    ``bias = False`` drops the bias of every Linear, the last one included (ReLIC's critic; a
    loss that ignores a shift of its input, VICReg's, gives a last bias no gradient).
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=bias and not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=bias and not last_batch_norm))
    if last_batch_norm:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)

"""The example plugin runs ssl_kit's method contract suite, plus a hand-computed loss value."""

from importlib.resources import files

import pytest
import torch

from ssl_kit.testing import MethodContract
from ssl_kit_example import align_uniform_loss


def test_loss_by_hand():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    z2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    loss, align, uniform = align_uniform_loss(z1, z2, alpha=2.0, t=2.0)
    assert align.item() == pytest.approx(2.0)  # |e1 - e2|^2 = 2
    assert uniform.item() == pytest.approx(-4.0)  # log exp(-2 * 2)
    assert loss.item() == pytest.approx(-2.0) and loss.dtype == torch.float64


class TestAlignUniformContract(MethodContract):
    recipe = str(files("ssl_kit_example").joinpath("recipes", "example-align-uniform.toml"))

    def loss_for_gradcheck(self):
        z1 = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
        z2 = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
        return (lambda a, b: align_uniform_loss(a, b)[0]), (z1, z2)

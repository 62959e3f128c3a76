"""SimCLR runs the method contract suite that every plugin runs (ssl_kit.testing)."""

from pathlib import Path

import torch

from ssl_kit.losses import nt_xent
from ssl_kit.testing import MethodContract


class TestSimCLRContract(MethodContract):
    recipe = str(Path(__file__).parent / "contract" / "simclr.toml")
    two_processes = False  # tests/test_distributed.py covers every built-in in one launch

    def loss_for_gradcheck(self):
        z = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
        return (lambda z: nt_xent(z, n_views=2, temperature=0.5)), (z,)

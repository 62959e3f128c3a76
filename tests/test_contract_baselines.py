"""MoCo v2+, BYOL and SimSiam run the method contract suite (2 processes = 1 process is covered
for every built-in by the single launch of tests/test_distributed.py)."""

from pathlib import Path

import torch
import torch.nn.functional as F

from ssl_kit.losses import byol_loss, moco_infonce, simsiam_loss
from ssl_kit.testing import MethodContract

CONTRACT = Path(__file__).parent / "contract"


class TestBYOLContract(MethodContract):
    recipe = str(CONTRACT / "byol.toml")
    two_processes = False

    def loss_for_gradcheck(self):
        p = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
        return (lambda p: byol_loss(p, torch.ones(6, 4, dtype=torch.float64))), (p,)


class TestSimSiamContract(MethodContract):
    recipe = str(CONTRACT / "simsiam.toml")
    two_processes = False

    def loss_for_gradcheck(self):
        p = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
        return (lambda p: simsiam_loss(p, torch.arange(24.0, dtype=torch.float64).view(6, 4))), (p,)


class TestMoCoContract(MethodContract):
    recipe = str(CONTRACT / "mocov2plus.toml")
    two_processes = False

    def loss_for_gradcheck(self):
        torch.manual_seed(0)
        k = F.normalize(torch.randn(5, 4, dtype=torch.float64), dim=1)
        queue = F.normalize(torch.randn(4, 7, dtype=torch.float64), dim=0)
        q = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
        return (lambda q: moco_infonce(F.normalize(q, dim=1), k, queue, 0.2)), (q,)

"""Optimizers, parameter groups and the per-step learning-rate schedule."""

import math

import pytest
import torch
from timm.optim import Lars
from torch import nn

from ssl_kit.build import build_optimizer, lr_factor, param_groups
from ssl_kit.methods.base import Method
from ssl_kit.recipe import OptimConfig


class Net(Method):
    def __init__(self):
        super().__init__(nn.Identity())
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)


def optimizer(net, **kw):
    cfg = OptimConfig(lr_scaling="none", **kw)
    return build_optimizer(param_groups(net, cfg.weight_decay, cfg.exclude_bias_norm), cfg, lr=cfg.lr)


def test_biases_and_norms_get_no_weight_decay():
    net = Net()
    decay, no_decay = param_groups(net, 1e-4, exclude_bias_norm=True)
    names = {id(p): n for n, p in net.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["conv.weight", "fc.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == ["bn.bias", "bn.weight", "conv.bias", "fc.bias"]
    assert no_decay["weight_decay"] == 0.0
    assert len(param_groups(net, 1e-4, exclude_bias_norm=False)) == 1


def test_method_param_groups_take_precedence():
    net = Net()
    net.param_groups = lambda: [{"params": list(net.fc.parameters()), "lr": 0.5}]
    assert param_groups(net, 1e-4, True) == net.param_groups()


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("adamw", torch.optim.AdamW), ("lars", Lars)])
def test_optimizers(name, cls):
    opt = optimizer(Net(), lr=0.3, name=name, weight_decay=1e-4)
    assert isinstance(opt, cls)
    assert opt.param_groups[0]["weight_decay"] == 1e-4 and opt.param_groups[1]["weight_decay"] == 0.0


def test_lars_does_not_adapt_excluded_parameters():
    """timm's Lars adapts only groups with weight decay: biases and norms follow plain SGD."""
    net = Net()
    opt = optimizer(net, lr=0.1, name="lars", weight_decay=1e-4, momentum=0.0)
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    before = net.fc.bias.detach().clone()
    opt.step()
    assert torch.allclose(net.fc.bias, before - 0.1)


def test_warmup_then_cosine_to_min_lr():
    f = lambda s: lr_factor(s, total=110, warmup=10, start_factor=0.1, min_factor=0.01, schedule="cosine")  # noqa: E731
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.01 + 0.99 * 0.5)
    assert f(110) == pytest.approx(0.01)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))
    assert lr_factor(50, 100, 0, 0.0, 0.0, "constant") == 1.0
    assert lr_factor(25, 100, 0, 0.0, 0.0, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))

"""BYOL / SimSiam / MoCo losses by hand, the EMA momentum schedule, the queue."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssl_kit.backbones import ConvNet, ConvNetConfig
from ssl_kit.errors import UserError
from ssl_kit.losses import byol_loss, moco_infonce, simsiam_loss
from ssl_kit.methods.ema import EMA, cosine_momentum
from ssl_kit.methods.moco import MoCo, MoCoConfig
from ssl_kit.methods.queue import Queue


def test_byol_loss_by_hand_and_stop_gradient():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    z = torch.tensor([[1.0, 1.0], [0.0, -3.0]], dtype=torch.float64, requires_grad=True)
    loss = byol_loss(p, z)
    # rows: cos = 1/sqrt(2) and -1  ->  mean(2 - 2cos) = (2 - sqrt(2) + 4) / 2
    assert loss.item() == pytest.approx((6 - math.sqrt(2)) / 2, rel=1e-12)
    assert loss.dtype == torch.float64
    loss.backward()
    assert z.grad is None and p.grad is not None


def test_simsiam_loss_by_hand():
    p = torch.tensor([[3.0, 4.0], [1.0, 0.0]], dtype=torch.float64)
    z = torch.tensor([[4.0, 3.0], [0.0, 5.0]], dtype=torch.float64)
    assert simsiam_loss(p, z).item() == pytest.approx(-(24 / 25 + 0.0) / 2, rel=1e-12)


def test_moco_infonce_by_hand():
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    k = torch.tensor([[0.6, 0.8]], dtype=torch.float64)
    queue = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)  # (D, K): keys (0,1), (-1,0)
    t = 0.5
    logits = [0.6 / t, 0.0 / t, -1.0 / t]
    expected = -logits[0] + math.log(sum(math.exp(x) for x in logits))
    assert moco_infonce(q, k, queue, t).item() == pytest.approx(expected, rel=1e-12)


def test_similarity_options():
    torch.manual_seed(0)
    q, k = F.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1), F.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1)
    queue = F.normalize(torch.randn(3, 5, dtype=torch.float64), dim=0)
    dot = lambda a, b: a @ b.T  # noqa: E731
    assert torch.allclose(moco_infonce(q, k, queue, similarity=dot), moco_infonce(q, k, queue))
    cos = lambda a, b: F.cosine_similarity(a, b, dim=1)  # noqa: E731
    assert torch.allclose(byol_loss(q, k, similarity=cos), byol_loss(q, k))


def test_cosine_momentum_schedule_at_chosen_steps():
    assert cosine_momentum(0, 100, 0.99, 1.0) == pytest.approx(0.99)
    assert cosine_momentum(50, 100, 0.99, 1.0) == pytest.approx(0.995)
    assert cosine_momentum(100, 100, 0.99, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(25, 100, 0.99, 0.999) == pytest.approx(0.999 - 0.009 * (math.cos(math.pi / 4) + 1) / 2)


def test_ema_update_averages_parameters_and_copies_buffers():
    online = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(online, base=0.9, final=1.0)
    before = ema.target[0].weight.clone()
    with torch.no_grad():
        online[0].weight.add_(1.0)
        online[1].running_mean.fill_(3.0)
    ema.update(online, step=1, max_steps=10)
    assert torch.allclose(ema.target[0].weight, 0.9 * before + 0.1 * online[0].weight)
    assert torch.equal(ema.target[1].running_mean, online[1].running_mean)
    assert float(ema.momentum) == pytest.approx(cosine_momentum(1, 10, 0.9, 1.0))
    assert not any(p.requires_grad for p in ema.parameters())
    assert "momentum" in dict(ema.named_buffers())  # travels with checkpoints


def test_queue_enqueues_in_order_and_checks_the_batch():
    queue = Queue(size=6, dim=2, queues=2)
    keys = torch.arange(12.0).view(2, 3, 2)
    queue.enqueue(keys)
    assert torch.equal(queue.queue[:, :, :3], keys.transpose(1, 2)) and int(queue.pointer) == 3
    queue.enqueue(keys + 100)
    assert int(queue.pointer) == 0 and torch.equal(queue.queue[1, :, 3:], (keys[1] + 100).T)
    with pytest.raises(UserError, match="queue_size 6 must be divisible by the global batch 4"):
        queue.enqueue(torch.zeros(2, 4, 2))


def test_moco_enqueues_in_after_step_and_a_skipped_step_leaves_the_queue():
    torch.manual_seed(0)
    moco = MoCo(ConvNet(ConvNetConfig(channels=[4], pool_after=[])), MoCoConfig(queue_size=8, proj_hidden_dim=8,
                                                                                proj_output_dim=4))
    batch = {"global": [torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)]}
    before = moco.queue.queue.clone()
    out = moco(batch)
    assert torch.equal(moco.queue.queue, before) and int(moco.queue.pointer) == 0  # forward only stages its keys
    out["loss"].backward()  # the loss saw the queue as it was; enqueueing later must not disturb it
    moco.skip_step()  # a skipped (non-finite) step: the staged keys are dropped
    moco.after_step(1, 10)
    assert torch.equal(moco.queue.queue, before) and int(moco.queue.pointer) == 0
    moco(batch)
    moco(batch)  # two micro-batches of one accumulated step: both enqueued after it, in order
    moco.after_step(2, 10)
    assert int(moco.queue.pointer) == 0 and not torch.equal(moco.queue.queue, before)  # 8 keys: wrapped around
    assert moco.staged_keys == []

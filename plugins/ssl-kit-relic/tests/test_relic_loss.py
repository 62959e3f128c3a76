"""relic_loss against hand-computed values, its gradients (clamped scale, cancelling bias), dtypes."""

import math

import pytest
import torch

from ssl_kit_relic import relic_loss

F64 = torch.float64


def log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def softmax(values):
    total = sum(math.exp(v) for v in values)
    return [math.exp(v) / total for v in values]


def by_hand(logits, variant):
    """C and KL of the ReLIC loss (the discrimination term and the KL invariance penalty between
    the row and column softmax of L, as ssl_kit_relic.loss documents them) with plain floats, for
    a small list-of-lists L."""
    n = len(logits)
    if variant == "contrastive":
        c = -sum(math.log(softmax(logits[i])[i]) for i in range(n)) / n
    else:
        c = -sum(log_sigmoid((1 if i == j else -1) * logits[i][j]) for i in range(n) for j in range(n)) / n
    p = [softmax(row) for row in logits]  # online i over targets
    columns = [softmax([logits[k][j] for k in range(n)]) for j in range(n)]  # column j over online rows
    q = [[columns[i][j] for j in range(n)] for i in range(n)]  # transposed: target i over online rows
    kl = sum(q[i][j] * (math.log(q[i][j]) - math.log(p[i][j])) for i in range(n) for j in range(n)) / n
    return c, kl


# online rows normalise to (1, 0) and (1, 1)/sqrt(2); target rows are e1, e2: an asymmetric cosine matrix
ONLINE = [[3.0, 0.0], [2.0, 2.0]]
TARGET = [[1.0, 0.0], [0.0, 0.5]]
COSINE = [[1.0, 0.0], [1 / math.sqrt(2), 1 / math.sqrt(2)]]


def case(scale, bias=0.0):
    return [[scale * c + bias for c in row] for row in COSINE]


def tensors(log_scale, bias, requires_grad=False):
    online, target = torch.tensor(ONLINE, dtype=F64), torch.tensor(TARGET, dtype=F64)
    tau = torch.tensor(log_scale, dtype=F64, requires_grad=requires_grad)
    b = torch.tensor(bias, dtype=F64, requires_grad=requires_grad)
    return online, target, tau, b


def test_contrastive_matches_hand_computed_value_unclamped():
    online, target, tau, b = tensors(math.log(2.0), 0.0)
    out = relic_loss(online, target, tau, b)
    c, kl = by_hand(case(2.0), "contrastive")
    assert kl > 0.01  # the case is asymmetric: the invariance term is really exercised
    assert out.kl.item() == pytest.approx(kl, rel=1e-12)
    assert out.loss.item() == pytest.approx(c + kl, rel=1e-12)


def test_scale_is_clamped_at_max_scale_not_log_scale():
    online, target, tau, b = tensors(math.log(10.0), 0.0)
    out = relic_loss(online, target, tau, b, max_scale=5.0, alpha=0.5)
    c, kl = by_hand(case(5.0), "contrastive")
    assert out.loss.item() == pytest.approx(c + 0.5 * kl, rel=1e-12)


def test_siglip_matches_hand_computed_value_with_bias():
    online, target, tau, b = tensors(math.log(3.0), -1.5)
    out = relic_loss(online, target, tau, b, variant="siglip", max_scale=15.0)
    c, kl = by_hand(case(3.0, -1.5), "siglip")
    assert out.kl.item() == pytest.approx(kl, rel=1e-12)
    assert out.loss.item() == pytest.approx(c + kl, rel=1e-12)


def test_equal_views_have_no_invariance_penalty():
    eye = torch.eye(3, dtype=F64)
    out = relic_loss(eye, eye, torch.tensor(0.0, dtype=F64), 0.0)
    assert out.kl.item() == pytest.approx(0.0, abs=1e-15)  # L symmetric: P = Q
    assert out.loss.item() == pytest.approx(math.log(1 + 2 / math.e), rel=1e-12)


def test_clamped_log_scale_has_exactly_zero_gradient():
    online, target, tau, b = tensors(math.log(6.0), 0.0, requires_grad=True)
    relic_loss(online, target, tau, b, max_scale=5.0).loss.backward()
    assert tau.grad is not None and tau.grad.item() == 0.0


def test_unclamped_log_scale_gradient_matches_finite_difference():
    online, target, tau, b = tensors(math.log(2.0), 0.0, requires_grad=True)
    relic_loss(online, target, tau, b).loss.backward()
    h = 1e-6
    c_up, kl_up = by_hand(case(2.0 * math.exp(h)), "contrastive")
    c_down, kl_down = by_hand(case(2.0 * math.exp(-h)), "contrastive")
    numeric = ((c_up + kl_up) - (c_down + kl_down)) / (2 * h)
    assert abs(numeric) > 1e-3
    assert tau.grad.item() == pytest.approx(numeric, rel=1e-6)


def test_contrastive_bias_cancels_and_gets_exactly_zero_gradient():
    torch.manual_seed(0)
    online, target = torch.randn(6, 4, dtype=F64, requires_grad=True), torch.randn(6, 4, dtype=F64)
    tau = torch.tensor(0.3, dtype=F64)
    b = torch.tensor(2.5, dtype=F64, requires_grad=True)
    out = relic_loss(online, target, tau, b)
    assert out.loss.item() == pytest.approx(relic_loss(online, target, tau, 0.0).loss.item(), rel=1e-13)
    out.loss.backward()
    assert b.grad is not None and b.grad.item() == 0.0
    assert online.grad.abs().sum() > 0


def test_siglip_trains_the_bias():
    torch.manual_seed(0)
    online, target = torch.randn(8, 4, dtype=F64), torch.randn(8, 4, dtype=F64)
    tau = torch.tensor(math.log(10.0), dtype=F64)
    b = torch.tensor(0.0, dtype=F64, requires_grad=True)
    optimizer = torch.optim.SGD([b], lr=0.5)
    losses = []
    for _ in range(20):
        loss = relic_loss(online, target, tau, b, variant="siglip", max_scale=15.0).loss
        optimizer.zero_grad()
        loss.backward()
        assert b.grad.item() != 0.0
        optimizer.step()
        losses.append(loss.item())
    # 7 of 8 pairs in every row are negatives: the learned bias goes below zero and the loss falls
    assert b.item() < -1.0 and losses[-1] < losses[0] - 1.0


@pytest.mark.parametrize("variant", ["contrastive", "siglip"])
def test_gradcheck_float64(variant):
    torch.manual_seed(1)
    online = torch.randn(5, 3, dtype=F64, requires_grad=True)
    target = torch.randn(5, 3, dtype=F64, requires_grad=True)
    tau = torch.tensor(0.4, dtype=F64, requires_grad=True)
    b = torch.tensor(-0.7, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda o, t, s, c: relic_loss(o, t, s, c, variant=variant, alpha=0.7), (online, target, tau, b)
    )


@pytest.mark.parametrize("dtype, expected", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                             (torch.float16, torch.float32), (torch.bfloat16, torch.float32)])
def test_dtype_is_kept_or_upcast_never_downcast(dtype, expected):
    torch.manual_seed(0)
    online, target = torch.randn(4, 3).to(dtype), torch.randn(4, 3).to(dtype)
    # float32 parameters, as a method holds them: float64 inputs must still give float64
    tau, b = torch.nn.Parameter(torch.tensor(0.0)), torch.nn.Parameter(torch.tensor(0.0))
    for variant in ("contrastive", "siglip"):
        out = relic_loss(online, target, tau, b, variant=variant)
        assert out.loss.dtype == expected and out.kl.dtype == expected


def test_float64_value_is_not_computed_in_float32():
    torch.manual_seed(0)
    online, target = torch.randn(6, 5, dtype=F64), torch.randn(6, 5, dtype=F64)
    exact = relic_loss(online, target, 0.2, 0.0).loss
    single = relic_loss(online.float(), target.float(), 0.2, 0.0).loss
    assert exact.item() != single.item() and exact.item() == pytest.approx(single.item(), rel=1e-5)


def test_runs_outside_autocast():
    torch.manual_seed(0)
    online, target = torch.randn(4, 3), torch.randn(4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = relic_loss(online, target, 0.0, 0.0)
    assert out.loss.dtype == torch.float32
    assert out.loss.item() == pytest.approx(relic_loss(online, target, 0.0, 0.0).loss.item(), rel=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"variant": "sigmoid"}, "unknown variant 'sigmoid'; allowed: contrastive, siglip"),
    ({"alpha": -1.0}, "alpha >= 0"),
    ({"max_scale": 0.0}, "max_scale > 0"),
])
def test_bad_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        relic_loss(torch.randn(3, 2), torch.randn(3, 2), 0.0, 0.0, **kwargs)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"same shape \(n, D\)"):
        relic_loss(torch.randn(3, 2), torch.randn(4, 2), 0.0, 0.0)

"""The geodesic similarity and the geometric losses: hand-computed values, the released formulas
re-implemented loop by loop, gradients at the clamp, float64 end to end, dtypes and errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_kit.losses import moco_infonce, nt_xent
from ssl_kit_geometric import (
    geodesic_distance,
    geodesic_moco_infonce,
    geodesic_nt_xent,
    geodesic_similarity,
    pairwise_geodesic_similarity,
    released_byol_loss,
    released_simsiam_loss,
    squared_geodesic_loss,
)

F64 = torch.float64


def unit(degrees):
    """2-D unit vectors at the given angles (degrees)."""
    return torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in degrees], dtype=F64)


def angle_between(a, b):
    """The angle in [0, 180] degrees between directions a and b (degrees): no cosine, no arccos."""
    d = abs(a - b) % 360
    return min(d, 360 - d)


def g_of_angle(a, b):
    return 1 - angle_between(a, b) / 180


# --- loop-by-loop re-implementations of the released code (solo-learn fork of the paper) ----------
def normalized(row):
    norm = max(math.sqrt(sum(x * x for x in row)), 1e-12)
    return [x / norm for x in row]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def released_g(c, eps):
    return 1 - math.acos(min(max(c, -1 + eps), 1 - eps)) / math.pi


def released_simclr(z, n_views, temperature, eps=1e-7):
    """solo/losses/simclr.py, geometric branch: exp(g/T) summed over positives (same image, not
    itself) and negatives (other images); -mean log(pos / (pos + neg))."""
    rows = [normalized(r) for r in z.tolist()]
    n = len(rows) // n_views
    image = [i % n for i in range(len(rows))]
    total = 0.0
    for i, zi in enumerate(rows):
        pos = neg = 0.0
        for j, zj in enumerate(rows):
            e = math.exp(released_g(dot(zi, zj), eps) / temperature)
            if image[i] == image[j] and i != j:
                pos += e
            elif image[i] != image[j]:
                neg += e
        total += -math.log(pos / (pos + neg))
    return total / len(rows)


def released_moco(q, k, queue, temperature, eps=1e-6):
    """solo/losses/mocov2plus.py, geometric branch: g of the given dot products, / T, cross-entropy
    with the positive first."""
    q, k, queue = q.tolist(), k.tolist(), queue.T.tolist()
    total = 0.0
    for qn, kn in zip(q, k):
        logits = [released_g(dot(qn, kn), eps) / temperature] + [released_g(dot(qn, c), eps) / temperature for c in queue]
        total += -logits[0] + math.log(sum(math.exp(x) for x in logits))
    return total / len(q)


def released_byol(p, z):
    """solo/losses/byol.py, geometric branch: 2 - 2 mean(1 - cosine_similarity / pi)."""
    sims = [1 - dot(a, b) / max(math.sqrt(dot(a, a) * dot(b, b)), 1e-8) / math.pi for a, b in zip(p.tolist(), z.tolist())]
    return 2 - 2 * sum(sims) / len(sims)


def released_simsiam(p, z, eps=1e-7):
    """solo/losses/simsiam.py, geometric branch: g of each coordinate's product, summed over
    coordinates, negated mean over rows."""
    total = 0.0
    for a, b in zip(p.tolist(), z.tolist()):
        a, b = normalized(a), normalized(b)
        total += sum(released_g(x * y, eps) for x, y in zip(a, b))
    return -total / len(p)


def ours_squared(p, z, eps=1e-7):
    """Our BYOL / SimSiam variant: mean (arccos(clamp(cos))/pi)^2."""
    total = 0.0
    for a, b in zip(p.tolist(), z.tolist()):
        c = dot(normalized(a), normalized(b))
        total += (math.acos(min(max(c, -1 + eps), 1 - eps)) / math.pi) ** 2
    return total / len(p)


# --- g itself ------------------------------------------------------------------------------------
def test_g_at_0_90_and_180_degrees():
    eps = 1e-7
    c = torch.tensor([1.0, math.cos(math.radians(60)), 0.0, -0.5, -1.0], dtype=F64)
    g = geodesic_similarity(c, eps)
    at_zero = 1 - math.acos(1 - eps) / math.pi  # the clamp: 1 - sqrt(2 eps)/pi + O(eps^1.5)
    assert g[0].item() == pytest.approx(at_zero, abs=1e-15) and 1 - 2e-4 < g[0].item() < 1
    assert g[1].item() == pytest.approx(2 / 3, abs=1e-15)
    assert g[2].item() == 0.5
    assert g[3].item() == pytest.approx(1 / 3, abs=1e-15)
    assert g[4].item() == pytest.approx(1 - at_zero, abs=1e-15) and 0 < g[4].item() < 2e-4
    torch.testing.assert_close(geodesic_distance(c, eps), 1 - g, rtol=0, atol=1e-15)


def test_g_is_linear_in_the_angle_unlike_the_cosine():
    angles = torch.linspace(0.1, math.pi - 0.1, 7, dtype=F64)
    g = geodesic_similarity(torch.cos(angles))
    torch.testing.assert_close(g, 1 - angles / math.pi, rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_gradients_are_finite_at_the_clamp_bounds_and_at_plus_minus_one(dtype):
    eps = 1e-7
    c = torch.tensor([-1.0, -1 + eps, -1 + 3 * eps, 0.0, 1 - 3 * eps, 1 - eps, 1.0], dtype=dtype, requires_grad=True)
    geodesic_similarity(c, eps).sum().backward()
    grad = c.grad
    assert torch.isfinite(grad).all(), grad
    # at +-1 and on the bounds themselves the clamp passes no gradient (torch.clamp: 0 at the bound)
    assert [grad[i].item() for i in (0, 1, 5, 6)] == [0.0, 0.0, 0.0, 0.0]
    assert grad[3].item() == pytest.approx(1 / math.pi, rel=1e-6)  # g'(c) = 1 / (pi sqrt(1 - c^2))
    inside = c.detach()[4].double().item()  # 1 - 3 eps as stored in this dtype
    assert grad[4].item() == pytest.approx(1 / (math.pi * math.sqrt(1 - inside**2)), rel=1e-4) and grad[4].item() > 100
    assert grad[2].item() == pytest.approx(grad[4].item(), rel=0.2)


def test_losses_have_finite_gradients_when_views_coincide_or_oppose():
    torch.manual_seed(0)
    x = torch.randn(4, 3)
    z = torch.cat([x, x]).requires_grad_()  # positives at cosine 1, self pairs too
    geodesic_nt_xent(z, temperature=0.05).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    for target in (x, -x):
        p = x.clone().requires_grad_()
        for loss in (squared_geodesic_loss, released_simsiam_loss):
            p.grad = None
            loss(p, target).backward()
            assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("eps, dtype", [(1e-8, torch.float32), (0.0, F64), (1.0, F64)])
def test_eps_that_leaves_one_unclamped_is_an_error(eps, dtype):
    with pytest.raises(ValueError, match="geodesic eps must be in"):
        geodesic_similarity(torch.zeros(3, dtype=dtype), eps)
    with pytest.raises(ValueError, match="geodesic eps must be in"):
        geodesic_nt_xent(torch.randn(4, 3, dtype=dtype), eps=eps)


def test_float64_allows_a_smaller_eps():
    assert geodesic_similarity(torch.ones(1, dtype=F64), 1e-12).item() == pytest.approx(1 - math.acos(1 - 1e-12) / math.pi, abs=1e-15)


def test_pairwise_similarity_normalises_only_when_asked():
    a, b = unit([0, 90]) * 3, unit([60, 180])
    torch.testing.assert_close(pairwise_geodesic_similarity(a, b),
                               torch.tensor([[2 / 3, g_of_angle(0, 180)], [g_of_angle(90, 60), 0.5]], dtype=F64),
                               rtol=0, atol=2e-4)  # 0 vs 180 degrees: the clamp, within 2e-4
    raw = pairwise_geodesic_similarity(a, b, normalize=False)  # dot products of 3 and -3: clamped
    assert raw[0, 0].item() == pytest.approx(1 - math.acos(1 - 1e-7) / math.pi, abs=1e-15)
    assert raw[0, 1].item() == pytest.approx(math.acos(1 - 1e-7) / math.pi, abs=1e-15)


# --- geodesic NT-Xent ----------------------------------------------------------------------------
def test_geodesic_nt_xent_matches_a_hand_computed_case():
    angles = [0, 100, 40, 170]  # view-major: images 0, 1 in view 0, then in view 1
    t = 0.5
    by_hand = 0.0
    for i, a in enumerate(angles):
        positive = angles[(i + 2) % 4]
        others = [b for j, b in enumerate(angles) if j != i]
        by_hand += -g_of_angle(a, positive) / t + math.log(sum(math.exp(g_of_angle(a, b) / t) for b in others))
    by_hand /= 4
    loss = geodesic_nt_xent(unit(angles) * torch.tensor([[1.0], [2.0], [0.5], [3.0]], dtype=F64), temperature=t)
    assert loss.dtype == F64
    assert loss.item() == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("n_views", [2, 3])
def test_geodesic_nt_xent_equals_the_released_formula(n_views):
    torch.manual_seed(n_views)
    z = torch.randn(5 * n_views, 8, dtype=F64)
    for t in (0.05, 0.2):
        assert geodesic_nt_xent(z, n_views=n_views, temperature=t).item() == pytest.approx(
            released_simclr(z, n_views, t), rel=1e-12)


def test_geodesic_nt_xent_is_the_core_nt_xent_with_the_geodesic_similarity():
    torch.manual_seed(0)
    z = torch.randn(12, 5, dtype=F64)
    cosine = nt_xent(z, temperature=0.1)
    geodesic = geodesic_nt_xent(z, temperature=0.1)
    assert geodesic.item() != pytest.approx(cosine.item(), rel=1e-3)
    core = nt_xent(z, temperature=0.1, similarity=lambda a, b: geodesic_similarity(F.normalize(a, dim=1) @ F.normalize(b, dim=1).T))
    assert geodesic.item() == pytest.approx(core.item(), rel=1e-14)


# --- geodesic MoCo -------------------------------------------------------------------------------
def test_geodesic_moco_matches_a_hand_computed_case():
    t = 0.2
    q, k, queue = unit([0]), unit([60]), unit([90, 120, 180]).T
    at_180 = 1 - math.acos(-1 + 1e-6) / math.pi  # the clamp with MoCo's eps
    logits = [2 / 3 / t, 0.5 / t, 1 / 3 / t, at_180 / t]
    by_hand = -logits[0] + math.log(sum(math.exp(x) for x in logits))
    assert geodesic_moco_infonce(q, k, queue, temperature=t).item() == pytest.approx(by_hand, rel=1e-12)


def test_geodesic_moco_equals_the_released_formula_and_differs_from_the_cosine():
    torch.manual_seed(0)
    q, k = F.normalize(torch.randn(6, 8, dtype=F64), dim=1), F.normalize(torch.randn(6, 8, dtype=F64), dim=1)
    queue = F.normalize(torch.randn(8, 20, dtype=F64), dim=0)
    loss = geodesic_moco_infonce(q, k, queue, temperature=0.05)
    assert loss.item() == pytest.approx(released_moco(q, k, queue, 0.05), rel=1e-12)
    assert loss.item() != pytest.approx(moco_infonce(q, k, queue, 0.05).item(), rel=1e-3)


def test_geodesic_moco_trains_only_the_queries():
    torch.manual_seed(0)
    q = F.normalize(torch.randn(4, 3, dtype=F64), dim=1).requires_grad_()
    k = F.normalize(torch.randn(4, 3, dtype=F64), dim=1).requires_grad_()
    queue = F.normalize(torch.randn(3, 5, dtype=F64), dim=0).requires_grad_()
    geodesic_moco_infonce(q, k, queue).backward()
    assert q.grad.abs().sum() > 0 and k.grad is None and queue.grad is None


# --- BYOL / SimSiam: ours and the released formulas -------------------------------------------------
def test_squared_geodesic_loss_matches_hand_computed_values():
    p = unit([0, 0, 30]) * torch.tensor([[2.0], [1.0], [5.0]], dtype=F64)
    z = unit([90, 60, 30])
    by_hand = ((1 / 2) ** 2 + (1 / 3) ** 2 + (math.acos(1 - 1e-7) / math.pi) ** 2) / 3
    assert squared_geodesic_loss(p, z).item() == pytest.approx(by_hand, rel=1e-12)
    opposite = squared_geodesic_loss(unit([0]), unit([180])).item()
    assert opposite == pytest.approx((math.acos(-1 + 1e-7) / math.pi) ** 2, rel=1e-12) and opposite > 0.999


def test_squared_geodesic_loss_equals_its_loop_and_stops_the_target_gradient():
    torch.manual_seed(0)
    p, z = torch.randn(7, 6, dtype=F64, requires_grad=True), torch.randn(7, 6, dtype=F64, requires_grad=True)
    loss = squared_geodesic_loss(p, z)
    assert loss.item() == pytest.approx(ours_squared(p.detach(), z.detach()), rel=1e-12)
    loss.backward()
    assert p.grad.abs().sum() > 0 and z.grad is None


def test_released_byol_formula_on_a_hand_case_rewards_pushing_predictions_away():
    p = unit([0, 0, 0])
    z = unit([0, 90, 180])  # aligned, orthogonal, opposite
    # sim = 1 - cos/pi; loss = 2 - 2 mean(sim) = (2/pi) mean cos, one row at a time:
    values = [released_byol_loss(p[i:i + 1], z[i:i + 1]).item() for i in range(3)]
    assert values == pytest.approx([2 / math.pi, 0.0, -2 / math.pi], abs=1e-15)
    assert values[0] > values[1] > values[2]  # the released loss is lowest when p opposes its target
    assert released_byol_loss(p, z).item() == pytest.approx(0.0, abs=1e-15)


def test_released_simsiam_formula_on_a_hand_case_is_coordinate_wise():
    s = 1 / math.sqrt(2)
    p = torch.tensor([[1.0, 0.0], [s, s], [s, s]], dtype=F64)
    z = torch.tensor([[1.0, 0.0], [s, s], [s, -s]], dtype=F64)
    # products (1, 0): g = (1 - acos(1 - 1e-7)/pi) + 1/2; (1/2, 1/2): 2/3 + 2/3; (1/2, -1/2): 2/3 + 1/3
    rows = [1 - math.acos(1 - 1e-7) / math.pi + 0.5, 4 / 3, 1.0]
    for i, expected in enumerate(rows):
        assert released_simsiam_loss(p[i:i + 1], z[i:i + 1]).item() == pytest.approx(-expected, rel=1e-12)
    # rows 0 and 1 are both aligned (cosine 1), yet the released loss differs: it depends on the
    # coordinates, not on the angle; ours is the same function of the angle for both (0 up to the clamp)
    assert released_simsiam_loss(p[:1], z[:1]).item() != pytest.approx(released_simsiam_loss(p[1:2], z[1:2]).item(), rel=1e-3)
    assert squared_geodesic_loss(p[:1], z[:1]).item() == pytest.approx(squared_geodesic_loss(p[1:2], z[1:2]).item(), abs=1e-7)
    assert squared_geodesic_loss(p[2:], z[2:]).item() == pytest.approx(0.25, rel=1e-12)  # orthogonal: (1/2)^2


def test_released_formulas_equal_their_loops():
    torch.manual_seed(0)
    p, z = torch.randn(9, 5, dtype=F64), torch.randn(9, 5, dtype=F64)
    assert released_byol_loss(p, z).item() == pytest.approx(released_byol(p, z), rel=1e-12)
    assert released_simsiam_loss(p, z).item() == pytest.approx(released_simsiam(p, z), rel=1e-12)


# --- precision, gradcheck, errors ------------------------------------------------------------------
LOSSES = {
    "nt_xent": lambda a, b: geodesic_nt_xent(torch.cat([a, b]), temperature=0.1),
    # queue: 2N normalised keys made from b only (the keys' side, no gradient)
    "moco": lambda a, b: geodesic_moco_infonce(F.normalize(a, dim=1), F.normalize(b, dim=1),
                                               F.normalize(torch.cat([b, b.flip(1)]), dim=1).T, 0.1),
    "squared": squared_geodesic_loss,
    "released_byol": released_byol_loss,
    "released_simsiam": released_simsiam_loss,
}
LOOPS = {
    "nt_xent": lambda a, b: released_simclr(torch.cat([a, b]), 2, 0.1),
    "moco": lambda a, b: released_moco(F.normalize(a, dim=1), F.normalize(b, dim=1),
                                       F.normalize(torch.cat([b, b.flip(1)]), dim=1).T, 0.1),
    "squared": ours_squared,
    "released_byol": released_byol,
    "released_simsiam": released_simsiam,
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck_float64(name):
    torch.manual_seed(1)
    a, b = torch.randn(5, 4, dtype=F64, requires_grad=True), torch.randn(5, 4, dtype=F64)
    if name == "nt_xent":  # both halves are online rows; the others stop the gradient of b
        assert torch.autograd.gradcheck(LOSSES[name], (a, b.requires_grad_()))
    else:
        assert torch.autograd.gradcheck(lambda a: LOSSES[name](a, b), (a,))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float64_value_is_the_float64_loop_not_a_float32_computation(name):
    torch.manual_seed(2)
    a, b = torch.randn(6, 5, dtype=F64), torch.randn(6, 5, dtype=F64)
    exact = LOSSES[name](a, b)
    single = LOSSES[name](a.float(), b.float())
    assert exact.dtype == F64 and single.dtype == torch.float32
    assert exact.item() == pytest.approx(LOOPS[name](a, b), rel=1e-12, abs=1e-14)
    assert exact.item() != single.item() and exact.item() == pytest.approx(single.item(), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("dtype, expected", [(torch.float16, torch.float32), (torch.bfloat16, torch.float32),
                                             (torch.float32, torch.float32), (F64, F64)])
def test_dtype_is_kept_or_upcast_never_downcast(dtype, expected):
    torch.manual_seed(0)
    a, b = torch.randn(4, 3).to(dtype), torch.randn(4, 3).to(dtype)
    for name, loss in LOSSES.items():
        assert loss(a, b).dtype == expected, name


def test_losses_run_outside_autocast():
    torch.manual_seed(0)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    for name, loss in LOSSES.items():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss(a, b)
        assert value.dtype == torch.float32, name
        assert value.item() == pytest.approx(loss(a, b).item(), rel=1e-6), name


@pytest.mark.parametrize("loss", [squared_geodesic_loss, released_byol_loss, released_simsiam_loss])
def test_shape_mismatch_is_an_error(loss):
    with pytest.raises(ValueError, match=r"same shape \(N, D\)"):
        loss(torch.randn(3, 2), torch.randn(4, 2))

"""decoupled_uniformity_loss, prior_kernel and centroid_weights: hand-computed values with and
without a prior, a loop re-implementation of the released formula, gradcheck, the limits of the
kernel (sigma -> 0, a constant kernel), duplicated samples, V = 2 and V = 4, precision and errors."""

import math

import numpy as np
import pytest
import torch

from ssl_kit_decoupled_uniformity import centroid_weights, decoupled_uniformity_loss, prior_kernel

F64 = torch.float64


def polar(*views_of_images):
    """(B, V, 2) float64 from per image a list of (radius, degrees) views."""
    return torch.tensor(
        [[[r * math.cos(math.radians(a)), r * math.sin(math.radians(a))] for r, a in views] for views in views_of_images],
        dtype=F64,
    )


def released_loss(z, prior=None, kernel=None, sigma=None, lambda_=0.01, t=2.0):
    """The released DecoupledUniformityLoss (Duplums/contrastive-decoupled-uniformity,
    src/decoupled_uniformity.py and src/util.py) written out with Python loops and numpy: l2-normalise
    every view, average the views, with a kernel multiply by inv(K + lambda I) K (an explicit inverse,
    as released; lambda 0 -> 1/sqrt(B)), then log of the mean over pairs i < j of exp(-t d_ij^2)."""
    z = z.detach().double().numpy()
    b, v, _ = z.shape
    centroids = np.stack([sum(z[i, k] / np.sqrt((z[i, k] ** 2).sum()) for k in range(v)) / v for i in range(b)])
    if kernel is not None:
        p = prior.detach().double().numpy()
        p = p[:, None] if p.ndim == 1 else p
        k = np.empty((b, b))
        for i in range(b):
            for j in range(b):
                if kernel == "rbf":
                    k[i, j] = math.exp(-((p[i] - p[j]) ** 2).sum() / (2 * sigma**2))
                else:  # cosine, as the released class means it (its import of normalize is broken)
                    k[i, j] = (p[i] * p[j]).sum() / math.sqrt((p[i] ** 2).sum() * (p[j] ** 2).sum())
        lam = lambda_ or 1 / math.sqrt(b)
        centroids = np.linalg.inv(k + lam * np.eye(b)) @ k @ centroids
    pairs = [math.exp(-t * ((centroids[i] - centroids[j]) ** 2).sum()) for i in range(b) for j in range(i + 1, b)]
    align = -sum((centroids[i] ** 2).sum() for i in range(b)) / b
    return math.log(sum(pairs) / len(pairs)), align


# --- hand-computed values ----------------------------------------------------------------------
def test_two_images_two_views_by_hand():
    # image 0: views at 0 and 90 deg -> centroid (1/2, 1/2); image 1: 180 and 270 -> (-1/2, -1/2);
    # radii differ: only directions count
    z = polar([(2.0, 0), (0.5, 90)], [(3.0, 180), (1.0, 270)])
    out = decoupled_uniformity_loss(z)
    # one pair, ||mu_0 - mu_1||^2 = ||(1, 1)||^2 = 2: L = log exp(-2 * 2) = -4; align = -(1/2)
    assert out.loss.item() == pytest.approx(-4.0, rel=1e-14)
    assert out.align.item() == pytest.approx(-0.5, rel=1e-14)


def test_three_images_mean_over_the_three_pairs_by_hand():
    # centroids: (1, 0) (views agree), (0, cos 45) (views at 45 and 135), (-1, 0)
    z = polar([(1.0, 0), (1.0, 0)], [(1.0, 45), (1.0, 135)], [(5.0, 180), (0.1, 180)])
    h = math.sqrt(0.5)
    d01, d02, d12 = 1 + h**2, 4.0, 1 + h**2
    expected = math.log((math.exp(-3 * d01) + math.exp(-3 * d02) + math.exp(-3 * d12)) / 3)
    out = decoupled_uniformity_loss(z, t=3.0)
    assert out.loss.item() == pytest.approx(expected, rel=1e-13)
    assert out.align.item() == pytest.approx(-(1 + h**2 + 1) / 3, rel=1e-13)


def test_two_images_with_an_rbf_prior_by_hand():
    # K = [[1, k], [k, 1]], k = exp(-(1 - 0)^2 / (2 sigma^2)); A = (K + lambda I)^-1 K has the
    # eigenvectors (1, 1) and (1, -1) with eigenvalues a+ = (1+k)/(1+k+lambda), a- = (1-k)/(1-k+lambda):
    # mu_0 - mu_1 = a- (m_0 - m_1) and mu_0 + mu_1 = a+ (m_0 + m_1)
    z = polar([(1.0, 0), (1.0, 90)], [(1.0, 0), (1.0, 0)])  # m_0 = (1/2, 1/2), m_1 = (1, 0)
    sigma, lam = 0.8, 0.3
    k = math.exp(-1 / (2 * sigma**2))
    a_plus, a_minus = (1 + k) / (1 + k + lam), (1 - k) / (1 - k + lam)
    diff, total = (-0.5, 0.5), (1.5, 0.5)
    mu0 = [(a_plus * s + a_minus * d) / 2 for s, d in zip(total, diff)]
    mu1 = [(a_plus * s - a_minus * d) / 2 for s, d in zip(total, diff)]
    out = decoupled_uniformity_loss(z, torch.tensor([0.0, 1.0], dtype=F64), kernel="rbf", sigma=sigma, kernel_lambda=lam)
    assert out.loss.item() == pytest.approx(-2.0 * a_minus**2 * 0.5, rel=1e-13)
    assert out.align.item() == pytest.approx(-(sum(x * x for x in mu0) + sum(x * x for x in mu1)) / 2, rel=1e-13)


def test_prior_kernel_values_by_hand():
    prior = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 2.0]], dtype=F64)
    rbf = prior_kernel(prior, "rbf", sigma=2.0)
    expected = [[1, math.exp(-25 / 8), math.exp(-4 / 8)], [math.exp(-25 / 8), 1, math.exp(-13 / 8)],
                [math.exp(-4 / 8), math.exp(-13 / 8), 1]]
    torch.testing.assert_close(rbf, torch.tensor(expected, dtype=F64), rtol=1e-14, atol=1e-15)
    cosine = prior_kernel(prior, "cosine")  # the zero row has cosine 0 with everything, itself included
    expected = [[0, 0, 0], [0, 1, 0.8], [0, 0.8, 1]]
    torch.testing.assert_close(cosine, torch.tensor(expected, dtype=F64), rtol=1e-14, atol=1e-15)
    one_d = prior_kernel(torch.tensor([0.0, 2.0]), "rbf", sigma=1.0)  # (B,) is used as (B, 1)
    assert one_d.dtype == F64 and one_d[0, 1].item() == pytest.approx(math.exp(-2.0), rel=1e-14)
    custom = prior_kernel(prior, lambda a, b: (a @ b.T + 1) ** 2)
    assert custom[1, 2].item() == 81.0


def test_centroid_weights_solve_the_regularised_system():
    torch.manual_seed(0)
    k = prior_kernel(torch.randn(7, 3), "rbf", sigma=1.5)
    weights = centroid_weights(k, 0.05)
    assert weights.dtype == F64
    torch.testing.assert_close((k + 0.05 * torch.eye(7, dtype=F64)) @ weights, k, rtol=0, atol=1e-13)
    torch.testing.assert_close(weights, weights.T, rtol=0, atol=1e-12)  # K and K + lambda I commute
    # lambda = 0 means 1/sqrt(B)
    torch.testing.assert_close(centroid_weights(k, 0.0), centroid_weights(k, 1 / math.sqrt(7)), rtol=0, atol=0)


# --- the released formula ----------------------------------------------------------------------
@pytest.mark.parametrize("kernel, sigma, lam, views, one_d", [
    (None, None, 0.01, 2, False),
    (None, None, 0.01, 4, False),
    ("rbf", 2.0, 0.01, 2, False),
    ("rbf", 0.7, 0.0, 4, False),  # lambda 0 -> 1/sqrt(B)
    ("rbf", 1.0, 0.01, 2, True),  # a (B,) prior
    ("cosine", None, 0.01, 2, False),
    ("cosine", None, 0.2, 4, False),
])
def test_equals_the_released_formula_in_float64(kernel, sigma, lam, views, one_d):
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(9, views, 5, dtype=F64, generator=generator)
    prior = torch.randn(9, 4, dtype=F64, generator=generator)
    prior = prior[:, 0] if one_d else prior
    out = decoupled_uniformity_loss(z, prior if kernel else None, kernel=kernel, sigma=sigma, kernel_lambda=lam, t=2.0)
    loss, align = released_loss(z, prior, kernel, sigma, lam, 2.0)
    assert out.loss.dtype == F64
    assert out.loss.item() == pytest.approx(loss, rel=1e-10)
    assert out.align.item() == pytest.approx(align, rel=1e-10)


@pytest.mark.parametrize("kernel, sigma", [(None, None), ("rbf", 1.3), ("cosine", None)])
def test_gradcheck_float64(kernel, sigma):
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(6, 3, 4, dtype=F64, generator=generator, requires_grad=True)
    prior = torch.randn(6, 2, dtype=F64, generator=generator) if kernel else None
    assert torch.autograd.gradcheck(
        lambda x: decoupled_uniformity_loss(x, prior, kernel=kernel, sigma=sigma, t=1.5).loss, (z,)
    )


def test_the_prior_gets_no_gradient():
    z = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    prior = torch.randn(5, 2, dtype=F64, requires_grad=True)
    decoupled_uniformity_loss(z, prior, kernel="rbf", sigma=1.0).loss.backward()
    assert prior.grad is None and z.grad.abs().sum() > 0


# --- limits of the kernel ----------------------------------------------------------------------
def test_sigma_to_zero_gives_the_plain_loss_up_to_lambda():
    generator = torch.Generator().manual_seed(2)
    z = torch.randn(8, 2, 6, dtype=F64, generator=generator)
    prior = torch.randn(8, 3, dtype=F64, generator=generator)
    lam, t = 0.01, 2.0
    plain = decoupled_uniformity_loss(z, t=t).loss.item()
    # K -> I, A -> I / (1 + lambda): the centroids shrink by 1 / (1 + lambda), i.e. t -> t / (1 + lambda)^2
    shrunk = decoupled_uniformity_loss(z, t=t / (1 + lam) ** 2).loss.item()
    tiny = decoupled_uniformity_loss(z, prior, kernel="rbf", sigma=1e-3, kernel_lambda=lam, t=t).loss.item()
    assert tiny == pytest.approx(shrunk, rel=1e-13)
    to_limit = [abs(decoupled_uniformity_loss(z, prior, kernel="rbf", sigma=s, kernel_lambda=lam, t=t).loss.item() - shrunk)
                for s in (10.0, 2.0, 0.5, 0.1)]
    assert to_limit == sorted(to_limit, reverse=True) and to_limit[0] > 1000 * to_limit[-1]
    # the limit differs from the plain loss by O(lambda): |dL/dt| <= max d^2 <= 4 and t shrinks by < 2 lambda t
    assert 0 < abs(shrunk - plain) <= 8 * lam * t


@pytest.mark.parametrize("kernel, prior", [
    ("rbf", torch.full((6, 3), 0.7, dtype=F64)),  # equal priors: K = 1 1^T
    ("cosine", torch.tensor([[1.0, 2.0]] * 3 + [[2.0, 4.0]] * 3, dtype=F64)),  # parallel priors: K = 1 1^T
])
def test_a_constant_kernel_collapses_every_centroid_to_the_batch_mean(kernel, prior):
    z = torch.randn(6, 2, 4, dtype=F64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    sigma = 1.0 if kernel == "rbf" else None
    out = decoupled_uniformity_loss(z, prior, kernel=kernel, sigma=sigma, kernel_lambda=0.01)
    # A = 1 1^T / (B + lambda): every mu_i = B / (B + lambda) * mean_j m_j, all distances 0, L = log 1 = 0
    assert out.loss.item() == pytest.approx(0.0, abs=1e-12)
    mean = torch.nn.functional.normalize(z.detach(), dim=2).mean(dim=1).mean(dim=0) * 6 / 6.01
    assert out.align.item() == pytest.approx(-(mean @ mean).item(), rel=1e-10)
    out.loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().max() < 1e-10


# --- duplicated samples, views -----------------------------------------------------------------
@pytest.mark.parametrize("kernel", [None, "rbf", "cosine"])
def test_duplicated_samples_have_finite_gradients(kernel):
    base = torch.randn(3, 2, 4, dtype=F64, generator=torch.Generator().manual_seed(5))
    prior = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(6))
    for rows in ([0, 0, 1, 2], [0, 0, 0, 0]):  # one duplicated image; every image the same
        z = base[rows].clone().requires_grad_()
        sigma = 1.0 if kernel == "rbf" else None
        out = decoupled_uniformity_loss(z, prior[rows] if kernel else None, kernel=kernel, sigma=sigma)
        out.loss.backward()
        assert torch.isfinite(out.loss) and torch.isfinite(z.grad).all(), (rows, out.loss, z.grad)
    assert out.loss.item() == pytest.approx(0.0, abs=1e-12)  # all the same: every distance is 0


def test_four_views_average_like_two_and_the_view_order_does_not_matter():
    z = torch.randn(7, 2, 5, dtype=F64, generator=torch.Generator().manual_seed(4))
    two = decoupled_uniformity_loss(z).loss
    four = decoupled_uniformity_loss(torch.cat([z, z.flip(1)], dim=1)).loss  # each view twice: same centroids
    assert four.item() == pytest.approx(two.item(), rel=1e-13)
    other = torch.randn(7, 4, 5, dtype=F64, generator=torch.Generator().manual_seed(8))
    permuted = decoupled_uniformity_loss(other[:, [2, 0, 3, 1]]).loss
    assert permuted.item() == pytest.approx(decoupled_uniformity_loss(other).loss.item(), rel=1e-13)


def test_aligned_views_give_a_lower_loss_than_scattered_ones():
    # the loss is no plain uniformity of single views: the views' agreement lengthens the centroids
    generator = torch.Generator().manual_seed(9)
    first = torch.randn(16, 1, 8, dtype=F64, generator=generator)
    aligned = torch.cat([first, first + 0.05 * torch.randn(16, 1, 8, dtype=F64, generator=generator)], dim=1)
    scattered = torch.cat([first, torch.randn(16, 1, 8, dtype=F64, generator=generator)], dim=1)
    assert decoupled_uniformity_loss(aligned).loss < decoupled_uniformity_loss(scattered).loss - 0.5


# --- precision ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, expected", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                             (torch.float16, torch.float32), (torch.bfloat16, torch.float32)])
def test_dtype_is_kept_or_upcast_never_downcast(dtype, expected):
    z = torch.randn(6, 2, 4).to(dtype)
    prior = torch.randn(6, 3).to(dtype)
    for kernel, sigma in ((None, None), ("rbf", 2.0)):
        out = decoupled_uniformity_loss(z, prior if kernel else None, kernel=kernel, sigma=sigma)
        assert out.loss.dtype == expected and out.align.dtype == expected


@pytest.mark.parametrize("kernel, sigma", [(None, None), ("rbf", 3.0)])
def test_float64_is_computed_in_float64(kernel, sigma):
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(32, 2, 16, dtype=F64, generator=generator)
    prior = torch.randn(32, 5, dtype=F64, generator=generator) if kernel else None
    exact = decoupled_uniformity_loss(z, prior, kernel=kernel, sigma=sigma).loss.item()
    single = decoupled_uniformity_loss(z.float(), prior, kernel=kernel, sigma=sigma).loss.item()
    reference, _ = released_loss(z, prior, kernel, sigma)
    assert exact == pytest.approx(reference, rel=1e-12) and exact != single
    assert single == pytest.approx(exact, rel=1e-5)


def test_runs_outside_autocast():
    z = torch.randn(8, 2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = decoupled_uniformity_loss(z)
    assert out.loss.dtype == torch.float32
    assert out.loss.item() == pytest.approx(decoupled_uniformity_loss(z).loss.item(), rel=1e-6)


def test_an_ill_conditioned_system_warns_and_a_regular_one_does_not(recwarn):
    prior = torch.tensor([[0.0], [0.0], [1.0], [1.0]], dtype=F64)  # duplicated priors: K is singular
    k = prior_kernel(prior, "rbf", sigma=1.0)
    centroid_weights(k, 0.01)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    with pytest.warns(RuntimeWarning, match=r"ill-conditioned \(condition number .*Raise kernel_lambda"):
        centroid_weights(k, 1e-13)


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"kernel": "laplace", "sigma": 1.0}, "unknown kernel 'laplace'; allowed: rbf, cosine or a callable"),
    ({"kernel": "rbf"}, "the 'rbf' kernel needs sigma > 0, got None"),
    ({"kernel": "rbf", "sigma": 0.0}, "the 'rbf' kernel needs sigma > 0, got 0.0"),
    ({"kernel": "cosine", "sigma": 1.0}, "sigma applies to the 'rbf' kernel only"),
    ({"kernel": "rbf", "sigma": 1.0, "kernel_lambda": -0.1}, "kernel_lambda >= 0"),
    ({"t": 0.0}, "t > 0"),
])
def test_bad_arguments_are_one_line_errors(kwargs, message):
    prior = torch.randn(4, 2) if "kernel" in kwargs else None
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decoupled_uniformity_loss(torch.randn(4, 2, 3), prior, **kwargs)


def test_prior_and_kernel_go_together_and_shapes_must_match():
    z = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="prior was given without a kernel"):
        decoupled_uniformity_loss(z, torch.randn(4, 2))
    with pytest.raises(ValueError, match="the kernel needs a prior"):
        decoupled_uniformity_loss(z, kernel="cosine")
    with pytest.raises(ValueError, match=r"prior of shape \(5, 2\) for z of shape \(4, 2, 3\)"):
        decoupled_uniformity_loss(z, torch.randn(5, 2), kernel="cosine")
    with pytest.raises(ValueError, match=r"expects z of shape \(B, V, D\)"):
        decoupled_uniformity_loss(torch.randn(8, 3))
    with pytest.raises(ValueError, match="at least 2 images"):
        decoupled_uniformity_loss(torch.randn(1, 2, 3))

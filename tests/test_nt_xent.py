"""NT-Xent against hand-computed values, a loop reference, gradcheck and precision rules."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_kit.losses import nt_xent, similarity_matrix


def reference_nt_xent(z, n_views, temperature, sim=None):
    """Straightforward per-row loop of the multi-positive NT-Xent (float64)."""
    rows, n = z.shape[0], z.shape[0] // n_views
    zn = F.normalize(z, dim=1)
    s = (zn @ zn.T if sim is None else sim(z, z)) / temperature
    total = 0.0
    for i in range(rows):
        positives = [v * n + i % n for v in range(n_views) if v * n + i % n != i]
        numerator = sum(math.exp(s[i, p]) for p in positives)
        denominator = sum(math.exp(s[i, k]) for k in range(rows) if k != i)
        total += -math.log(numerator / denominator)
    return total / rows


def test_two_images_two_views_by_hand():
    # unit vectors: image 0 views at angle 0 and 90 deg, image 1 views at 180 and 270 deg
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    t = 0.5
    # row 0 (image 0, view 0): cos with rows 1,2,3 = -1, 0 (positive), 0
    row0 = -math.log(math.exp(0 / t) / (math.exp(-1 / t) + math.exp(0 / t) + math.exp(0 / t)))
    # every row has the same geometry: one opposite vector, the positive and one orthogonal
    expected = row0
    assert nt_xent(z, 2, t).item() == pytest.approx(expected, rel=1e-12)


def test_scaling_inputs_does_not_change_the_cosine_loss():
    z = torch.randn(12, 5, dtype=torch.float64)
    assert torch.allclose(nt_xent(z, 2, 0.2), nt_xent(3.7 * z, 2, 0.2), rtol=1e-12)


@pytest.mark.parametrize("n_views", [2, 3, 4])
def test_equals_loop_reference_on_random_data(n_views):
    torch.manual_seed(n_views)
    z = torch.randn(5 * n_views, 7, dtype=torch.float64)
    assert nt_xent(z, n_views, 0.3).item() == pytest.approx(reference_nt_xent(z, n_views, 0.3), rel=1e-10)


def test_permuting_images_consistently_across_views_keeps_the_loss():
    torch.manual_seed(0)
    z = torch.randn(2, 6, 4, dtype=torch.float64)
    perm = torch.randperm(6)
    a = nt_xent(z.reshape(12, 4), 2, 0.2)
    b = nt_xent(z[:, perm].reshape(12, 4), 2, 0.2)
    assert torch.allclose(a, b, rtol=1e-12)


def test_gradcheck_float64():
    torch.manual_seed(1)
    z = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: nt_xent(x, 2, 0.2), (z,))
    assert torch.autograd.gradcheck(lambda x: nt_xent(x, 4, 0.5), (z,))


def test_similarity_option_dot_and_callable():
    torch.manual_seed(2)
    z = torch.randn(6, 4, dtype=torch.float64)
    dot = lambda a, b: a @ b.T  # noqa: E731
    assert nt_xent(z, 2, 0.7, similarity="dot").item() == pytest.approx(reference_nt_xent(z, 2, 0.7, dot), rel=1e-10)
    geodesic = lambda a, b: 1 - torch.arccos(similarity_matrix(a, b).clamp(-1 + 1e-7, 1 - 1e-7)) / math.pi  # noqa: E731
    assert nt_xent(z, 2, 0.05, similarity=geodesic).item() == pytest.approx(
        reference_nt_xent(z, 2, 0.05, geodesic), rel=1e-10
    )


def test_precision_float64_kept_half_upcast():
    z = torch.randn(8, 4, dtype=torch.float64)
    assert nt_xent(z).dtype == torch.float64
    assert nt_xent(z.bfloat16()).dtype == torch.float32
    assert nt_xent(z.float()).dtype == torch.float32


def test_wrong_temperature_sign_is_the_negative_control():
    """Aligned positives give a lower loss than misaligned ones (what training exploits)."""
    a = torch.randn(16, 8, dtype=torch.float64)
    aligned = nt_xent(torch.cat([a, a + 0.01 * torch.randn_like(a)]))
    shuffled = nt_xent(torch.cat([a, a[torch.randperm(16)]]))
    assert aligned < shuffled


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(z=torch.randn(4)), "shape"),
        (dict(z=torch.randn(5, 3)), "multiple of n_views"),
        (dict(z=torch.randn(4, 3), n_views=1), "n_views >= 2"),
        (dict(z=torch.randn(4, 3), temperature=0.0), "temperature > 0"),
        (dict(z=torch.randn(4, 3), similarity="cosin"), "allowed: cosine, dot"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nt_xent(**kwargs)

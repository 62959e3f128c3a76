"""nt_xent and similarity_matrix: hand-computed values, an independent loop reference, gradcheck,
invariances, the similarity option, precision rules, a negative control and input errors (all
single-process)."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_kit.losses import nt_xent, similarity_matrix


def polar(radius_angle_pairs):
    """2-D vectors from (radius, degrees): their cosines are cos(angle differences) by hand."""
    return torch.tensor(
        [[r * math.cos(math.radians(a)), r * math.sin(math.radians(a))] for r, a in radius_angle_pairs],
        dtype=torch.float64,
    )


def loop_reference(z, n_views, temperature, sim=None):
    """Multi-positive NT-Xent written as plainly as possible: Python loops over rows (float64)."""
    z = z.double()
    rows, n = z.shape[0], z.shape[0] // n_views
    if sim is None:  # cosine, by its definition
        unit = z / z.norm(dim=1, keepdim=True)
        sim = lambda a, b: unit @ unit.T  # noqa: E731
    s = sim(z, z)
    total = 0.0
    for i in range(rows):
        positives = [v * n + i % n for v in range(n_views) if v * n + i % n != i]
        numerator = sum(math.exp(s[i, p] / temperature) for p in positives)
        denominator = sum(math.exp(s[i, k] / temperature) for k in range(rows) if k != i)
        total -= math.log(numerator / denominator)
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


def test_two_images_two_views_equals_the_value_worked_out_by_hand():
    # view-major rows: image 0 view 1 at 0 deg, image 1 view 1 at 90, image 0 view 2 at 60,
    # image 1 view 2 at 180; radii differ to show that only directions count
    z = polar([(2.0, 0), (0.5, 90), (3.0, 60), (1.0, 180)])
    t = 0.5  # cosines / T: cos 60 -> 1, cos 30 -> sqrt(3), cos 120 -> -1, cos 180 -> -2
    e = math.exp
    rows = [
        -math.log(e(1) / (e(0) + e(1) + e(-2))),  # 0 deg: positive 60 deg; 90, 180 negatives
        -math.log(e(0) / (e(0) + e(math.sqrt(3)) + e(0))),  # 90 deg: positive 180; 0, 60
        -math.log(e(1) / (e(1) + e(math.sqrt(3)) + e(-1))),  # 60 deg: positive 0; 90, 180
        -math.log(e(0) / (e(-2) + e(0) + e(-1))),  # 180 deg: positive 90; 0, 60
    ]
    expected = sum(rows) / 4
    assert nt_xent(z, n_views=2, temperature=t).item() == pytest.approx(expected, rel=1e-12)
    assert loop_reference(z, 2, t) == pytest.approx(expected, rel=1e-12)  # the reference agrees too


def test_three_views_two_images_equals_the_value_worked_out_by_hand():
    # image 0: views at 0, 90, 0 deg; image 1: 180, 90, 180 deg (mirror image of image 0)
    z = polar([(1, 0), (1, 180), (1, 90), (1, 90), (1, 0), (1, 180)])
    e = math.exp
    # rows at 0/180 deg: positives cos 0 and cos 1; negatives -1, 0, -1
    outer = -math.log((e(0) + e(1)) / (e(-1) + e(0) + e(0) + e(1) + e(-1)))
    # rows at 90 deg: both positives cos 0; negatives 0, 1 (the other image's 90 deg view), 0
    middle = -math.log(2 / (4 + e(1)))
    expected = (4 * outer + 2 * middle) / 6
    assert nt_xent(z, n_views=3, temperature=1.0).item() == pytest.approx(expected, rel=1e-12)


def test_one_image_many_views_has_zero_loss_because_every_other_row_is_a_positive():
    z = torch.randn(4, 6, dtype=torch.float64)
    assert nt_xent(z, n_views=4).item() == pytest.approx(0.0, abs=1e-14)


@pytest.mark.parametrize("n_views", [2, 3, 4])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_equals_loop_reference_on_random_data(n_views, temperature):
    generator = torch.Generator().manual_seed(10 * n_views)
    z = torch.randn(6 * n_views, 8, dtype=torch.float64, generator=generator)
    got = nt_xent(z, n_views=n_views, temperature=temperature)
    assert got.item() == pytest.approx(loop_reference(z, n_views, temperature), rel=1e-10)


def test_two_views_equal_the_usual_cross_entropy_form_of_simclr():
    # SimCLR as usually written: logits over all other rows, target = the other view of the image
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(10, 4, dtype=torch.float64, generator=generator)
    n, t = 5, 0.2
    unit = F.normalize(z, dim=1)
    logits = (unit @ unit.T / t).fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    assert torch.allclose(nt_xent(z, 2, t), F.cross_entropy(logits, target), rtol=1e-12, atol=0)


def test_scaling_inputs_does_not_change_the_cosine_loss():
    z = torch.randn(12, 5, dtype=torch.float64)
    assert torch.allclose(nt_xent(z, 2, 0.2), nt_xent(3.7 * z, 2, 0.2), rtol=1e-12)


def test_gradcheck_float64():
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(6, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: nt_xent(x, 2, 0.2), (z,))
    assert torch.autograd.gradcheck(lambda x: nt_xent(x, 3, 0.5), (z,))
    assert torch.autograd.gradcheck(lambda x: nt_xent(x, 2, 0.7, similarity="dot"), (z,))


def test_permuting_images_consistently_across_views_keeps_the_loss():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(3, 7, 4, dtype=torch.float64, generator=generator)  # (view, image, dim)
    perm = torch.randperm(7, generator=generator)
    before = nt_xent(z.reshape(21, 4), n_views=3)
    assert torch.allclose(before, nt_xent(z[:, perm].reshape(21, 4), n_views=3), rtol=1e-12, atol=0)
    # swapping the order of the views is also only a relabelling
    assert torch.allclose(before, nt_xent(z[[2, 0, 1]].reshape(21, 4), n_views=3), rtol=1e-12, atol=0)


def test_permuting_images_in_one_view_only_changes_the_loss():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(2, 6, 4, dtype=torch.float64, generator=generator)
    shuffled = torch.stack([z[0], z[1, torch.roll(torch.arange(6), 1)]])
    assert not torch.allclose(nt_xent(z.reshape(12, 4)), nt_xent(shuffled.reshape(12, 4)))


def test_similarity_dot_and_callable():
    generator = torch.Generator().manual_seed(2)
    z = torch.randn(8, 4, dtype=torch.float64, generator=generator)
    dot = lambda a, b: a @ b.T  # noqa: E731
    assert nt_xent(z, 2, 0.7, similarity="dot").item() == pytest.approx(loop_reference(z, 2, 0.7, dot), rel=1e-10)

    def geodesic(a, b):  # what the Geometric plugin passes: 1 - arccos(cos)/pi on raw inputs
        return 1 - torch.arccos(similarity_matrix(a, b).clamp(-1 + 1e-7, 1 - 1e-7)) / math.pi

    assert nt_xent(z, 2, 0.05, similarity=geodesic).item() == pytest.approx(
        loop_reference(z, 2, 0.05, geodesic), rel=1e-10
    )


def test_similarity_matrix_options():
    generator = torch.Generator().manual_seed(4)
    a = torch.randn(3, 5, dtype=torch.float64, generator=generator)
    b = torch.randn(4, 5, dtype=torch.float64, generator=generator)
    cosine = torch.tensor([[float(x @ y / (x.norm() * y.norm())) for y in b] for x in a], dtype=torch.float64)
    assert torch.allclose(similarity_matrix(a, b), cosine, rtol=1e-12, atol=1e-15)
    assert torch.equal(similarity_matrix(a, b, "dot"), a @ b.T)
    assert similarity_matrix(a, b, lambda x, y: -torch.cdist(x, y)).shape == (3, 4)
    # a zero row has cosine 0 with everything (F.normalize eps), not NaN
    assert torch.equal(similarity_matrix(torch.zeros(1, 5), b.float())[0], torch.zeros(4))


def test_float64_stays_float64_half_is_computed_in_float32():
    generator = torch.Generator().manual_seed(5)
    z = torch.randn(12, 6, dtype=torch.float64, generator=generator)
    exact = nt_xent(z)
    assert exact.dtype == torch.float64
    assert exact.item() == pytest.approx(loop_reference(z, 2, 0.2), rel=1e-12)  # never downcast
    assert nt_xent(z.float()).dtype == torch.float32
    for half in (torch.bfloat16, torch.float16):
        rounded = z.to(half)
        got = nt_xent(rounded)
        assert got.dtype == torch.float32
        # same inputs, float32 arithmetic: far closer than half-precision arithmetic would be
        assert got.item() == pytest.approx(nt_xent(rounded.double()).item(), rel=1e-5)


def test_autocast_does_not_lower_the_precision():
    z = torch.randn(8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = nt_xent(z)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(nt_xent(z).item(), rel=1e-6)


def test_wrong_temperature_sign_is_the_negative_control():
    """Aligned positives give a lower loss than misaligned ones (what training exploits)."""
    a = torch.randn(16, 8, dtype=torch.float64)
    aligned = nt_xent(torch.cat([a, a + 0.01 * torch.randn_like(a)]))
    shuffled = nt_xent(torch.cat([a, a[torch.randperm(16)]]))
    assert aligned < shuffled


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(z=torch.randn(4)), r"shape \(V\*N, D\), got \(4,\)"),
        (dict(z=torch.randn(2, 2, 3)), r"shape \(V\*N, D\)"),
        (dict(z=torch.randn(5, 3)), "5 rows are not a positive multiple of n_views=2"),
        (dict(z=torch.randn(0, 3)), "multiple of n_views"),
        (dict(z=torch.randn(4, 3), n_views=1), "n_views >= 2, got 1"),
        (dict(z=torch.randn(4, 3), temperature=0.0), "temperature > 0, got 0.0"),
        (dict(z=torch.randn(4, 3), temperature=-0.1), "temperature > 0"),
        (dict(z=torch.randn(4, 3), similarity="cosin"), "unknown similarity 'cosin'; allowed: cosine, dot"),
        (
            dict(z=torch.randn(4, 3), similarity=lambda a, b: a @ a.T[:, :1]),
            r"returned shape \(4, 1\), expected \(4, 4\)",
        ),
    ],
)
def test_bad_inputs_raise_value_errors_that_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nt_xent(**kwargs)

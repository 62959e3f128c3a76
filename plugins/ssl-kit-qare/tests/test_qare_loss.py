"""The losses of ssl_kit_qare: hand-computed values, QARe's upper bound (brute force over
permutations), sparsemax against a brute-force projection onto the simplex, gradients (gradcheck,
the sparsemax-loss gradient, near collapse, repeated eigenvalues), dtypes and argument errors."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from ssl_kit_qare import clipped_cosine, lap_loss, qare_regularizer, sparseclr_loss, sparsemax

F64 = torch.float64
EPS = 1e-8  # the reference's clip of cosine similarities

E1, E2 = [1.0, 0.0], [0.0, 1.0]
MINUS_E1 = [-1.0, 0.0]


def t(rows, requires_grad=False):
    return torch.tensor(rows, dtype=F64, requires_grad=requires_grad)


def losses(similarity):
    """Every loss as a function of (z1, z2), for the parametrised checks."""
    return {
        "qare": lambda a, b: qare_regularizer(a, b, similarity=similarity),
        "lap": lambda a, b: lap_loss(a, b, temperature=0.5, similarity=similarity),
        "sparseclr": lambda a, b: sparseclr_loss(a, b, margin=1.0, similarity=similarity),
    }


ALL_LOSSES = [(name, sim_name, fn) for sim_name, sim in (("cosine", "cosine"), ("clipped", clipped_cosine))
              for name, fn in losses(sim).items()]
IDS = [f"{name}-{sim}" for name, sim, _ in ALL_LOSSES]


# --- clipped cosine ----------------------------------------------------------------------------
def test_clipped_cosine_clips_below_eps_and_keeps_the_rest():
    a = t([[1.0, 0.0], [0.6, 0.8]], requires_grad=True)
    b = t([[2.0, 0.0], [-1.0, 0.0], [0.0, 3.0]])
    c = clipped_cosine(a, b)
    expected = [[1.0, EPS, EPS], [0.6, EPS, 0.8]]  # cos(e1, e2) = 0 and cos(e1, -e1) = -1 are clipped
    assert torch.allclose(c, t(expected), rtol=1e-15, atol=0)
    c[0, 1].backward()  # a clipped entry: no gradient at all
    assert torch.equal(a.grad, torch.zeros_like(a))


# --- QARe: hand-computed values ----------------------------------------------------------------
def two_element_qare(c_a, c_b):
    """n = 2: J + S = [[2, 1 + c], [1 + c, 2]] has the eigenvalues 1 - c and 3 + c."""
    return ((1 - c_a) * (1 - c_b) + (3 + c_a) * (3 + c_b)) / 2


def test_qare_two_element_sets_match_the_closed_form():
    z1 = t([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])  # cos 0.5
    z2 = t([[1.0, 0.0], [-0.5, math.sqrt(3) / 2]])  # cos -0.5
    assert qare_regularizer(z1, z2).item() == pytest.approx(two_element_qare(0.5, EPS), rel=1e-12)
    assert qare_regularizer(z1, z2, similarity="cosine").item() == pytest.approx(4.75, rel=1e-12)


def test_qare_of_collapsed_and_of_orthogonal_sets():
    n = 4
    collapsed = t([[1.0, 2.0, 0.0, 0.0]] * n)  # J + S = 2J: eigenvalues 0 (three times) and 2n
    assert qare_regularizer(collapsed, collapsed).item() == pytest.approx(4 * n / (n - 1), rel=1e-12)
    basis = torch.eye(n, dtype=F64)  # clipped: J + S = (1 + eps) J + (1 - eps) I
    expected = (3 * (1 - EPS) ** 2 + (n * (1 + EPS) + 1 - EPS) ** 2) / (n * (n - 1))
    assert qare_regularizer(basis, basis).item() == pytest.approx(expected, rel=1e-12)
    assert qare_regularizer(basis, basis, similarity="cosine").item() == pytest.approx((n + 3) / (n - 1), rel=1e-12)
    # minimising QARe pulls a set away from collapse
    assert qare_regularizer(basis, basis).item() < qare_regularizer(collapsed, collapsed).item()


# --- QARe: the upper bound of the quadratic assignment ------------------------------------------
def permutation_matrices(n):
    eye = torch.eye(n, dtype=F64)
    for order in itertools.permutations(range(n)):
        yield eye[list(order)]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("similarity", ["clipped", "cosine"])
def test_qare_bounds_every_assignment_of_five_element_sets(seed, similarity):
    generator = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(5, 3, dtype=F64, generator=generator), torch.randn(5, 3, dtype=F64, generator=generator)
    sim = clipped_cosine if similarity == "clipped" else "cosine"
    p_a = 1 + F.normalize(z1, dim=1) @ F.normalize(z1, dim=1).T
    p_b = 1 + F.normalize(z2, dim=1) @ F.normalize(z2, dim=1).T
    if similarity == "clipped":
        p_a, p_b = p_a.clamp(min=1 + EPS), p_b.clamp(min=1 + EPS)
    bound = qare_regularizer(z1, z2, similarity=sim).item()
    values = [torch.trace(p_a @ pi @ p_b @ pi.T).item() / 20 for pi in permutation_matrices(5)]
    assert len(values) == 120
    assert max(values) <= bound + 1e-12, (max(values), bound)
    assert max(values) < bound - 1e-6  # not tight for unrelated sets
    assert qare_regularizer(z1, z1, similarity=sim).item() == pytest.approx(torch.trace(p_a @ p_a).item() / 20, rel=1e-12)


# --- the LAP term --------------------------------------------------------------------------------
def test_lap_matches_hand_computed_ratios_and_is_the_log_of_their_mean():
    z1, z2 = t([E1, E2]), t([E1, MINUS_E1])
    e2, em2 = math.exp(2), math.exp(-2)  # exp(cos / T) for cos = 1, -1 and T = 0.5
    ratios = [e2 / (1 + e2 + em2), 1 / 3, e2 / (e2 + 1 + em2), 1 / (1 + 2 * em2)]  # rows a0, a1, b0, b1
    lap = lap_loss(z1, z2, temperature=0.5, similarity="cosine")
    assert lap.item() == pytest.approx(-math.log(sum(ratios) / 4), rel=1e-12)
    nt_xent_value = sum(-math.log(r) for r in ratios) / 4
    assert abs(lap.item() - nt_xent_value) > 0.05  # the mean of the ratios, not of their logs


def test_lap_with_clipped_cosines_matches_hand_computed_ratios():
    z1, z2 = t([E1, E2]), t([E1, MINUS_E1])
    e2, clipped = math.exp(2), math.exp(2 * EPS)  # every cosine <= 0 becomes eps
    ratios = [e2 / (2 * clipped + e2), 1 / 3, e2 / (e2 + 2 * clipped), 1 / 3]
    lap = lap_loss(z1, z2, temperature=0.5, similarity=clipped_cosine)
    assert lap.item() == pytest.approx(-math.log(sum(ratios) / 4), rel=1e-12)


def test_lap_of_identical_orthogonal_views():
    z = t([E1, E2])
    expected = math.log(1 + 2 * math.exp(-2))  # every row: e^2 / (e^2 + 2)
    assert lap_loss(z, z, temperature=0.5, similarity="cosine").item() == pytest.approx(expected, rel=1e-12)


# --- sparsemax against a brute-force projection onto the simplex ---------------------------------
def brute_force_projection(z):
    """argmin over the probability simplex of ||p - z||², by trying every support S: on S the
    optimum is z - τ_S with τ_S = (Σ_S z - 1) / |S|; keep the feasible candidate (all >= 0)
    closest to z. Entries that are -inf never enter the support."""
    finite = [j for j, v in enumerate(z) if v != -math.inf]
    best, best_distance = None, math.inf
    for size in range(1, len(finite) + 1):
        for support in itertools.combinations(finite, size):
            tau = (sum(z[j] for j in support) - 1) / size
            p = [z[j] - tau if j in support else 0.0 for j in range(len(z))]
            if min(p[j] for j in support) < 0:
                continue
            distance = sum((p[j] - z[j]) ** 2 for j in finite)
            if distance < best_distance:
                best, best_distance = p, distance
    return best


@pytest.mark.parametrize("scale", [0.1, 1.0, 5.0])
def test_sparsemax_is_the_projection_onto_the_simplex(scale):
    generator = torch.Generator().manual_seed(int(scale * 10))
    z = scale * torch.randn(12, 7, dtype=F64, generator=generator)
    z[0, 3] = z[0, 5] = z[0].max() + 0.1  # a tie at the top
    z[1, 2] = -math.inf  # excluded entries (as the loss excludes a row's own column)
    z[2, ::2] = -math.inf
    p = sparsemax(z)
    sizes = set()
    for row, out in zip(z.tolist(), p.tolist()):
        expected = brute_force_projection(row)
        assert out == pytest.approx(expected, abs=1e-12)
        assert [v > 0 for v in out] == [v > 1e-12 for v in expected]  # the support
        sizes.add(sum(v > 0 for v in out))
    assert torch.allclose(p.sum(dim=1), torch.ones(12, dtype=F64), atol=1e-12)
    if scale == 1.0:
        assert len(sizes) >= 3  # sparse and dense rows alike


def test_sparsemax_gradient_is_its_jacobian_on_the_support():
    z = t([[0.9, 0.5, -1.0, 0.3], [0.1, 2.0, 0.0, -0.5]], requires_grad=True)  # supports of 3 and 1
    assert torch.autograd.gradcheck(sparsemax, (z,))


# --- the SparseCLR loss --------------------------------------------------------------------------
def test_sparseclr_matches_hand_computed_rows():
    # rows a0 = e1, a1 = e2 (view 1), b0 = e1, b1 = -e1 (view 2); x = cosine - 1 at the positive:
    # a0: [0, 0, -1] -> support of 2, tau = -1/2, loss 1/4;  a1: the same x, positive -1 -> 5/4
    # b0: [0, 0, -1] -> 1/4;  b1: [-1, -1, -1] -> support of 3, tau = -4/3, loss 1/3
    loss = sparseclr_loss(t([E1, E2]), t([E1, MINUS_E1]), margin=1.0, similarity="cosine")
    assert loss.item() == pytest.approx((0.25 + 1.25 + 0.25 + 1 / 3) / 4, rel=1e-12)
    same = t([E1, E2])  # every row [0, 0, 0]: uniform sparsemax, tau = -1/3, loss 1/3
    assert sparseclr_loss(same, same).item() == pytest.approx(1 / 3, rel=1e-12)


def test_sparseclr_margin_moves_only_the_positive():
    z1, z2 = t([E1, E2]), t([E1, E2])  # rows [0, 1 - m, 0]
    for margin in (0.0, 0.5, 2.0):
        x = [0.0, 1 - margin, 0.0]
        p = brute_force_projection(x)
        support = [j for j in range(3) if p[j] > 0]
        tau = (sum(x[j] for j in support) - 1) / len(support)
        expected = 0.5 * sum(x[j] ** 2 - tau**2 for j in support) - x[1] + 0.5
        assert sparseclr_loss(z1, z2, margin=margin).item() == pytest.approx(expected, rel=1e-12)


def test_sparseclr_gradient_is_sparsemax_minus_the_target():
    """With the support a constant and the threshold differentiated, d l_r / d x_r is
    sparsemax(x_r) - e_p(r) (Martins & Astudillo): checked on a free similarity matrix."""
    n, margin = 3, 1.0
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(2 * n, 2 * n, dtype=F64, generator=generator).requires_grad_()
    z = torch.zeros(n, 2, dtype=F64)  # ignored by the similarity below
    loss = sparseclr_loss(z, z, margin=margin, similarity=lambda a, b: matrix, gather=False)
    loss.backward()
    for r in range(2 * n):
        partner = (r + n) % (2 * n)
        x = [matrix[r, k].item() - (margin if k == partner else 0.0) for k in range(2 * n)]
        x[r] = -math.inf  # the row's own column is not a candidate
        expected = [p - (1.0 if k == partner else 0.0) for k, p in enumerate(brute_force_projection(x))]
        assert matrix.grad[r].tolist() == pytest.approx([v / (2 * n) for v in expected], abs=1e-12)
    support_sizes = [(matrix.grad[r] > 0).sum().item() for r in range(2 * n)]
    assert max(support_sizes) >= 2  # the threshold's gradient is exercised (not only one-hot rows)


# --- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, sim, fn", ALL_LOSSES, ids=IDS)
def test_gradcheck_float64(name, sim, fn):
    generator = torch.Generator().manual_seed(3)
    z1 = torch.randn(5, 4, dtype=F64, generator=generator, requires_grad=True)
    z2 = torch.randn(5, 4, dtype=F64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (z1, z2))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name, sim, fn", ALL_LOSSES, ids=IDS)
def test_gradients_are_finite_near_collapse(name, sim, fn, dtype):
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(1, 6, dtype=F64, generator=generator)
    z1 = (base + 1e-4 * torch.randn(16, 6, dtype=F64, generator=generator)).to(dtype).requires_grad_()
    z2 = (base + 1e-4 * torch.randn(16, 6, dtype=F64, generator=generator)).to(dtype).requires_grad_()
    cosines = F.normalize(z1.detach().double(), dim=1) @ F.normalize(z2.detach().double(), dim=1).T
    assert cosines.min() > 0.999  # every pair nearly collapsed
    value = fn(z1, z2)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


@pytest.mark.parametrize("sim", ["cosine", clipped_cosine], ids=["cosine", "clipped"])
def test_qare_gradient_is_finite_with_repeated_eigenvalues(sim):
    n = 6
    # one set collapsed (J + S = 2J: eigenvalue 0, n - 1 times), one orthonormal (1, n - 1 times)
    collapsed = torch.ones(n, n, dtype=F64).mul(torch.arange(1, n + 1, dtype=F64)[None]).requires_grad_()
    basis = torch.eye(n, dtype=F64).requires_grad_()
    for z1, z2 in ((collapsed, basis), (basis, basis), (collapsed, collapsed)):
        spectrum = torch.linalg.eigvalsh(1 + F.normalize(z1.detach(), dim=1) @ F.normalize(z1.detach(), dim=1).T)
        assert (spectrum[1:-1] - spectrum[:-2]).abs().max() < 1e-12  # repeated eigenvalues
        z1.grad = z2.grad = None
        qare_regularizer(z1, z2, similarity=sim).backward()
        assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


# --- dtypes, autocast, single process --------------------------------------------------------------
@pytest.mark.parametrize("dtype, expected", [(F64, F64), (torch.float32, torch.float32),
                                             (torch.float16, torch.float32), (torch.bfloat16, torch.float32)])
@pytest.mark.parametrize("name, sim, fn", ALL_LOSSES, ids=IDS)
def test_dtype_is_kept_or_upcast_never_downcast(name, sim, fn, dtype, expected):
    generator = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=generator).to(dtype), torch.randn(6, 4, generator=generator).to(dtype)
    assert fn(z1, z2).dtype == expected


@pytest.mark.parametrize("name, sim, fn", ALL_LOSSES, ids=IDS)
def test_float64_value_is_not_computed_in_float32(name, sim, fn):
    generator = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(8, 5, dtype=F64, generator=generator), torch.randn(8, 5, dtype=F64, generator=generator)
    exact, single = fn(z1, z2).item(), fn(z1.float(), z2.float()).item()
    assert exact != single and exact == pytest.approx(single, rel=1e-5)


def test_qare_eigenvalues_are_computed_in_float64_and_cast_back(monkeypatch):
    seen = []
    eigvalsh = torch.linalg.eigvalsh

    def recording(matrix, *args, **kwargs):
        seen.append(matrix.dtype)
        return eigvalsh(matrix, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigvalsh", recording)
    z1 = torch.randn(6, 4, requires_grad=True)
    value = qare_regularizer(z1, torch.randn(6, 4))
    value.backward()
    assert seen == [F64, F64] and value.dtype == torch.float32 and z1.grad.dtype == torch.float32


@pytest.mark.parametrize("name, sim, fn", ALL_LOSSES, ids=IDS)
def test_losses_run_outside_autocast(name, sim, fn):
    generator = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = fn(z1, z2)
    assert inside.dtype == torch.float32 and inside.item() == pytest.approx(fn(z1, z2).item(), rel=1e-6)


def test_gather_is_the_identity_with_one_process():
    generator = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, dtype=F64, generator=generator), torch.randn(6, 4, dtype=F64, generator=generator)
    for fn in (qare_regularizer, lap_loss, sparseclr_loss):
        assert fn(z1, z2, gather=True).item() == fn(z1, z2, gather=False).item()


def test_row_order_of_the_sets_does_not_matter_but_the_pairing_does():
    generator = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(6, 4, dtype=F64, generator=generator), torch.randn(6, 4, dtype=F64, generator=generator)
    order = torch.randperm(6, generator=generator)
    for fn in (qare_regularizer, lap_loss, sparseclr_loss):
        assert fn(z1[order], z2[order]).item() == pytest.approx(fn(z1, z2).item(), rel=1e-12)
    # QARe only sees each set: re-pairing the images leaves it unchanged; the pairwise terms change
    assert qare_regularizer(z1, z2[order]).item() == pytest.approx(qare_regularizer(z1, z2).item(), rel=1e-12)
    assert lap_loss(z1, z2[order]).item() != pytest.approx(lap_loss(z1, z2).item(), rel=1e-6)
    assert sparseclr_loss(z1, z2[order]).item() != pytest.approx(sparseclr_loss(z1, z2).item(), rel=1e-6)


# --- argument errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda: qare_regularizer(torch.randn(4, 3), torch.randn(5, 3)), r"same shape \(n, D\) with n >= 2"),
    (lambda: qare_regularizer(torch.randn(1, 3), torch.randn(1, 3)), r"n >= 2, got \(1, 3\)"),
    (lambda: lap_loss(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0), "temperature > 0, got 0.0"),
    (lambda: sparseclr_loss(torch.randn(4, 3), torch.randn(4, 3), margin=-1.0), "margin >= 0, got -1.0"),
    (lambda: sparseclr_loss(torch.randn(4, 3), torch.randn(4), margin=1.0), "sparseclr_loss expects z1 and z2"),
    (lambda: lap_loss(torch.randn(4, 3), torch.randn(4, 3), similarity="euclid"), "unknown similarity 'euclid'"),
    (lambda: clipped_cosine(torch.randn(4, 3), torch.randn(4, 3), eps=0.0), "eps > 0, got 0.0"),
])
def test_bad_arguments_are_one_line_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()

"""equivariance_loss against hand-computed values and a loop over the released formula; its zero set
(one orthogonal map per chunk), chunk edge cases, gradients and dtypes. Also the two contrastive
terms CARE uses (ssl_kit's nt_xent and moco_infonce) against loops over the released formulas."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_kit.losses import moco_infonce, nt_xent
from ssl_kit_care import equivariance_loss

F64 = torch.float64


def released_formula(e1, e2, chunks):
    """The released code's ``equivariance_loss`` (github.com/Sharut/CARE, utils.py), spelled out with
    plain floats: per chunk of m = N // chunks rows, 2 x the mean over rows i of the squared
    Frobenius norm of row i of (G1 - G2) without its diagonal entry; then the mean over chunks."""
    a, b = e1.tolist(), e2.tolist()
    m = len(a) // chunks

    def dot(u, v):
        return sum(x * y for x, y in zip(u, v))

    total = 0.0
    for k in range(chunks):
        rows = range(k * m, (k + 1) * m)
        row_norms = [sum((dot(a[i], a[j]) - dot(b[i], b[j])) ** 2 for j in rows if j != i) for i in rows]
        total += 2 * sum(row_norms) / len(row_norms)
    return total / chunks


def unit_rows(n, d, seed=0):
    torch.manual_seed(seed)
    return F.normalize(torch.randn(n, d, dtype=F64), dim=1)


def orthogonal(d, seed):
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=F64, generator=torch.Generator().manual_seed(seed)))
    return q


# --- values ------------------------------------------------------------------------------------
def test_hand_computed_two_chunks_of_two():
    e1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], dtype=F64)
    e2 = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.0, 1.0]], dtype=F64)
    # chunk 0: G1_01 = 0, G2_01 = 0.6 -> (2/2) (0.36 + 0.36) = 0.72
    # chunk 1: G1_23 = 0.6, G2_23 = 1 -> (2/2) (0.16 + 0.16) = 0.32;   L = (0.72 + 0.32) / 2
    loss = equivariance_loss(e1, e2, chunks=2)
    assert loss.dtype == F64 and abs(loss.item() - 0.52) < 1e-12
    # one chunk of four rows: the cross-chunk pairs count too
    assert equivariance_loss(e1, e2, chunks=1).item() == pytest.approx(released_formula(e1, e2, 1), abs=1e-12)


@pytest.mark.parametrize("n, d, chunks", [(16, 5, 4), (17, 3, 4), (12, 8, 1), (10, 4, 10), (9, 2, 2), (64, 16, 8)])
def test_equals_the_released_formula_in_float64(n, d, chunks):
    torch.manual_seed(n * 100 + chunks)
    e1, e2 = torch.randn(n, d, dtype=F64), torch.randn(n, d, dtype=F64)
    expected = released_formula(e1, e2, chunks)
    assert expected > 0 or n // chunks == 1
    assert equivariance_loss(e1, e2, chunks=chunks).item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


# --- the zero set: one orthogonal map per chunk -----------------------------------------------------
def test_zero_when_view_two_is_view_one_times_one_orthogonal_matrix_per_chunk():
    e1 = unit_rows(24, 6)
    e2 = torch.cat([e1[k * 6:(k + 1) * 6] @ orthogonal(6, seed=k) for k in range(4)])  # a different map per chunk
    assert equivariance_loss(e1, e2, chunks=4).item() < 1e-12
    # the same embeddings chunked otherwise mix two maps in one chunk: not one rotation any more
    assert equivariance_loss(e1, e2, chunks=2).item() > 1e-2
    assert equivariance_loss(e1, e2, chunks=3).item() > 1e-2


def test_positive_for_maps_that_are_not_orthogonal_or_not_shared():
    e1 = unit_rows(16, 4)
    stretch = torch.diag(torch.tensor([2.0, 1.0, 1.0, 0.5], dtype=F64))
    assert equivariance_loss(e1, F.normalize(e1 @ stretch, dim=1), chunks=2).item() > 1e-2  # not a rotation
    assert equivariance_loss(e1, unit_rows(16, 4, seed=1), chunks=2).item() > 1e-2  # unrelated views
    per_row = torch.stack([e1[i] @ orthogonal(4, seed=i) for i in range(16)])  # a rotation per image, not per chunk
    assert equivariance_loss(e1, per_row, chunks=2).item() > 1e-2


# --- chunk edge cases ----------------------------------------------------------------------------
def test_chunks_of_one_row_contribute_zero_with_a_zero_gradient():
    e1 = torch.randn(5, 3, dtype=F64, requires_grad=True)
    e2 = torch.randn(5, 3, dtype=F64, requires_grad=True)
    loss = equivariance_loss(e1, e2, chunks=5)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(e1.grad, torch.zeros_like(e1)) and torch.equal(e2.grad, torch.zeros_like(e2))


def test_rows_past_chunks_times_chunk_size_are_ignored():
    torch.manual_seed(3)
    e1 = torch.randn(11, 4, dtype=F64, requires_grad=True)  # 3 chunks of 3, rows 9 and 10 left over
    e2 = torch.randn(11, 4, dtype=F64)
    loss = equivariance_loss(e1, e2, chunks=3)
    assert loss.item() == pytest.approx(equivariance_loss(e1[:9], e2[:9], chunks=3).item(), rel=1e-15)
    changed = e2.clone()
    changed[9:] = torch.randn(2, 4, dtype=F64)
    assert equivariance_loss(e1, changed, chunks=3).item() == loss.item()
    loss.backward()
    assert torch.equal(e1.grad[9:], torch.zeros(2, 4, dtype=F64)) and e1.grad[:9].abs().sum() > 0


def test_one_chunk_is_the_whole_batch_gram_matching():
    torch.manual_seed(4)
    e1, e2 = torch.randn(7, 3, dtype=F64), torch.randn(7, 3, dtype=F64)
    gap = e1 @ e1.T - e2 @ e2.T
    expected = (2 / 7) * (gap.pow(2).sum() - gap.diagonal().pow(2).sum())
    assert equivariance_loss(e1, e2).item() == pytest.approx(expected.item(), rel=1e-13)


def test_more_chunks_than_rows_is_an_error():
    with pytest.raises(ValueError, match="3 rows cannot form 4 chunks"):
        equivariance_loss(torch.randn(3, 2), torch.randn(3, 2), chunks=4)


@pytest.mark.parametrize("e1, e2, chunks, message", [
    (torch.randn(4, 3), torch.randn(5, 3), 1, r"same shape \(N, D\)"),
    (torch.randn(4), torch.randn(4), 1, r"same shape \(N, D\)"),
    (torch.randn(4, 3), torch.randn(4, 3), 0, "chunks >= 1"),
])
def test_bad_arguments_are_one_line_errors(e1, e2, chunks, message):
    with pytest.raises(ValueError, match=message):
        equivariance_loss(e1, e2, chunks=chunks)


# --- gradients and precision ---------------------------------------------------------------------
def test_gradcheck_float64_with_leftover_rows():
    torch.manual_seed(5)
    e1 = torch.randn(7, 3, dtype=F64, requires_grad=True)
    e2 = torch.randn(7, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: equivariance_loss(a, b, chunks=2), (e1, e2))


def test_gradient_flows_into_both_views():
    torch.manual_seed(6)
    e1 = torch.randn(8, 3, dtype=F64, requires_grad=True)
    e2 = torch.randn(8, 3, dtype=F64, requires_grad=True)
    equivariance_loss(e1, e2, chunks=2).backward()
    assert e1.grad.abs().sum() > 0 and e2.grad.abs().sum() > 0  # no stop-gradient on either side


@pytest.mark.parametrize("dtype, expected", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                             (torch.float16, torch.float32), (torch.bfloat16, torch.float32)])
def test_dtype_is_kept_or_upcast_never_downcast(dtype, expected):
    torch.manual_seed(7)
    e1, e2 = torch.randn(8, 4).to(dtype), torch.randn(8, 4).to(dtype)
    assert equivariance_loss(e1, e2, chunks=2).dtype == expected
    assert equivariance_loss(e1.double(), e2.to(dtype), chunks=2).dtype == torch.float64  # promoted, not downcast


def test_float64_is_computed_in_float64():
    torch.manual_seed(8)
    e1, e2 = torch.randn(32, 16, dtype=F64), torch.randn(32, 16, dtype=F64)
    exact = equivariance_loss(e1, e2, chunks=4).item()
    single = equivariance_loss(e1.float(), e2.float(), chunks=4).item()
    assert exact == pytest.approx(released_formula(e1, e2, 4), rel=1e-12)
    assert exact != single and exact == pytest.approx(single, rel=1e-5)


def test_runs_outside_autocast():
    torch.manual_seed(9)
    e1, e2 = torch.randn(8, 4), torch.randn(8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = equivariance_loss(e1, e2, chunks=2)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(equivariance_loss(e1, e2, chunks=2).item(), rel=1e-6)


# --- the contrastive terms, as CARE's released code computes them ---------------------------------
def released_infonce(out_1, out_2, temperature):
    """The released ``infoNCE`` (utils.py) with plain floats, on L2-normalised rows: for each of
    the 2N anchors, -log(pos / (pos + sum of exp over the 2N - 2 other rows)), averaged."""
    rows = out_1.tolist() + out_2.tolist()
    n = len(out_1)

    def sim(a, b):
        return math.exp(sum(x * y for x, y in zip(rows[a], rows[b])) / temperature)

    total = 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        negatives = sum(sim(i, j) for j in range(2 * n) if j not in (i, partner))
        total -= math.log(sim(i, partner) / (sim(i, partner) + negatives))
    return total / (2 * n)


def test_care_infonce_is_ssl_kits_nt_xent_on_the_raw_projections():
    torch.manual_seed(10)
    z1, z2 = torch.randn(6, 5, dtype=F64) * 3, torch.randn(6, 5, dtype=F64) * 3  # raw: norms far from 1
    expected = released_infonce(F.normalize(z1, dim=1), F.normalize(z2, dim=1), 0.5)
    assert nt_xent(torch.cat([z1, z2]), n_views=2, temperature=0.5).item() == pytest.approx(expected, rel=1e-12)


def test_care_moco_term_is_ssl_kits_moco_infonce():
    torch.manual_seed(11)
    q, k = F.normalize(torch.randn(5, 4, dtype=F64), dim=1), F.normalize(torch.randn(5, 4, dtype=F64), dim=1)
    queue = F.normalize(torch.randn(4, 7, dtype=F64), dim=0)
    expected = 0.0  # the released forward_moco: logits [q.k, q.queue] / T, cross-entropy with target 0
    for i in range(5):
        logits = [float(q[i] @ k[i]) / 0.2] + [float(q[i] @ queue[:, j]) / 0.2 for j in range(7)]
        expected -= logits[0] - math.log(sum(math.exp(x) for x in logits))
    assert moco_infonce(q, k, queue, 0.2).item() == pytest.approx(expected / 5, rel=1e-12)

"""Our losses equal the released formulas of github.com/amoskalev/contrasting_quadratic (methods/
objectives.py, simclr.py, simclr_qare.py, sparseclr.py, sparseclr_qare.py) to 1e-6 relative in
float64. The re-implementations below are deliberately plain: Python loops over the released
interleaved layout (rows 2i and 2i + 1 are the two views of image i), the released steps in the
released order (the row-swap permutation of the SimCLR term, exp(1/T) subtracted for the self
term, sparsemax by sorting with the row max subtracted first), numpy only for the eigenvalues."""

import math

import numpy as np
import pytest
import torch

from ssl_kit_qare import clipped_cosine, lap_loss, qare_regularizer, sparseclr_loss

EPS = 1e-8


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def cosine_matrix(rows, clip):
    """get_similarities (clip: F.normalize then clamp(min=1e-8)) or the plain SimCLR / SparseCLR
    cosine (x x^T / clamp(|x| |x|^T, 1e-8))."""
    out = []
    for a in rows:
        line = []
        for b in rows:
            if clip:
                na, nb = max(norm(a), 1e-12), max(norm(b), 1e-12)
                line.append(max(sum(x / na * y / nb for x, y in zip(a, b)), EPS))
            else:
                line.append(sum(x * y for x, y in zip(a, b)) / max(norm(a) * norm(b), EPS))
        out.append(line)
    return out


def released_qare(x):
    """objectives.QARe on get_similarities of the even and the odd rows."""
    s1 = cosine_matrix(x[0::2], clip=True)
    s2 = cosine_matrix(x[1::2], clip=True)
    b = len(s1)
    p1 = np.array([[1 + v for v in row] for row in s1])
    p2 = np.array([[1 + v for v in row] for row in s2])
    eig1, eig2 = sorted(np.linalg.eigvalsh(p1)), sorted(np.linalg.eigvalsh(p2))  # max_scalar_prod
    return sum(u * v for u, v in zip(eig1, eig2)) / (b * (b - 1))


def released_simclr_term(x, t=0.5, clip=False):
    """methods/simclr.py's return_loss_fn (clip=False) and the LAP term of simclr_qare.py (clip=True)."""
    size = len(x)
    e = [[math.exp(c / t) for c in row] for row in cosine_matrix(x, clip)]
    idx = list(range(size))
    for i in range(0, size, 2):  # idx[::2] += 1; idx[1::2] -= 1
        idx[i], idx[i + 1] = i + 1, i
    permuted = [e[idx[r]] for r in range(size)]  # x_ab[idx]
    ratios = []
    for i in range(size):
        column = sum(permuted[k][i] for k in range(size))  # x_ab.sum(0)
        ratios.append(permuted[i][i] / (column - math.exp(1 / t)))  # diag / (sum - exp(1/t))
    return -math.log(sum(ratios) / size)


def released_sparsemax(row):
    """The released sparsemax module on one row: subtract the max, sort, bound, threshold."""
    shifted = [v - max(row) for v in row]
    zs = sorted(shifted, reverse=True)
    cumulative, k = 0.0, 0
    is_gt = []
    for j, v in enumerate(zs, start=1):
        cumulative += v
        is_gt.append(1 + j * v > cumulative)
        if is_gt[-1]:
            k = j
    tau = (sum(v for v, g in zip(zs, is_gt) if g) - 1) / k
    return [max(0.0, v - tau) for v in shifted]


def released_sparseclr_term(x, clip=False):
    """methods/sparseclr.py's return_loss_fn (clip=False) and the LAP term of sparseclr_qare.py
    (clip=True): margin 1 at the positives (2i, 2i+1) and (2i+1, 2i), the diagonal removed."""
    size = len(x)
    c = cosine_matrix(x, clip)
    losses = []
    for r in range(size):
        partner = r + 1 if r % 2 == 0 else r - 1
        row = [c[r][k] - (1.0 if k == partner else 0.0) for k in range(size)]  # add_margin
        positive = row[partner]  # mine_positives
        negatives = [row[k] for k in range(size) if k != r]  # mine_negatives
        support = [p != 0 for p in released_sparsemax(negatives)]  # detached
        supp_neg = [v if s else 0.0 for v, s in zip(negatives, support)]
        tau = (sum(supp_neg) - 1) / sum(support)
        supp_thr = [tau if s else 0.0 for s in support]
        losses.append(0.5 * sum(a * a - b * b for a, b in zip(supp_neg, supp_thr)) - positive + 0.5)
    return sum(losses) / size


def interleaved(seed, n=6, d=5, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(2 * n, d, dtype=torch.float64, generator=generator)
    return x, x[0::2], x[1::2]  # released layout, and our two sets


SEEDS = range(5)


@pytest.mark.parametrize("seed", SEEDS)
def test_qare_equals_the_released_objective(seed):
    x, z1, z2 = interleaved(seed)
    assert qare_regularizer(z1, z2).item() == pytest.approx(released_qare(x.tolist()), rel=1e-6)


@pytest.mark.parametrize("clip", [False, True], ids=["simclr", "simclr_qare"])
@pytest.mark.parametrize("seed", SEEDS)
def test_lap_equals_the_released_simclr_term(seed, clip):
    x, z1, z2 = interleaved(seed, scale=3.0)
    ours = lap_loss(z1, z2, temperature=0.5, similarity=clipped_cosine if clip else "cosine")
    assert ours.item() == pytest.approx(released_simclr_term(x.tolist(), clip=clip), rel=1e-6)


@pytest.mark.parametrize("clip", [False, True], ids=["sparseclr", "sparseclr_qare"])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [3, 8])
def test_sparseclr_equals_the_released_term(seed, clip, n):
    x, z1, z2 = interleaved(seed, n=n, d=4)
    ours = sparseclr_loss(z1, z2, margin=1.0, similarity=clipped_cosine if clip else "cosine")
    assert ours.item() == pytest.approx(released_sparseclr_term(x.tolist(), clip=clip), rel=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_combined_objectives_equal_the_released_totals(seed):
    x, z1, z2 = interleaved(seed)
    alpha, beta = 1.0, 0.5  # the README's weights
    rows = x.tolist()
    simclr_qare = alpha * lap_loss(z1, z2, similarity=clipped_cosine) + beta * qare_regularizer(z1, z2)
    expected = alpha * released_simclr_term(rows, clip=True) + beta * released_qare(rows)
    assert simclr_qare.item() == pytest.approx(expected, rel=1e-6)
    sparseclr_qare = alpha * sparseclr_loss(z1, z2, similarity=clipped_cosine) + beta * qare_regularizer(z1, z2)
    expected = alpha * released_sparseclr_term(rows, clip=True) + beta * released_qare(rows)
    assert sparseclr_qare.item() == pytest.approx(expected, rel=1e-6)


def test_released_sparsemax_support_is_ours_on_the_training_scale():
    """Near-collapsed rows (cosines close to 1, the margin setting them apart) select the same
    support as the released code."""
    generator = torch.Generator().manual_seed(7)
    base = torch.randn(1, 8, dtype=torch.float64, generator=generator)
    x = base + 0.05 * torch.randn(16, 8, dtype=torch.float64, generator=generator)
    ours = sparseclr_loss(x[0::2], x[1::2], margin=1.0)
    assert ours.item() == pytest.approx(released_sparseclr_term(x.tolist()), rel=1e-6)

"""ssl_kit.distributed.gather and nt_xent across 2 gloo processes on CPU, in float64.

Two plain Python processes meet through a file in tmp_path (FileStore rendezvous: no port to
pick, so no race for a free one). Each writes its measurements to JSON; the assertions run here.
"""

import textwrap

import pytest
import torch

from ssl_kit import distributed
from ssl_kit.losses import nt_xent
from ssl_kit.testing import run_workers

WORKER = textwrap.dedent(
    r'''
    import json, math, sys

    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from ssl_kit import distributed
    from ssl_kit.losses import nt_xent

    rank, world, store, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    result = {"rank": rank, "world_size": distributed.world_size(), "rank_fn": distributed.rank()}

    # (a) gather: forward = concatenation in rank order; backward = SUM over processes of the
    # gradients w.r.t. this rank's slice.
    def rows_of(r):
        return torch.arange(6, dtype=torch.float64).reshape(3, 2) + 100 * r

    def weights_of(r):
        return torch.linspace(-1, 1, 6 * world, dtype=torch.float64).reshape(3 * world, 2) * (r + 1)

    x = rows_of(rank).requires_grad_()
    y = distributed.gather(x)
    (y * weights_of(rank)).sum().backward()
    expected_grad = sum(weights_of(r)[3 * rank : 3 * rank + 3] for r in range(world))
    result["gather_forward_exact"] = torch.equal(y.detach(), torch.cat([rows_of(r) for r in range(world)]))
    result["gather_backward_gap"] = (x.grad - expected_grad).abs().max().item()
    result["rank_offset"] = distributed.rank_offset(3)
    result["gather_nograd_exact"] = torch.equal(distributed.gather_nograd(x), y.detach())
    result["all_reduce_mean"] = distributed.all_reduce_mean(torch.tensor([float(rank)], dtype=torch.float64)).item()

    # the trainer's collectives: every process gets the same answer
    result["any_process"] = [distributed.any_process(rank == 1, "cpu"), distributed.any_process(False, "cpu"),
                             distributed.any_process(torch.tensor([rank == 0, False]), "cpu")]
    result["mean_over_processes"] = distributed.mean_over_processes(
        {"a": torch.tensor(float(rank)), "b": torch.tensor(2.0 * rank + 1)}, "cpu")

    # unequal row counts: a clear ValueError on every process (none hangs)
    try:
        distributed.gather(torch.zeros(2 + rank, 2))
        result["unequal_error"] = None
    except ValueError as error:
        result["unequal_error"] = str(error)

    # (b) nt_xent: 2 processes x N images vs 1 process with the 2N images. Same data everywhere:
    # images [r*N, (r+1)*N) belong to rank r; a shared linear "projector" stands in for the model.
    V, N, D, T = 3, 4, 5, 0.3
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(V, world * N, 7, dtype=torch.float64, generator=generator)  # (view, image, feature)
    weight0 = torch.randn(7, D, dtype=torch.float64, generator=generator)

    def view_major(x):
        return x.reshape(-1, x.shape[-1])

    # the single-process reference runs here too, so it must not gather: gather=False
    weight = weight0.clone().requires_grad_()
    z_all = view_major(inputs @ weight)
    z_all.retain_grad()
    single = nt_xent(z_all, n_views=V, temperature=T, gather=False)
    single.backward()

    mine = slice(rank * N, (rank + 1) * N)
    local_weight = weight0.clone().requires_grad_()
    z_local = view_major(inputs[:, mine] @ local_weight)
    z_local.retain_grad()
    local = nt_xent(z_local, n_views=V, temperature=T)
    local.backward()
    grad_w = local_weight.grad.clone()
    dist.all_reduce(grad_w)  # what DDP does to parameter gradients: average over processes
    grad_w /= world

    # per-row losses of the single process, by an independent loop, for this rank's rows
    zn = F.normalize(z_all.detach(), dim=1)
    s = zn @ zn.T / T
    rows = [v * world * N + i for v in range(V) for i in range(rank * N, (rank + 1) * N)]
    per_row = []
    for a in rows:
        positives = [v * world * N + a % (world * N) for v in range(V)]
        num = sum(math.exp(s[a, p]) for p in positives if p != a)
        den = sum(math.exp(s[a, k]) for k in range(V * world * N) if k != a)
        per_row.append(-math.log(num / den))

    result["local_vs_single_rows_gap"] = abs(local.item() - sum(per_row) / len(per_row))
    result["mean_loss_gap"] = abs(distributed.all_reduce_mean(local).item() - single.item())
    # z_local.grad already holds the sum over both processes' losses (gather's backward);
    # dividing by world_size is DDP's averaging
    result["z_grad_gap"] = (z_local.grad / world - z_all.grad[rows]).abs().max().item()
    result["param_grad_gap"] = (grad_w - weight.grad).abs().max().item()
    result["dtype"] = str(local.dtype)

    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()
    '''
)


def test_two_gloo_processes_gather_and_nt_xent_equal_one_process(tmp_path):
    for r, got in enumerate(run_workers(WORKER, tmp_path, timeout=60)):
        assert (got["world_size"], got["rank_fn"], got["rank_offset"]) == (2, r, 3 * r)
        assert got["all_reduce_mean"] == 0.5
        assert got["any_process"] == [True, False, True] and got["mean_over_processes"] == {"a": 0.5, "b": 2.0}
        assert got["unequal_error"] and "same number of rows" in got["unequal_error"], got
        assert got["dtype"] == "torch.float64"
        gaps = {k: got[k] for k in ("local_vs_single_rows_gap", "mean_loss_gap", "z_grad_gap", "param_grad_gap")}
        print(f"rank {r}: 2 processes vs 1 (float64): {gaps}")
        assert max(gaps.values()) < 1e-10, gaps
        assert got["gather_forward_exact"] and got["gather_nograd_exact"], got
        assert got["gather_backward_gap"] == 0.0, got  # the sum over processes, exactly


def test_single_process_helpers_are_identities():
    x = torch.randn(4, 3, requires_grad=True)
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.rank_offset(4) == 0
    assert distributed.gather(x) is x  # no copy, gradient untouched
    assert torch.equal(distributed.gather_nograd(x), x) and not distributed.gather_nograd(x).requires_grad
    assert torch.equal(distributed.all_reduce_mean(x), x)
    z = torch.randn(8, 5, dtype=torch.float64)
    assert nt_xent(z, gather=True).item() == nt_xent(z, gather=False).item()


def test_collectives_move_their_tensor_to_the_given_device(monkeypatch):
    """NCCL refuses CPU tensors: whatever the flag or values are (a bool, a CPU tensor), the tensor
    handed to the collective is on the device the caller names ("meta" stands for a GPU here)."""
    seen = []

    class Reduced(Exception):
        pass

    def all_reduce(tensor, op=None):
        seen.append(tensor.device)
        raise Reduced  # a meta tensor has no value to return

    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed.dist, "all_reduce", all_reduce)
    calls = [lambda: distributed.any_process(torch.tensor([True, False]), "meta"),
             lambda: distributed.any_process(False, "meta"),
             lambda: distributed.mean_over_processes({"loss": torch.tensor(1.0), "acc": torch.tensor(2)}, "meta")]
    for call in calls:
        with pytest.raises(Reduced):
            call()
    assert seen == [torch.device("meta")] * 3

"""The losses across 2 gloo processes on CPU, in float64: with gather (the default) 2 processes x
N images give the value and, after DDP's averaging, the gradient of 1 process with the 2N images,
for the pairwise terms (LAP: a log of a mean over all rows; SparseCLR: a mean of per-row losses)
and for the QARe set regulariser on the gathered sets. With gather=False, QARe is formed from each
process's own sets: the value of its N images alone, which is not the global batch's.

Two plain Python processes meet through a file in tmp_path (FileStore rendezvous, no port). Each
writes its measurements to JSON; the assertions run here.
"""

import textwrap

import torch

from ssl_kit.testing import run_workers
from ssl_kit_qare import qare_regularizer

WORKER = textwrap.dedent(
    r'''
    import json, sys

    import torch
    import torch.distributed as dist

    from ssl_kit import distributed
    from ssl_kit_qare import clipped_cosine, lap_loss, qare_regularizer, sparseclr_loss

    rank, world, store, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)

    # the same data on every process: images [r*N, (r+1)*N) belong to rank r; a shared linear
    # "projector" stands in for the model, so its gradient is what DDP averages
    N, D = 5, 4
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(2, world * N, 6, dtype=torch.float64, generator=generator)  # (view, image, feature)
    weight0 = torch.randn(6, D, dtype=torch.float64, generator=generator)
    mine = slice(rank * N, (rank + 1) * N)

    def ddp_average(grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad / world

    losses = {
        "lap": lambda a, b, g: lap_loss(a, b, temperature=0.5, similarity=clipped_cosine, gather=g),
        "lap_cosine": lambda a, b, g: lap_loss(a, b, temperature=0.5, gather=g),
        "sparseclr": lambda a, b, g: sparseclr_loss(a, b, margin=1.0, gather=g),
        "sparseclr_clipped": lambda a, b, g: sparseclr_loss(a, b, margin=1.0, similarity=clipped_cosine, gather=g),
        "qare": lambda a, b, g: qare_regularizer(a, b, gather=g),
    }
    result = {}
    for name, fn in losses.items():
        # one process with the whole batch (run here too, so it must not gather)
        weight = weight0.clone().requires_grad_()
        single = fn(inputs[0] @ weight, inputs[1] @ weight, False)
        single.backward()
        # this process's share, gathering
        local_weight = weight0.clone().requires_grad_()
        local = fn(inputs[0, mine] @ local_weight, inputs[1, mine] @ local_weight, True)
        local.backward()
        result[name] = {
            "single": single.item(),
            "local": local.item(),
            "mean_over_processes": distributed.all_reduce_mean(local).item(),
            "grad_gap": (ddp_average(local_weight.grad) - weight.grad).abs().max().item(),
            "grad_scale": weight.grad.abs().max().item(),
            "dtype": str(local.dtype),
        }

    # QARe of the per-process sets: this process's N images; DDP averages the gradients
    local_weight = weight0.clone().requires_grad_()
    own = qare_regularizer(inputs[0, mine] @ local_weight, inputs[1, mine] @ local_weight, gather=False)
    own.backward()
    result["qare_local"] = {"value": own.item(), "ddp_grad": ddp_average(local_weight.grad).tolist()}
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()
    '''
)


def test_two_processes_equal_one_process_and_local_qare_sets_do_not(tmp_path):
    ranks = run_workers(WORKER, tmp_path)
    for r, got in enumerate(ranks):
        for name in ("lap", "lap_cosine", "sparseclr", "sparseclr_clipped", "qare"):
            m = got[name]
            print(f"rank {r} {name}: {m}")
            assert m["dtype"] == "torch.float64"
            # the value: every process holds the one-process value (LAP, QARe: global statistics),
            # or the mean over processes does (SparseCLR: a mean over rows)
            assert abs(m["mean_over_processes"] - m["single"]) < 1e-12, (name, m)
            if name.startswith(("lap", "qare")):
                assert abs(m["local"] - m["single"]) < 1e-12, (name, m)
            assert m["grad_scale"] > 1e-3 and m["grad_gap"] < 1e-12, (name, m)
    # per-process sets: each process reports the value of its own images, computed here in one
    # process without any collective; DDP's averaged gradient is the mean of the per-set gradients
    N, generator = 5, torch.Generator().manual_seed(0)
    inputs = torch.randn(2, 2 * N, 6, dtype=torch.float64, generator=generator)
    weight0 = torch.randn(6, 4, dtype=torch.float64, generator=generator)
    grads, values = [], []
    for r, got in enumerate(ranks):
        weight = weight0.clone().requires_grad_()
        value = qare_regularizer(inputs[0, r * N:(r + 1) * N] @ weight, inputs[1, r * N:(r + 1) * N] @ weight, gather=False)
        value.backward()
        values.append(value.item())
        grads.append(weight.grad)
        assert abs(got["qare_local"]["value"] - value.item()) < 1e-12, (got["qare_local"]["value"], value.item())
    for got in ranks:
        assert torch.allclose(torch.tensor(got["qare_local"]["ddp_grad"], dtype=torch.float64), (grads[0] + grads[1]) / 2,
                              rtol=0, atol=1e-12)
    # ... a different objective from the global batch's
    assert abs(sum(values) / 2 - ranks[0]["qare"]["single"]) > 1e-3, (values, ranks[0]["qare"]["single"])
    assert ranks[0]["sparseclr"]["local"] != ranks[1]["sparseclr"]["local"]  # a mean over each process's own rows

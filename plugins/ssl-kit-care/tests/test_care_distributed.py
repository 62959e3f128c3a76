"""equivariance_loss across 2 gloo processes on CPU, in float64: the across-process question.

With ``gather=True`` (what the method uses) the chunks are formed on the GATHERED batch, rank-major:
every process holds the one-process value of the 2N rows with C chunks, a chunk may span both
processes, leftover rows are the last process's last rows, and DDP's gradient averaging gives the
one-process gradient. With ``gather=False`` each process chunks its own N rows (the released
ImageNet-100 script's per-GPU splits): the mean over processes is the one-process loss with 2C
chunks of N / C rows, which differs from the gathered loss with C chunks.

Two plain Python processes meet through a file in tmp_path (ssl_kit.testing.run_workers).
"""

import textwrap

from ssl_kit.testing import run_workers

WORKER = textwrap.dedent(
    r'''
    import json, sys

    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from ssl_kit import distributed
    from ssl_kit_care import equivariance_loss

    rank, world, store, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)

    def ddp_average(grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad / world

    result = {}
    # (rows per process, chunks): 6 rows, 3 chunks of 4 on the gathered 12 (chunk 1 spans both
    # processes); 7 rows, 3 chunks of 4 on 14: rows 12 and 13 (rank 1's last two) are ignored
    for n, chunks in ((6, 3), (7, 3)):
        generator = torch.Generator().manual_seed(n)
        inputs = torch.randn(2, world * n, 5, dtype=torch.float64, generator=generator)  # (copy, image, feature)
        weight0 = torch.randn(5, 4, dtype=torch.float64, generator=generator)  # a shared "projector"
        mine = slice(rank * n, (rank + 1) * n)

        def loss(rows, weight, **kw):
            return equivariance_loss(F.normalize(inputs[0, rows] @ weight, dim=1),
                                     F.normalize(inputs[1, rows] @ weight, dim=1), **kw)

        everything = slice(0, world * n)
        single_w = weight0.clone().requires_grad_()
        single = loss(everything, single_w, chunks=chunks, gather=False)  # one process, the whole batch
        single.backward()
        per_chunk_w = weight0.clone().requires_grad_()
        single_2c = loss(everything, per_chunk_w, chunks=world * chunks, gather=False) if n % chunks == 0 else None
        if single_2c is not None:
            single_2c.backward()
        local_w = weight0.clone().requires_grad_()
        local = loss(mine, local_w, chunks=chunks)  # gather=True: the default
        local.backward()
        own_w = weight0.clone().requires_grad_()
        own = loss(mine, own_w, chunks=chunks, gather=False)
        own.backward()
        result[f"{n}x{chunks}"] = {
            "dtype": str(local.dtype),
            "single": single.item(),
            "local": local.item(),
            "grad_gap": (ddp_average(local_w.grad) - single_w.grad).abs().max().item(),
            "grad_scale": single_w.grad.abs().max().item(),
            "own_mean": distributed.all_reduce_mean(own.detach()).item(),
            "single_2c": None if single_2c is None else single_2c.item(),
            "own_grad_gap": None if single_2c is None else
                (ddp_average(own_w.grad) - per_chunk_w.grad).abs().max().item(),
        }
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()
    '''
)


def test_chunks_are_formed_on_the_gathered_batch_and_per_process_only_with_gather_false(tmp_path):
    ranks = run_workers(WORKER, tmp_path)
    for rank, got in enumerate(ranks):
        for case, m in got.items():
            print(f"rank {rank} {case}: {m}")
            assert m["dtype"] == "torch.float64"
            # gathered chunks: every process holds the one-process loss, DDP gives its gradient
            assert abs(m["local"] - m["single"]) <= 1e-12 * abs(m["single"]), (case, m)
            assert m["grad_scale"] > 1e-3 and m["grad_gap"] < 1e-12, (case, m)
        per_process = got["6x3"]
        # gather=False: C chunks per process = 2C chunks of the global batch, not C
        assert abs(per_process["own_mean"] - per_process["single_2c"]) <= 1e-12 * per_process["single_2c"], per_process
        assert per_process["own_grad_gap"] < 1e-12, per_process
        assert abs(per_process["own_mean"] - per_process["single"]) > 1e-3, per_process
    assert ranks[0]["6x3"]["local"] == ranks[1]["6x3"]["local"]  # the same value on every process

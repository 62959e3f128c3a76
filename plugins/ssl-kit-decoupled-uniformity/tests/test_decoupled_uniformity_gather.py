"""decoupled_uniformity_loss across 2 gloo processes on CPU, in float64: each process holds half
of the images (and of their priors), gathers, and gets the one-process loss of the whole batch;
its gradient, averaged over the processes as DDP does, is the one-process gradient.

The lambda = 0 case checks that 1/sqrt(B) takes the global batch: a per-process B would give
another lambda, another loss. Two plain Python processes meet through a file in tmp_path
(ssl_kit.testing.run_workers: FileStore rendezvous, no port to pick); each writes what it measured
to JSON and the assertions run here.
"""

import textwrap

from ssl_kit.testing import run_workers

WORKER = textwrap.dedent(
    r'''
    import json, sys

    import torch
    import torch.distributed as dist

    from ssl_kit_decoupled_uniformity import decoupled_uniformity_loss

    rank, world, store, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    B, V, F, D = 5, 2, 6, 4  # images per process, views, input and projection widths
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(world * B, V, F, dtype=torch.float64, generator=generator)
    priors = torch.rand(world * B, 3, dtype=torch.float64, generator=generator)
    weight0 = torch.randn(F, D, dtype=torch.float64, generator=generator)
    result = {}
    for name, kwargs in {"plain": {}, "rbf": {"kernel": "rbf", "sigma": 0.4},
                         "cosine lambda 0": {"kernel": "cosine", "kernel_lambda": 0.0}}.items():
        prior = priors if kwargs else None
        # one process with the whole batch (no gather)
        weight = weight0.clone().requires_grad_()
        single = decoupled_uniformity_loss(inputs @ weight, prior, gather=False, **kwargs)
        single.loss.backward()
        single_grad = weight.grad.clone()
        # this process's half, gathered
        mine = slice(rank * B, (rank + 1) * B)
        weight = weight0.clone().requires_grad_()
        local = decoupled_uniformity_loss(inputs[mine] @ weight, None if prior is None else prior[mine], **kwargs)
        local.loss.backward()
        grad = weight.grad.clone()
        dist.all_reduce(grad)
        grad /= world  # DDP averages parameter gradients over the processes
        result[name] = {"dtype": str(local.loss.dtype),
                        "loss_gap": abs(local.loss.item() - single.loss.item()),
                        "align_gap": abs(local.align.item() - single.align.item()),
                        "grad_gap": (grad - single_grad).abs().max().item(),
                        "grad_scale": single_grad.abs().max().item()}
    with open(f"{folder}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()
    '''
)


def test_two_processes_compute_the_one_process_loss_and_gradient(tmp_path):
    ranks = run_workers(WORKER, tmp_path)
    for rank, result in enumerate(ranks):
        assert set(result) == {"plain", "rbf", "cosine lambda 0"}
        for name, gaps in result.items():
            assert gaps["dtype"] == "torch.float64", (rank, name, gaps)
            assert gaps["grad_scale"] > 1e-3, (rank, name, gaps)
            assert gaps["loss_gap"] < 1e-12 and gaps["align_gap"] < 1e-12, (rank, name, gaps)
            assert gaps["grad_gap"] < 1e-12, (rank, name, gaps)

"""The batch contract: views depend on (seed, epoch, index, view) only."""

import torch

from ssl_kit.data.sources import FakeConfig, fake
from ssl_kit.data.views import EpochBatchSampler, ViewSpec, mix_seed
from ssl_kit.trainer import build_view_dataset


def loader(num_workers, seed=0, world_size=1, rank=0, start_step=0):
    data = fake(FakeConfig(num_samples=24, image_size=16), "train")
    views = build_view_dataset(data, ViewSpec(global_views=2, local_views=1, preset="simclr"), seed)
    sampler = EpochBatchSampler(len(data), 8, seed, epochs=2, rank=rank, world_size=world_size, start_step=start_step)
    return torch.utils.data.DataLoader(views, batch_sampler=sampler, num_workers=num_workers)


def test_batches_have_the_contract_layout():
    batch = next(iter(loader(0)))
    assert set(batch) == {"global", "local", "index", "label"}
    assert len(batch["global"]) == 2 and batch["global"][0].shape == (8, 3, 16, 16)
    assert len(batch["local"]) == 1 and batch["local"][0].shape == (8, 3, 6, 6)
    assert not torch.equal(batch["global"][0], batch["global"][1])


def test_same_sample_gets_same_views_whatever_num_workers():
    a, b = list(loader(0)), list(loader(2))
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert torch.equal(x["index"], y["index"])
        for v, w in zip(x["global"] + x["local"], y["global"] + y["local"]):
            assert torch.equal(v, w)


def test_two_processes_see_the_halves_of_the_one_process_batch():
    whole = list(loader(0))
    halves = [list(loader(0, world_size=2, rank=r)) for r in range(2)]
    for step, batch in enumerate(whole):
        joined = torch.cat([halves[0][step]["global"][1], halves[1][step]["global"][1]])
        assert torch.equal(joined, batch["global"][1])


def test_resume_inside_an_epoch_skips_without_replaying():
    whole = list(loader(0))
    resumed = list(loader(0, start_step=4))
    assert len(resumed) == 2
    for x, y in zip(whole[4:], resumed):
        assert torch.equal(x["global"][0], y["global"][0])


def test_epochs_and_seeds_change_views_and_order():
    batches = list(loader(0))
    assert not torch.equal(batches[0]["index"], batches[3]["index"])  # epoch 1 reshuffles
    other = list(loader(0, seed=1))
    assert not torch.equal(batches[0]["global"][0], other[0]["global"][0])
    assert mix_seed(0, 0, 1, 0) != mix_seed(0, 0, 0, 1)

"""One torch thread per test process.

CI runs pytest with one xdist worker per core, and the heavy work of the digits tests (augmenting
views) is single-threaded: a second intra-op thread per process only spins against the other
worker. The environment variable reaches the subprocesses of the contract suite (resume runs,
accelerate launches).
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

import os

import torch

# pytest-xdist runs the suite in two worker processes (CI's machine has 2 cores): one intra-op
# thread each, also in the processes the tests start (OMP_NUM_THREADS), so that nothing is
# oversubscribed; the digits thresholds were measured this way, and results depend on the thread
# count in their last bits.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """Long training tests first: with ``--maxschedchunk 1`` pytest-xdist hands them out one at a
    time, so each of its two workers takes its share at once instead of one of them starting a
    long test at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

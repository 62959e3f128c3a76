import os
from pathlib import Path

import pytest
import torch

from ssl_kit.recipe import load_recipe

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


TINY = Path(__file__).parent / "tiny.toml"


@pytest.fixture
def tiny(tmp_path):
    """tests/tiny.toml, the shared tiny recipe: ``tiny(*overrides, out=None)`` loads it with
    command-line-style overrides (``"data.batch_size=16"``, ``"eval.enabled=true"``) and its run
    directory at ``out`` (default: ``tmp_path / "run"``). A test that needs the file itself (the
    command line, a child recipe that ``extends`` it) uses ``Path(__file__).parent / "tiny.toml"``:
    conftest cannot be imported under ``--import-mode=importlib``."""

    def load(*overrides: str, out: Path | None = None):
        return load_recipe(str(TINY), [f"train.output_dir={out or tmp_path / 'run'}", *overrides])

    return load

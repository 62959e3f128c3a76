import importlib
import os

import pytest
import torch

torch.set_num_threads(2)


def need(module: str):
    """Import an optional extra's module; skip when missing, but fail under CI=true (CI installs
    every extra, so a skip there would hide a broken install)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install the extra providing '{module}'")
        pytest.skip(f"optional dependency '{module}' is not installed")

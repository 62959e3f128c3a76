"""Mixed precision: bf16 autocast on CPU, fp16 fallback without a GPU, loss dtype rules."""

import warnings

import pytest
import torch

from ssl_kit.losses import nt_xent
from ssl_kit import train
from ssl_kit.trainer import resolve_precision


def test_bf16_autocast_trains_on_cpu(tiny, tmp_path):
    results = train(tiny("data.num_samples=16", "train.epochs=2", "train.precision='bf16'"))
    assert results["steps"] == 4
    log = (tmp_path / "run" / "log.jsonl").read_text()
    assert "nan" not in log.lower()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_fp16_without_gpu_falls_back_with_a_warning():
    with pytest.warns(UserWarning, match="needs a GPU"):
        assert resolve_precision("fp16") == "no"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("auto") == "no"
        assert resolve_precision("bf16") == "bf16"


def test_losses_upcast_half_and_keep_float64_under_autocast():
    z = torch.randn(8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert nt_xent(z.bfloat16()).dtype == torch.float32
    assert nt_xent(z.double()).dtype == torch.float64

"""The method contract suite: every method plugin runs it in its own tests.

    from ssl_kit.testing import MethodContract

    class TestMyMethodContract(MethodContract):
        recipe = "tests/contract/my_method.toml"     # tiny: fake data, tiny backbone

        def loss_for_gradcheck(self):
            z = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
            return (lambda z: my_loss(z, temperature=0.5)), (z,)

pytest collects the class and runs every ``test_contract_*`` method on the recipe's method (what
each one runs and compares: docs/plugins.md, "Test it with the contract suite"). A failure names
the check, the tensor (parameter or buffer name) and the values that differ.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from ssl_kit.build import build, build_dataset, build_views, restore
from ssl_kit.checkpoint import list_checkpoints
from ssl_kit.data.sampler import EpochBatchSampler
from ssl_kit.loading import load_encoder
from ssl_kit.recipe import load_recipe
from ssl_kit.run import run
from ssl_kit.testing.helpers import assert_same_runs, run_contract


def first_batch(recipe: Any, seed_offset: int = 0) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A freshly built method and the first training batch of the recipe (views seeded with
    ``train.seed + seed_offset``), as one process sees them."""
    parts = build(recipe)
    views = build_views(parts, seed=recipe.train.seed + seed_offset)
    sampler = EpochBatchSampler(len(parts.dataset), recipe.data.batch_size, recipe.train.seed, 1)
    batch = next(iter(torch.utils.data.DataLoader(views, batch_sampler=sampler)))
    return parts.method, batch


def first_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> str:
    """'' when two state dicts are bitwise equal, else which tensor differs first and by how much."""
    if a.keys() != b.keys():
        return f"the keys differ: {sorted(set(a) ^ set(b))[:5]}"
    for key in a:
        if not torch.equal(a[key], b[key]):
            gap = (a[key].double() - b[key].double()).abs().max() if a[key].is_floating_point() else "(integer)"
            return f"tensor '{key}' differs (largest absolute difference {gap})"
    return ""


class MethodContract:
    """Mix-in test class; set ``recipe`` and implement :meth:`loss_for_gradcheck`."""

    #: path to a tiny recipe of the method under test
    recipe: str = ""
    #: run the 2 processes = 1 process check (two short launches, about a minute on 2 CPU cores)
    two_processes: bool = True
    #: extra ``key=value`` overrides of that check, e.g. ``("optim.name='sgd'",)`` (see docs/plugins.md:
    #: Adam turns a gradient that is only rounding noise into a full learning-rate step)
    two_process_overrides: tuple[str, ...] = ()
    #: its tolerance on every logged loss and checkpoint tensor: ``|x - y| <= atol + rtol * |y|``
    two_process_rtol: float = 1e-5
    two_process_atol: float = 1e-5

    def loss_for_gradcheck(self) -> tuple[Callable[..., torch.Tensor], tuple[torch.Tensor, ...]]:
        """The method's loss function and float64 inputs (requires_grad) for gradcheck."""
        raise NotImplementedError(f"{type(self).__name__} must define loss_for_gradcheck()")

    def load(self, tmp_path: Path, *overrides: str) -> Any:
        """The recipe with its run directory in ``tmp_path``, no progress bar, no evaluation, then ``overrides``."""
        if not self.recipe:
            raise AssertionError(f"{type(self).__name__}.recipe is not set")
        return load_recipe(self.recipe, [f"train.output_dir={tmp_path}", "train.progress=false",
                                         "eval.enabled=false", *overrides])

    def test_contract_forward_backward_on_random_data(self, tmp_path: Path) -> None:
        """forward on the recipe's first batch gives a finite scalar loss whose gradient reaches the encoder."""
        method, batch = first_batch(self.load(tmp_path))
        out = method(batch)
        loss = out.get("loss") if isinstance(out, dict) else None
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and torch.isfinite(loss), \
            f"forward(batch) must return a dict whose 'loss' is a finite scalar tensor, got {loss!r}"
        loss.backward()
        # the evaluated encoder, or the online backbone when that encoder is an EMA target (ReLIC, BYOL)
        trained = [p for p in method.encoder().parameters() if p.requires_grad] or list(method.backbone.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained), \
            "no gradient reaches the encoder: after loss.backward() every parameter of method.encoder() (or of " \
            "the online backbone) has a missing or zero .grad; is part of the loss detached?"

    def test_contract_loss_is_deterministic_for_a_fixed_seed(self, tmp_path: Path) -> None:
        """Two methods built from one seed give bitwise equal losses on one batch."""
        recipe = self.load(tmp_path)
        first, batch = first_batch(recipe)
        second, _ = first_batch(recipe)
        a, b = first(batch)["loss"], second(batch)["loss"]
        assert torch.equal(a, b), f"two methods built from one seed give different losses on one batch: {a} vs {b}"

    def test_contract_loss_gradcheck_float64(self) -> None:
        """The loss keeps float64 and passes ``torch.autograd.gradcheck``."""
        loss_fn, inputs = self.loss_for_gradcheck()
        assert all(t.dtype == torch.float64 for t in inputs if isinstance(t, torch.Tensor)), \
            "loss_for_gradcheck() must return float64 inputs"
        dtype = loss_fn(*inputs).dtype
        assert dtype == torch.float64, f"float64 inputs must give a float64 loss, got {dtype} (never downcast)"
        assert torch.autograd.gradcheck(loss_fn, inputs)

    def test_contract_state_dict_round_trip_through_safetensors(self, tmp_path: Path) -> None:
        """The state dict survives a safetensors file bitwise, and with it the encoder's features."""
        recipe = self.load(tmp_path)
        method, batch = first_batch(recipe)
        method(batch)["loss"].backward()  # move BN statistics and the like away from their init
        save_file({k: v.contiguous() for k, v in method.state_dict().items()}, str(tmp_path / "m.safetensors"))
        other, _ = first_batch(self.load(tmp_path, f"train.seed={recipe.train.seed + 1}"))
        other.load_state_dict(load_file(str(tmp_path / "m.safetensors")), strict=True)
        difference = first_difference(method.state_dict(), other.state_dict())
        assert not difference, f"after a safetensors round trip: {difference}"
        method.eval(), other.eval()
        with torch.no_grad():
            image = batch["global"][0]
            assert torch.equal(method.encoder()(image), other.encoder()(image)), \
                "the reloaded method's encoder gives other features: state the encoder needs is not in state_dict()"

    def test_contract_resume_after_sigkill_equals_uninterrupted_run(self, tmp_path: Path) -> None:
        """A run killed with SIGKILL inside a checkpoint save and resumed ends bitwise equal to one never killed."""
        def launch(out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
            cmd = [sys.executable, "-m", "ssl_kit", self.recipe, f"train.output_dir={out}", "train.max_steps=3",
                   "train.checkpoint_every=1", "train.progress=false", "eval.enabled=false", "train.export=false"]
            return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)

        for name, env, code in (("whole", None, 0), ("killed", {"SSL_KIT_TEST_KILL_AT": "save:model@2"}, -signal.SIGKILL),
                                ("killed", None, 0)):
            proc = launch(tmp_path / name, env)
            assert proc.returncode == code, f"run '{name}' exited {proc.returncode}, expected {code}:\n{proc.stderr[-3000:]}"
        a, b = (load_file(str(list_checkpoints(tmp_path / name)[-1] / "model.safetensors")) for name in ("whole", "killed"))
        difference = first_difference(a, b)
        assert not difference, f"killed during its 2nd checkpoint save and resumed, step 3 is not bitwise equal: {difference}"

    def test_contract_export_loads_the_evaluated_encoder(self, tmp_path: Path) -> None:
        """``ssl_kit.load_encoder`` on the export gives the checkpoint's ``encoder()`` features exactly."""
        recipe = self.load(tmp_path, "train.max_steps=1", "train.export=true")
        run(recipe)
        encoder = load_encoder(tmp_path / "export")
        method, batch = first_batch(recipe)
        info = build_dataset(recipe, recipe.data.train_split).info
        trained, _ = restore(recipe, tmp_path / "checkpoints" / "step_1", info)
        with torch.no_grad():
            image = batch["global"][0]
            assert torch.equal(encoder(image), trained.encoder()(image)), \
                "the exported encoder's features differ from the checkpoint's method.encoder()"

    def test_contract_two_processes_equal_one_process(self, tmp_path: Path) -> None:
        """One optimizer step on 2 processes equals 1 process on the same global batch (SyncBN on):
        every logged loss and checkpoint tensor within the tolerance, every replica identical."""
        import pytest  # the test extra's (ssl_kit.testing imports without it)

        if not self.two_processes:
            pytest.skip("covered by a shared launch elsewhere (two_processes = False)")
        run_contract(tmp_path, [self.recipe], processes=1, overrides=self.two_process_overrides)
        run_contract(tmp_path, [self.recipe], processes=2, overrides=self.two_process_overrides)
        name = Path(self.recipe).stem
        optimizer = load_recipe(self.recipe, list(self.two_process_overrides)).optim.name
        assert_same_runs(tmp_path / name / "p1", tmp_path / name / "p2", rtol=self.two_process_rtol,
                         atol=self.two_process_atol,
                         what=f"one optimizer step ({optimizer}, SyncBN on) of 1 process x the global batch and 2 "
                         "processes x half of it" + (" (with Adam, a parameter whose gradient is only rounding noise "
                                                     "takes a full lr-sized step: see two_process_overrides)"
                                                     if optimizer in ("adam", "adamw") else ""))

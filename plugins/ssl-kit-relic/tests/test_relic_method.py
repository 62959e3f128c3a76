"""The ReLIC method: config defaults, the EMA gamma schedule, the multi-crop pairs, and the method
contract suite of ssl_kit (2 processes = 1 process included)."""

import math
from pathlib import Path

import pytest
import torch

import ssl_kit_relic.method as relic_method
from ssl_kit.backbones import ConvNet, ConvNetConfig
from ssl_kit.errors import RecipeError, UserError
from ssl_kit.recipe import load_recipe
from ssl_kit.testing import MethodContract
from ssl_kit.spec import ViewSpec
from ssl_kit.testing import first_batch
from ssl_kit_relic import ReLIC, ReLICConfig, relic_loss

CONTRACT = Path(__file__).parent / "relic_contract.toml"


def tiny(**cfg):
    torch.manual_seed(0)
    backbone = ConvNet(ConvNetConfig(channels=[4], pool_after=[], output_grid=1, in_channels=1))
    return ReLIC(backbone, ReLICConfig(mlp_hidden_dim=8, mlp_output_dim=4, **cfg))


def views(n_global=2, n_local=4, batch=6):
    torch.manual_seed(1)
    return {"global": [torch.randn(batch, 1, 8, 8) for _ in range(n_global)],
            "local": [torch.randn(batch, 1, 4, 4) for _ in range(n_local)]}


# --- config ------------------------------------------------------------------------------------
def test_variant_defaults_apply_unless_set():
    contrastive, siglip = ReLICConfig(), ReLICConfig(variant="siglip")
    assert (contrastive.init_log_scale, contrastive.init_bias, contrastive.max_scale) == (0.0, 0.0, 5.0)
    assert (siglip.init_log_scale, siglip.init_bias, siglip.max_scale) == (math.log(10), -10.0, 15.0)
    chosen = ReLICConfig(variant="siglip", init_log_scale=1.0, init_bias=-3.0, max_scale=8.0)
    assert (chosen.init_log_scale, chosen.init_bias, chosen.max_scale) == (1.0, -3.0, 8.0)
    method = tiny(variant="siglip")
    assert method.log_scale.item() == pytest.approx(math.log(10)) and method.logit_bias.item() == -10.0


@pytest.mark.parametrize("override, message", [
    ("method.variant='sigmoid'", "key 'variant' must be 'contrastive' | 'siglip', got 'sigmoid'"),
    ("method.pairing='released'", "key 'pairing' must be 'views' | 'reference', got 'released'"),
    ("method.gamma0=1.5", "key 'gamma0' must be <= 1, got 1.5"),
    ("method.max_scale=0", "key 'max_scale' must be > 0, got 0"),
    ("method.ema_update_every=0", "key 'ema_update_every' must be >= 1, got 0"),
    ("method.alpah=1", "[method] unknown key 'alpah'. Did you mean 'alpha'?"),
])
def test_bad_config_values_are_one_line_recipe_errors(override, message):
    with pytest.raises(RecipeError) as err:
        load_recipe(str(CONTRACT), [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_too_few_views_is_a_user_error_when_the_views_are_set():
    with pytest.raises(UserError, match="at least 2 views"):
        tiny().set_views(ViewSpec(global_views=1, local_views=0))


# --- the EMA schedule --------------------------------------------------------------------------
def gamma(k, horizon, gamma0):
    return 1 - (1 - gamma0) * (math.cos(math.pi * k / horizon) + 1) / 2


def nudge(method):
    """Move the online weights (and BN buffers) as an optimizer step and a forward would."""
    with torch.no_grad():
        for p in [*method.backbone.parameters(), *method.critic.parameters()]:
            p.add_(torch.randn_like(p))
        for b in method.backbone.buffers():
            if b.is_floating_point():
                b.add_(torch.rand_like(b))


def online_state(method):
    return {k: v.clone() for k, v in method.online().state_dict().items()}


def test_gamma_schedule_hard_copies_then_ema_from_step_two():
    method = tiny(gamma0=0.9)
    steps_per_epoch, max_steps = 10, 50
    method.on_train_start(steps_per_epoch, max_steps)
    horizon = steps_per_epoch * (max_steps / steps_per_epoch + 2) - 1  # the reference's K
    assert int(method.ema_horizon) == horizon == 69
    nudge(method)
    method.after_step(1, max_steps)  # k = 1 <= ema_update_after: a hard copy, gamma untouched
    target = method.target.target.state_dict()
    assert all(torch.equal(target[n], v) for n, v in online_state(method).items())
    assert float(method.target.momentum) == 0.9
    current = 0.9
    for k in range(2, 40):
        before = {n: v.clone() for n, v in method.target.target.state_dict().items()}
        nudge(method)
        method.after_step(k, max_steps)
        online, after = online_state(method), method.target.target.state_dict()
        for name, value in after.items():
            if value.is_floating_point():  # parameters AND float buffers (BN statistics) are averaged
                expected = current * before[name] + (1 - current) * online[name]
                torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)
            else:
                assert torch.equal(value, online[name])
        current = gamma(k, horizon, 0.9)
        assert float(method.target.momentum) == pytest.approx(current, abs=1e-15)
    assert float(method.target.momentum) == pytest.approx(0.9 + 0.1 * (1 - math.cos(math.pi * 39 / 69)) / 2)


def test_update_after_and_every_follow_the_reference_switches():
    method = tiny(gamma0=0.9, ema_update_after=3, ema_update_every=2)
    method.on_train_start(5, 20)
    assert int(method.ema_horizon) == 5 * (20 / 5 + 2) - 3
    for k in (1, 2, 3):
        nudge(method)
        method.after_step(k, 20)
        assert all(torch.equal(method.target.target.state_dict()[n], v) for n, v in online_state(method).items())
    nudge(method)
    before = [p.clone() for p in method.target.target.parameters()]
    method.after_step(4, 20)  # first EMA update: k = ema_update_after + 1, and 4 % 2 == 0
    assert float(method.target.momentum) == pytest.approx(gamma(4, 27, 0.9))
    moved = [p.clone() for p in method.target.target.parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(before, moved))
    nudge(method)
    method.after_step(5, 20)  # odd step: the target and gamma stay
    assert all(torch.equal(a, b) for a, b in zip(moved, method.target.target.parameters()))
    assert float(method.target.momentum) == pytest.approx(gamma(4, 27, 0.9))


def test_schedule_state_is_in_the_state_dict():
    method = tiny()
    method.on_train_start(9, 90)
    state = method.state_dict()
    assert int(state["ema_horizon"]) == 90 + 18 - 1 and "target.momentum" in state
    assert state["target.momentum"].dtype == torch.float64


def test_ema_update_without_on_train_start_is_an_error():
    method = tiny()
    method.after_step(1, 10)  # a hard copy needs no horizon
    with pytest.raises(RuntimeError, match="on_train_start"):
        method.after_step(2, 10)


# --- multi-crop pairs --------------------------------------------------------------------------
def recorded_pairs(monkeypatch, method, batch):
    """Names (target view, online view) of every pair the method passes to relic_loss."""
    calls = []

    def recording_loss(online, target, *args, **kwargs):
        calls.append((online, target))
        return relic_loss(online, target, *args, **kwargs)

    monkeypatch.setattr(relic_method, "relic_loss", recording_loss)
    out = method(batch)
    named = {f"g{i}": v for i, v in enumerate(batch["global"])} | {f"l{i}": v for i, v in enumerate(batch["local"])}
    with torch.no_grad():
        online = {name: method.critic(method.backbone(v)) for name, v in named.items()}
        target = {name: method.target(v) for name, v in named.items() if name.startswith("g")}

    def name_of(tensor, candidates):
        (name,) = [n for n, v in candidates.items() if torch.equal(v, tensor)]
        return name

    return [(name_of(t, target), name_of(o.detach(), online)) for o, t in calls], out


def test_views_pairing_pairs_every_target_with_every_other_view(monkeypatch):
    pairs, out = recorded_pairs(monkeypatch, tiny(), views())
    assert len(pairs) == 2 * 5 == 10
    assert pairs == [("g0", v) for v in ("g1", "l0", "l1", "l2", "l3")] + [("g1", v) for v in ("g0", "l0", "l1", "l2", "l3")]
    assert out["features"].shape == (2 * 6, 4)


def test_reference_pairing_reproduces_the_released_list(monkeypatch):
    # released: online list = globals + views[:n_local] with views = globals + locals, i.e.
    # [g0, g1, g0, g1, l0, l1]; pairs skip equal list indices only
    pairs, _ = recorded_pairs(monkeypatch, tiny(pairing="reference"), views())
    assert len(pairs) == 10
    assert pairs == [("g0", v) for v in ("g1", "g0", "g1", "l0", "l1")] + [("g1", v) for v in ("g0", "g0", "g1", "l0", "l1")]
    assert ("g0", "g0") in pairs and ("g1", "g1") in pairs  # a global with its own target
    assert not {"l2", "l3"} & {o for _, o in pairs}  # some locals are never used


def test_loss_is_the_mean_over_pairs_and_metrics_are_logged():
    method, batch = tiny(), views(n_local=2)
    out = method(batch)
    with torch.no_grad():
        online = [method.critic(method.backbone(v)) for v in batch["global"] + batch["local"]]
        target = [method.target(v) for v in batch["global"]]
    terms = [relic_loss(online[o], target[t], method.log_scale, method.logit_bias) for t in range(2) for o in range(4) if o != t]
    torch.testing.assert_close(out["loss"], torch.stack([x.loss for x in terms]).mean())
    torch.testing.assert_close(out["kl"], torch.stack([x.kl for x in terms]).mean())
    assert out["scale"].item() == pytest.approx(1.0) and out["gamma"].item() == pytest.approx(0.99)
    assert not out["kl"].requires_grad


def test_encoder_is_the_target_encoder_and_gradients_reach_the_online_network():
    method = tiny()
    assert method.encoder() is method.target.target[0]
    assert not any(p.requires_grad for p in method.encoder().parameters())
    method(views())["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.backbone.parameters())
    assert method.log_scale.grad.item() != 0.0 and method.logit_bias.grad.item() == 0.0


def test_mixed_precision_forward_computes_the_loss_in_float32():
    method, batch = tiny(), views()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(batch)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert method.log_scale.grad is not None and torch.isfinite(method.log_scale.grad)


# --- the contract suite ------------------------------------------------------------------------
class TestReLICContract(MethodContract):
    recipe = str(CONTRACT)
    # per-sample views, which are bitwise the same whatever the batch: a batched view depends on its
    # batch at the 1e-7 level (the crop's batched matrix products), and Adam turns that noise in the
    # critic's gradient into a 2e-5 weight gap after one step (SGD does not; tests/test_batched_views.py
    # checks 2 processes = 1 on the batched path with SimCLR)
    two_process_overrides = ("data.batched_views=off",)

    def loss_for_gradcheck(self):
        torch.manual_seed(0)
        online = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
        target = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
        log_scale = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        bias = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
        return (lambda o, t, s, b: relic_loss(o, t, s, b, variant="siglip").loss), (online, target, log_scale, bias)

    def test_the_evaluated_encoder_is_the_gradient_free_target(self, tmp_path):
        method, _ = first_batch(self.load(tmp_path))
        assert not any(p.requires_grad for p in method.encoder().parameters())

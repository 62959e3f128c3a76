"""The colour-sensitivity evaluator: hand-computed scores, hand-made encoders that ignore colour
(score 0) or see nothing but colour, reproducibility, and a run of a built-in method with it."""

import math

import pytest
import torch
from torch import nn
from torchvision.transforms import v2

from ssl_kit import train
from ssl_kit.data import TensorImages
from ssl_kit.eval.evaluators import EvalContext
from ssl_kit.recipe import load_recipe
from ssl_kit_care import ColourSensitivity, ColourSensitivityConfig, measure_sensitivity, sensitivity_scores

KEY = "colour_sensitivity"
PLAIN = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])  # an evaluation transform without normalisation


def scores(clean, colour, crop):
    return sensitivity_scores(*(torch.tensor(x, dtype=torch.float64) for x in (clean, colour, crop)))


def test_scores_by_hand():
    out = scores([[1, 0], [0, 1]], [[1, 0], [0, 1]], [[0.6, 0.8], [0, 1]])
    # colour moves nothing; crop: (1 - 0.6 + 0) / 2 = 0.2; spread: 1 - cos(e1, e2) = 1
    assert out == {f"{KEY}_score": 0.0, f"{KEY}_crop_score": pytest.approx(20.0), f"{KEY}_vs_crop_score": 0.0, f"{KEY}_spread": 1.0}
    clean = [[1, 0], [0.6, 0.8], [0, 2]]  # unnormalised rows are normalised first
    colour = [[0.8, 0.6], [0.6, 0.8], [0, 1]]
    crop = [[0, 1], [0.6, 0.8], [0, 1]]
    spread = 1 - (0.6 + 0 + 0.8) / 3  # mean of 1 - cos over the 3 pairs
    out = scores(clean, colour, crop)
    assert out[f"{KEY}_spread"] == pytest.approx(spread, rel=1e-12)
    assert out[f"{KEY}_score"] == pytest.approx(100 * (0.2 / 3) / spread, rel=1e-12)
    assert out[f"{KEY}_crop_score"] == pytest.approx(100 * (1 / 3) / spread, rel=1e-12)
    assert out[f"{KEY}_vs_crop_score"] == pytest.approx(100 * 0.2, rel=1e-12)


def test_constant_features_give_nan_not_a_division_error():
    out = scores([[1, 0], [1, 0]], [[1, 0], [1, 0]], [[1, 0], [1, 0]])
    assert all(math.isnan(out[k]) for k in (f"{KEY}_score", f"{KEY}_crop_score", f"{KEY}_vs_crop_score")) and out[f"{KEY}_spread"] == 0.0


def test_mismatched_features_are_an_error():
    with pytest.raises(ValueError, match=r"three \(N, D\) feature tensors with N >= 2"):
        sensitivity_scores(torch.randn(3, 2), torch.randn(3, 2), torch.randn(4, 2))


# --- hand-made encoders ------------------------------------------------------------------------
class Luminance(nn.Module):
    """Ignores colour: the image's luminance map (torchvision's grayscale weights), standardised per
    image. Brightness, contrast and saturation changes map luminance affinely (no clipping on the
    images below), hue leaves grey pixels alone; the standardisation removes any affine map."""

    def forward(self, x):
        lum = (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).flatten(1)
        return (lum - lum.mean(1, keepdim=True)) / lum.std(1, keepdim=True)


class MeanColour(nn.Module):
    """Sees nothing but colour: the mean of each channel, centred (blind to where things are)."""

    def forward(self, x):
        return x.mean(dim=(2, 3)) - 0.45


def images(grey, n=40, size=12):
    """Smooth random patterns with pixels in [0.4, 0.55] (so jitter of 0.2 never clips); grey:
    R = G = B."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(n, 1 if grey else 3, 3, 3, generator=g)
    pattern = nn.functional.interpolate(base, size=size, mode="bilinear", align_corners=False)
    pixels = (0.4 + 0.15 * pattern).expand(n, 3, size, size)
    return TensorImages(pixels.mul(255).round().to(torch.uint8), torch.zeros(n, dtype=torch.long), num_classes=1)


def evaluate(encoder, data, batch_size=16, **cfg):
    evaluator = ColourSensitivity(ColourSensitivityConfig(**{"brightness": 0.2, "contrast": 0.2, **cfg}))
    ctx = EvalContext(transform=PLAIN, device="cpu", batch_size=batch_size, augmentation=None)
    return evaluator(encoder, None, data, ctx)


def test_an_encoder_that_ignores_colour_scores_zero():
    for data, cfg in ((images(grey=True), {}), (images(grey=False), {"hue": 0.0})):
        out = evaluate(Luminance(), data, **cfg)
        assert out[f"{KEY}_score"] < 1e-3 and out[f"{KEY}_vs_crop_score"] < 1e-3, (cfg, out)
        assert out[f"{KEY}_crop_score"] > 5, out  # it does see crops: the score is not trivially 0


def test_an_encoder_that_sees_only_colour_moves_more_under_colour_than_under_crops():
    out = evaluate(MeanColour(), images(grey=False))
    assert out[f"{KEY}_score"] > 20 and out[f"{KEY}_vs_crop_score"] > 100, out
    lum = evaluate(Luminance(), images(grey=False))  # with hue on, coloured images: small but not 0
    assert 0 < lum[f"{KEY}_score"] < out[f"{KEY}_score"]


def test_numbers_do_not_depend_on_the_batch_size_and_leave_the_global_rng_alone():
    data = images(grey=False)
    state = torch.get_rng_state()
    a = evaluate(MeanColour(), data, batch_size=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = evaluate(MeanColour(), data, batch_size=40)
    assert a == pytest.approx(b, rel=1e-6)
    c = evaluate(MeanColour(), data, seed=1)
    assert c[f"{KEY}_score"] != pytest.approx(a[f"{KEY}_score"], rel=1e-3)  # another seed, other draws


def test_the_encoder_is_measured_in_eval_mode_and_left_as_it_was():
    encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten())
    before = encoder[1].running_mean.clone()
    out = measure_sensitivity(encoder.train(), images(grey=False, n=8), PLAIN, images=8)
    assert encoder.training and torch.equal(encoder[1].running_mean, before)  # no statistics moved
    assert set(out) == {f"{KEY}_score", f"{KEY}_crop_score", f"{KEY}_vs_crop_score", f"{KEY}_spread"}


def test_protocol_names_the_changes_and_the_primary_key():
    evaluator = ColourSensitivity(ColourSensitivityConfig())
    assert evaluator.kind == "model" and evaluator.primary == f"{KEY}_vs_crop_score"
    assert "ColorJitter(0.4, 0.4, 0.4, 0.1)" in evaluator.protocol and "scale 0.08-1" in evaluator.protocol


# --- from a recipe, with a built-in method -----------------------------------------------------------
def test_runs_from_a_recipe_with_any_method(tmp_path):
    recipe = tmp_path / "simclr_tiny.toml"
    recipe.write_text('[method]\nname = "simclr"\nproj_hidden_dim = 16\nproj_output_dim = 8\n'
                      '[backbone]\nname = "convnet"\nchannels = [8]\n'
                      '[data]\nname = "fake"\nbatch_size = 16\nnum_samples = 32\n'
                      '[optim]\nname = "sgd"\nlr = 0.1\nlr_scaling = "none"\n'
                      '[eval]\nevaluators = ["colour_sensitivity"]\nplots = false\n'
                      '[eval.colour_sensitivity]\nimages = 12\n')
    results = train(load_recipe(str(recipe), [f"train.output_dir={tmp_path / 'run'}", "train.progress=false",
                                              "train.max_steps=1", "train.export=false"]))
    trained = results["results"]["trained"]
    assert trained[f"{KEY}_spread"] > 0 and all(math.isfinite(trained[k]) for k in trained)
    assert results["protocols"]["colour_sensitivity"].startswith("colour vs crop sensitivity")
    assert "colour_sensitivity" in results["table"].splitlines()[0] or "colour vs crop" in results["table"]

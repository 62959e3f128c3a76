"""Bad input through the command line: one line 'error: ...', exit code 2, never a traceback."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ssl_kit.cli import main

BASE = """
[method]
name = "simclr"
proj_hidden_dim = 16
proj_output_dim = 8
[backbone]
name = "convnet"
[data]
name = "fake"
batch_size = 8
[optim]
lr = 0.1
lr_scaling = "none"
[train]
epochs = 1
progress = false
[eval]
enabled = false
"""


def images(folder: Path, n: int = 6) -> None:
    for label in ("a", "b"):
        (folder / "train" / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(folder / "train" / label / f"{i}.png")


def run_cli(capsys, args):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    return code, err, lines


CASES = {
    "recipe file missing": (lambda t: [t / "nope.toml"], "recipe file"),
    "unknown recipe name": (lambda t: ["quickstrat"], "Did you mean 'quickstart'"),
    "recipe is not UTF-8": (lambda t: (t / "r.toml").write_bytes(b"\xff\xfe[method]") and [t / "r.toml"], "not a UTF-8"),
    "unknown backbone": (lambda t: [t / "r.toml", "backbone.name=resnet19"], "Did you mean 'resnet18'"),
    "negative workers": (lambda t: [t / "r.toml", "data.num_workers=-1"], "'num_workers' must be >= 0"),
    "batch larger than data": (lambda t: [t / "r.toml", "data.batch_size=128"], "larger than the training split"),
    "accumulation too large": (lambda t: [t / "r.toml", "train.grad_accumulation=9"], "grad_accumulation 9"),
    "resume path is not a checkpoint": (lambda t: [t / "r.toml", f"train.resume={t}"], "not a checkpoint directory"),
    "image folder missing": (lambda t: [t / "r.toml", "data.name=image_folder", f"data.root={t / 'none'}"], "is not a folder"),
    "image folder empty": (lambda t: (t / "empty").mkdir() or [t / "r.toml", "data.name=image_folder", f"data.root={t / 'empty'}"], "no images"),
    "corrupt image in a worker": (
        lambda t: images(t / "img") or (t / "img" / "train" / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
        and [t / "r.toml", "data.name=image_folder", f"data.root={t / 'img'}", "data.batch_size=13", "data.num_workers=1"],
        "bad.png",
    ),
    "truncated image": (
        lambda t: images(t / "img") or (t / "img" / "train" / "a" / "0.png").write_bytes(
            (t / "img" / "train" / "a" / "1.png").read_bytes()[:40])
        and [t / "r.toml", "data.name=image_folder", f"data.root={t / 'img'}", "data.batch_size=12"],
        "0.png",
    ),
    "evaluation without a test split": (
        lambda t: images(t / "img") or [t / "r.toml", "data.name=image_folder", f"data.root={t / 'img'}", "eval.enabled=true"],
        "no test split",
    ),
    "unknown timm model": (lambda t: [t / "r.toml", "backbone.name=timm", "backbone.model=resnet_nope"], "unknown timm model"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line(tmp_path, capsys, case):
    (tmp_path / "r.toml").write_text(BASE)
    make_args, expected = CASES[case]
    args = make_args(tmp_path)
    code, err, lines = run_cli(capsys, [*args, f"train.output_dir={tmp_path / 'run'}"] if "r.toml" in str(args[0]) else args)
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and expected in lines[0], err


def checkpointed_run(tmp_path, capsys):
    (tmp_path / "r.toml").write_text(BASE)
    assert main([str(tmp_path / "r.toml"), f"train.output_dir={tmp_path / 'run'}"]) == 0
    capsys.readouterr()
    return tmp_path / "run" / "checkpoints" / "step_8"


def test_existing_checkpoints_with_resume_never(tmp_path, capsys):
    checkpointed_run(tmp_path, capsys)
    code, err, lines = run_cli(capsys, [tmp_path / "r.toml", f"train.output_dir={tmp_path / 'run'}", "train.resume=never"])
    assert code == 2 and "already has checkpoints" in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("override,expected", [
    ("data.name=digits", "[data] name was 'fake', the recipe says 'digits'"),
    ("method.temperature=0.9", "[method] temperature was"),
    ("data.batch_size=4", "[data] batch_size was 8"),
])
def test_resuming_the_checkpoints_of_another_run_is_refused(tmp_path, capsys, override, expected):
    checkpointed_run(tmp_path, capsys)
    code, err, lines = run_cli(capsys, [tmp_path / "r.toml", f"train.output_dir={tmp_path / 'run'}", override])
    assert code == 2 and "holds checkpoints of another run" in lines[0] and expected in lines[0], err
    assert "Traceback" not in err
    # what a checkpoint does not depend on may change: train longer, evaluate differently
    assert main([str(tmp_path / "r.toml"), f"train.output_dir={tmp_path / 'run'}", "train.epochs=5",
                 "eval.enabled=false"]) == 0


@pytest.mark.parametrize("damage,expected", [
    ("format", "format_version 7"),
    ("truncate", "cannot be loaded"),
    ("state", "cannot read state.json"),
    ("optimizer", "cannot be loaded"),
])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, capsys, damage, expected):
    step = checkpointed_run(tmp_path, capsys)
    if damage == "format":
        (step / "state.json").write_text(json.dumps({"step": 8, "format_version": 7}))
    elif damage == "truncate":
        data = (step / "model.safetensors").read_bytes()
        (step / "model.safetensors").write_bytes(data[:100])
    elif damage == "state":
        (step / "state.json").write_text("{not json")
    else:
        (step / "optimizer.pt").write_bytes(b"garbage")
    for older in step.parent.glob("step_*"):
        if older != step:
            shutil.rmtree(older)
    code, err, lines = run_cli(capsys, [tmp_path / "r.toml", f"train.output_dir={tmp_path / 'run'}", "train.epochs=2"])
    assert code == 2 and len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err

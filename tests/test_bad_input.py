"""Bad input through the command line: one line 'error: ...', exit code 2, never a traceback."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ssl_kit.cli import main

TINY = Path(__file__).parent / "tiny.toml"
FOLDER = '[data]\nname = "image_folder"\nbatch_size = 8\n'  # [data] of a child recipe: another dataset


def tiny_args(t, *overrides):
    """The command line of tiny.toml on 64 images (checkpoints at step 8) with ``overrides``."""
    return [str(TINY), "data.num_samples=64", *overrides, f"train.output_dir={t / 'run'}"]


def child_args(t, tables, *overrides):
    """The command line of a child of tiny.toml with its own component ``tables``: they replace
    tiny.toml's ([data] name = "fake", [backbone] name = "convnet"), where an override of the name
    would keep the other component's keys (num_samples, channels)."""
    (t / "child.toml").write_text(f'extends = "{TINY}"\n{tables}')
    return [str(t / "child.toml"), *overrides, f"train.output_dir={t / 'run'}"]


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
    "unknown backbone": (lambda t: tiny_args(t, "backbone.name=resnet19"), "Did you mean 'resnet18'"),
    "negative workers": (lambda t: tiny_args(t, "data.num_workers=-1"), "'num_workers' must be >= 0"),
    "batch larger than data": (lambda t: tiny_args(t, "data.batch_size=128"), "larger than the training split"),
    "accumulation too large": (lambda t: tiny_args(t, "train.grad_accumulation=9"), "grad_accumulation 9"),
    "resume path is not a checkpoint": (lambda t: tiny_args(t, f"train.resume={t}"), "not a checkpoint directory"),
    "image folder missing": (lambda t: child_args(t, FOLDER, f"data.root={t / 'none'}"), "is not a folder"),
    "image folder empty": (
        lambda t: (t / "empty").mkdir() or child_args(t, FOLDER, f"data.root={t / 'empty'}"), "no images"),
    "corrupt image in a worker": (
        lambda t: images(t / "img") or (t / "img" / "train" / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
        and child_args(t, FOLDER, f"data.root={t / 'img'}", "data.batch_size=13", "data.num_workers=1"),
        "bad.png",
    ),
    "truncated image": (
        lambda t: images(t / "img") or (t / "img" / "train" / "a" / "0.png").write_bytes(
            (t / "img" / "train" / "a" / "1.png").read_bytes()[:40])
        and child_args(t, FOLDER, f"data.root={t / 'img'}", "data.batch_size=12"),
        "0.png",
    ),
    "evaluation without a test split": (
        lambda t: images(t / "img") or child_args(t, FOLDER, f"data.root={t / 'img'}", "eval.enabled=true"),
        "no test split",
    ),
    "unknown timm model": (lambda t: child_args(t, '[backbone]\nname = "timm"\n', "backbone.model=resnet_nope"),
                           "unknown timm model"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line(tmp_path, capsys, case):
    make_args, expected = CASES[case]
    code, err, lines = run_cli(capsys, make_args(tmp_path))
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and expected in lines[0], err


def checkpointed_run(tmp_path, capsys):
    assert main(tiny_args(tmp_path)) == 0
    capsys.readouterr()
    return tmp_path / "run" / "checkpoints" / "step_8"


def test_existing_checkpoints_with_resume_never(tmp_path, capsys):
    checkpointed_run(tmp_path, capsys)
    code, err, lines = run_cli(capsys, tiny_args(tmp_path, "train.resume=never"))
    assert code == 2 and "already has checkpoints" in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("change,expected", [
    ('[data]\nname = "digits"\nbatch_size = 8\n', "[data] name was 'fake', the recipe says 'digits'"),
    ("method.temperature=0.9", "[method] temperature was"),
    ("data.batch_size=4", "[data] batch_size was 8"),
])
def test_resuming_the_checkpoints_of_another_run_is_refused(tmp_path, capsys, change, expected):
    """``change``: an override, or the tables of a child recipe (another dataset)."""
    checkpointed_run(tmp_path, capsys)
    args = child_args(tmp_path, change) if change.startswith("[") else tiny_args(tmp_path, change)
    code, err, lines = run_cli(capsys, args)
    assert code == 2 and "holds checkpoints of another run" in lines[0] and expected in lines[0], err
    assert "Traceback" not in err
    # what a checkpoint does not depend on may change: train longer, evaluate differently
    assert main(tiny_args(tmp_path, "train.epochs=5", "eval.enabled=false")) == 0


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
    code, err, lines = run_cli(capsys, tiny_args(tmp_path, "train.epochs=2"))
    assert code == 2 and len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err

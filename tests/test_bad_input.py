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
    "k-NN k larger than the evaluation's train split": (
        lambda t: tiny_args(t, "eval.enabled=true", "eval.evaluators=['knn']", "eval.knn.k=[20,100]"),
        "k 100 is larger than the 64 images"),
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
    "NaN learning rate": (lambda t: tiny_args(t, "optim.lr=nan"), "key 'lr' must be a finite number"),
    "infinite float": (lambda t: tiny_args(t, "optim.weight_decay=inf"), "key 'weight_decay' must be a finite number"),
    "NaN inside a list": (lambda t: tiny_args(t, "views.global_scale=[0.2, nan]"), "'global_scale' must be a finite"),
    "misspelt output_dir placeholder": (
        lambda t: [TINY, "data.num_samples=64", f"train.output_dir={t}/{{nme}}"], "placeholder '{nme}'"),
    "lone brace in output_dir": (
        lambda t: [TINY, "data.num_samples=64", f"train.output_dir={t}/run{{"], "not a valid path template"),
    "channel count the docs forbid": (lambda t: tiny_args(t, "data.channels=2"), "'channels' must be 1 | 3"),
    "std of zero": (lambda t: images(t / "img") or child_args(t, FOLDER, f"data.root={t / 'img'}",
                                                               "data.std=[0.2, 0.0, 0.2]"), "key 'std' must be > 0"),
    "mean of the wrong length": (lambda t: images(t / "img") or child_args(t, FOLDER, f"data.root={t / 'img'}",
                                                                           "data.mean=[0.5, 0.5]"), "key 'mean' must be"),
    "output_dir is a file": (lambda t: (t / "f").write_text("x") and [TINY, f"train.output_dir={t / 'f'}"], "is a file"),
    "output_dir below a file": (
        lambda t: (t / "f").write_text("x") and [TINY, f"train.output_dir={t / 'f' / 'run'}"], "is a file"),
    "image folder with a symlink loop": (
        lambda t: images(t / "img") or (t / "img" / "train" / "a" / "up").symlink_to(t / "img")
        or child_args(t, FOLDER, f"data.root={t / 'img'}"), "again, through a symbolic link"),
    "override switches the method but keeps its keys": (
        lambda t: tiny_args(t, "backbone.name=resnet18"), "switched [backbone] to another component"),
    "backbone channels differ from the data's": (lambda t: tiny_args(t, "backbone.in_channels=1"),
                                                 "in_channels = 1, but the images of dataset 'fake' have 3"),
    "view too small for the augmentations": (lambda t: tiny_args(t, "views.local_views=2", "views.local_size=1"),
                                             "key 'local_size' must be >= 4"),
    "seed beyond 32 bits": (lambda t: tiny_args(t, "train.seed=99999999999999999999"), "key 'seed' must be <="),
    "cosine ending above its peak": (lambda t: tiny_args(t, "optim.min_lr=1.0"), "min_lr 1 is above the peak"),
    "unknown timm model": (lambda t: child_args(t, '[backbone]\nname = "timm"\n', "backbone.model=resnet_nope"),
                           "unknown timm model"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line(tmp_path, capsys, case):
    make_args, expected = CASES[case]
    code, err, lines = run_cli(capsys, make_args(tmp_path))
    assert code == 2, err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before the first step
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
    ("optim.lr=0.5", "[optim] lr was"),  # a resumed schedule would keep the old lr: refused, never half-applied
    ("optim.name=adam", "[optim] name was"),
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
    ("keys", "state.json lacks the integer key(s) step, skipped_nonfinite"),
    ("rng", "lacks rng_rank0.pt"),
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
    elif damage == "keys":
        (step / "state.json").write_text(json.dumps({"format_version": 1}))
    elif damage == "rng":
        (step / "rng_rank0.pt").unlink()
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


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("change,expected", [
    (("optim.lr=0.07",), "[optim] lr was"),
    (("train.max_steps=4",), "past this recipe's last step 4"),
    (("eval.enabled=true",), "is a finished run (step 8 of 8) and the recipe changes [eval]"),
    (("train.log_every=3",), "the recipe changes [train]"),
    (("eval.features=projector.7",), "projector.7"),
    (("eval.enabled=true", "eval.test_split=validation"), "has no split 'validation'"),
])
def test_a_refused_command_leaves_a_finished_run_directory_unchanged(tmp_path, capsys, change, expected):
    checkpointed_run(tmp_path, capsys)
    before = snapshot(tmp_path / "run")
    code, err, lines = run_cli(capsys, tiny_args(tmp_path, *change))
    assert code == 2 and len(lines) == 1 and expected in lines[0] and "Traceback" not in err, err
    assert snapshot(tmp_path / "run") == before  # recipe.toml, config.json, the model card: as they were


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run directory of tiny.toml (64 images, 8 steps), made once per test process."""
    folder = tmp_path_factory.mktemp("finished")
    assert main(tiny_args(folder)) == 0
    return folder / "run"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_leaves_an_existing_run_directory_unchanged(tmp_path, capsys, finished_run, case):
    """Every kind of the battery, run into a finished run directory: refused with one line (the
    case's own message, or the refusal of a changed recipe that comes first), byte for byte the
    same directory afterwards."""
    shutil.copytree(finished_run, tmp_path / "run", symlinks=True)
    before = snapshot(tmp_path / "run")
    code, err, lines = run_cli(capsys, CASES[case][0](tmp_path))
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert snapshot(tmp_path / "run") == before


def test_an_output_dir_on_a_read_only_file_system_is_one_line(tmp_path, capsys, monkeypatch):
    """The tests run as root, which writes anywhere: the file system's answer (EROFS) is simulated
    at the write probe of ssl_kit.io.make_folder."""
    import errno

    write_bytes = Path.write_bytes

    def read_only(self, data):
        if self.name.startswith(".write-test-"):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", read_only)
    code, err, lines = run_cli(capsys, tiny_args(tmp_path))
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "train.output_dir" in lines[0] and "Read-only file system" in lines[0], err


def test_a_run_directory_in_use_is_refused_and_free_again_when_its_holder_dies(tmp_path, capsys):
    import subprocess
    import sys
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from ssl_kit.io import lock_run_dir; "
        f"h = lock_run_dir(Path({str(run_dir)!r})); print('locked', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, err, lines = run_cli(capsys, tiny_args(tmp_path))
        assert code == 2 and len(lines) == 1 and f"is in use by process {holder.pid}" in lines[0], err
        assert not (run_dir / "recipe.toml").exists() and not (run_dir / "checkpoints").exists()
    finally:
        holder.kill()  # SIGKILL: the lock dies with its process
        holder.wait()
    assert main(tiny_args(tmp_path)) == 0


@pytest.mark.parametrize("where", ["file", "below a file"])
def test_export_onto_a_file_is_a_clear_error(tmp_path, capsys, where):
    checkpointed_run(tmp_path, capsys)
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "export"
    code, err, lines = run_cli(capsys, ["export", tmp_path / "run", "--out", out])
    assert code == 2 and len(lines) == 1 and "--out" in lines[0] and "is a file" in lines[0] and "Traceback" not in err
    assert (tmp_path / "f").read_text() == "x"


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_keeps_the_older_checkpoints(tmp_path, capsys,
                                                                                          monkeypatch):
    import errno

    from ssl_kit import checkpoint
    saves = []

    def full_disk(tensors, path, metadata):
        saves.append(path)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(tensors, path, metadata=metadata)

    real = checkpoint.save_tensors
    monkeypatch.setattr(checkpoint, "save_tensors", full_disk)
    code, err, lines = run_cli(capsys, tiny_args(tmp_path, "train.checkpoint_every=2"))
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "cannot write checkpoint step 4" in lines[0] and "No space left on device" in lines[0]
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == ["step_2"]  # the earlier checkpoint is intact, no temporary folder left behind

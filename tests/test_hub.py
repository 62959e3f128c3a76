"""Export, load and share (ssl_kit.hub): model cards whose code runs, loading with and without
ssl_kit (torchvision, timm), the whole method, pushing through huggingface_hub's real client with
only its HTTP transport faked, and refusing unsafe or damaged weight files. Nothing contacts the Hub."""

import base64
import json
import os
import pickle
import shutil
import tomllib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import ssl_kit
from ssl_kit import commands, hub, loading, train
from ssl_kit import export as export_mod
from ssl_kit.errors import CheckpointError, UserError
from ssl_kit.recipe import load_recipe

TINY = Path(__file__).parent / "tiny.toml"
# tiny.toml's differences: 2 steps of 16 images, then k-NN evaluation without baselines or plots
COMMON = ("data.batch_size=16", "train.max_steps=2", "eval.enabled=true", "eval.evaluators=['knn']",
          "eval.baselines=[]", "eval.plots=false")
BACKBONES = {  # the [backbone] table of a child recipe of tiny.toml ("": tiny.toml's convnet) and the image size
    "convnet": ("", 16),
    "resnet_cifar": ('[backbone]\nname = "resnet18"\ncifar_stem = true\nstem_padding = 2\n', 16),
    "resnet": ('[backbone]\nname = "resnet18"\n', 16),
    "timm": ('[backbone]\nname = "timm"\nmodel = "resnet10t"\n', 32),
}
REPO = "user/ssl-model"
TOKEN = "hf_testTOKENdoNotLeak0123456789"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Train each backbone for 2 steps (once per module); training ends with the export, its model
    card, timm's keys and (``[hub] full_method``) method.safetensors."""
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            root = tmp_path_factory.mktemp(kind)
            backbone, size = BACKBONES[kind]
            (root / "r.toml").write_text(f'extends = "{TINY}"\n{backbone}')
            recipe = load_recipe(str(root / "r.toml"), [f"train.output_dir={root / 'run'}", *COMMON,
                                                        f"data.image_size={size}", "hub.full_method=true"])
            train(recipe)
            cache[kind] = root / "run"
        return cache[kind]

    return get


@pytest.fixture(autouse=True)
def hub_env(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


def fake_hub(monkeypatch, folder: Path, tmp_path: Path, calls: list | None = None) -> None:
    """Serve ``folder`` as the Hub repo REPO: huggingface_hub's and timm's download functions."""
    import huggingface_hub
    import timm.models._hub as timm_hub

    calls = calls if calls is not None else []

    def hf_hub_download(repo_id, filename, revision=None, **kwargs):
        assert repo_id == REPO, repo_id
        calls.append(("file", filename, revision))
        if not (folder / filename).exists():
            from huggingface_hub.errors import EntryNotFoundError

            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(folder / filename)

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        assert repo_id == REPO, repo_id
        calls.append(("snapshot", tuple(allow_patterns or ()), revision))
        snap = tmp_path / f"snapshot-{len(calls)}"
        snap.mkdir()
        for name in allow_patterns:
            if (folder / name).exists():
                shutil.copy(folder / name, snap / name)
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(timm_hub, "hf_hub_download", hf_hub_download)


def run_blocks(card: str) -> list[dict]:
    blocks = export_mod.code_blocks(card)
    assert blocks, "the card has no python code"
    spaces = []
    for code in blocks:
        namespace: dict = {"__name__": "card_snippet"}
        exec(compile(code, "README.md", "exec"), namespace)  # exactly the card's text
        spaces.append(namespace)
    return spaces


def features(model, size: int) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.rand(3, 3, size, size)
    with torch.no_grad():
        return model.eval()(x)


# --- model card --------------------------------------------------------------------------------
def test_model_card_front_matter_results_recipe_and_data(runs):
    from huggingface_hub import ModelCard

    run = runs("convnet")
    card_text = (run / "export" / "README.md").read_text()
    card = ModelCard(card_text, ignore_metadata_errors=False)
    assert card.data.library_name == "ssl_kit" and card.data.license == "mit"
    assert card.data.tags[:3] == ["ssl_kit", "self-supervised", "simclr"]
    results = json.loads((run / "results.json").read_text())
    # every number of results.json is in the card, with its protocol
    rows = [line for line in card_text.splitlines() if line.startswith("| trained |")]
    assert len(rows) == len(results["results"]["trained"]) >= 2  # k-NN and the online probe
    for key, value in results["results"]["trained"].items():
        evaluator = next(name for name in results["protocols"] if key.startswith(name))
        assert f"| trained | `{key}` | {value:.2f} | {results['protocols'][evaluator]} |" in rows
    assert results["data"]["train"] in card_text and results["data"]["test"] in card_text
    assert "2 optimizer steps" in card_text and "Method:** simclr" in card_text
    # the recipe block is the run's resolved recipe
    toml_block = card_text.split("```toml\n", 1)[1].split("```", 1)[0]
    assert tomllib.loads(toml_block) == tomllib.loads((run / "recipe.toml").read_text())


def test_card_snippet_runs_from_the_export_folder_and_matches_the_encoder(runs):
    export = runs("convnet") / "export"
    (space,) = run_blocks((export / "README.md").read_text())
    encoder = space["encoder"]
    assert space["features"].shape == (2, 16)
    reference = hub.from_pretrained(export)
    assert torch.equal(features(encoder, 16), features(reference, 16))


# --- loading -----------------------------------------------------------------------------------
def test_from_pretrained_is_strict_and_attaches_push(runs):
    export = runs("convnet") / "export"
    encoder = hub.from_pretrained(export)
    assert not encoder.training and callable(encoder.push_to_hub)
    state = load_file(str(export / "model.safetensors"))
    assert all(torch.equal(state[k], v) for k, v in encoder.state_dict().items())
    save_file({**state, "extra.weight": torch.zeros(1)}, str(export.parent / "bad.safetensors"))
    bad = export.parent / "bad_export"
    bad.mkdir(exist_ok=True)
    shutil.copy(export / "config.json", bad / "config.json")
    shutil.copy(export.parent / "bad.safetensors", bad / "model.safetensors")
    config = json.loads((bad / "config.json").read_text())
    config.pop("sha256")
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="Unexpected key.*extra.weight"):
        hub.from_pretrained(bad)


def test_from_pretrained_repo_id_downloads_three_files(runs, monkeypatch, tmp_path):
    export = runs("convnet") / "export"
    calls: list = []
    fake_hub(monkeypatch, export, tmp_path, calls)
    encoder = hub.from_pretrained(REPO, revision="v1")
    assert calls == [("snapshot", ("config.json", "model.safetensors", "README.md"), "v1")]
    assert torch.equal(features(encoder, 16), features(hub.from_pretrained(export), 16))
    with pytest.raises(CheckpointError, match="neither an export folder nor a Hub repo id"):
        hub.from_pretrained(tmp_path / "missing" / "deeper" / "x")


def test_load_method_loads_the_whole_method_strictly(runs, tmp_path):
    run = runs("convnet")
    method = hub.load_method(run / "export")
    checkpoint = load_file(str(run / "checkpoints" / "step_2" / "model.safetensors"))
    newest = {k: v for k, v in checkpoint.items() if not k.startswith("online_probe.")}  # the probe is not the method's
    assert set(method.state_dict()) == set(newest)
    assert any(k.startswith("projector.") for k in newest)
    assert all(torch.equal(newest[k], v) for k, v in method.state_dict().items())
    only_encoder = tmp_path / "only_encoder"
    only_encoder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(run / "export" / name, only_encoder / name)
    with pytest.raises(CheckpointError, match="only the encoder"):
        hub.load_method(only_encoder)


def test_cmd_export_rebuilds_the_evaluated_encoder_from_the_newest_checkpoint(runs, tmp_path, capsys):
    run = runs("convnet")
    out = commands.export(run, tmp_path / "again")
    assert "exported step_2" in capsys.readouterr().out
    trained = load_file(str(run / "export" / "model.safetensors"))
    again = load_file(str(out / "model.safetensors"))
    assert trained.keys() == again.keys() and all(torch.equal(trained[k], again[k]) for k in trained)
    assert (out / "README.md").exists()
    assert (out / "method.safetensors").exists()  # the run's recipe says [hub] full_method = true
    assert set(json.loads((out / "config.json").read_text())["sha256"]) == {"model.safetensors", "method.safetensors"}
    with pytest.raises(UserError, match="not a run directory"):
        commands.export(tmp_path)


# --- without ssl_kit ---------------------------------------------------------------------------
def test_torchvision_resnet18_loads_the_export_strictly_with_fc_identity(runs):
    import torchvision

    export = runs("resnet") / "export"
    state = load_file(str(export / "model.safetensors"))
    model = torchvision.models.resnet18()
    with pytest.raises(RuntimeError, match="fc.weight"):  # why the card sets fc = Identity
        model.load_state_dict(state, strict=True)
    model.fc = torch.nn.Identity()
    model.load_state_dict(state, strict=True)
    assert torch.allclose(features(model, 16), features(hub.from_pretrained(export), 16), atol=1e-6)
    # and the card's own torchvision snippet is exactly this
    spaces = run_blocks((export / "README.md").read_text())
    tv = next(s for s in spaces if "torchvision" in s)
    assert torch.allclose(features(tv["model"], 16), features(model, 16), atol=1e-6)


def test_cifar_stem_card_lines_run_and_match(runs, monkeypatch, tmp_path):
    export = runs("resnet_cifar") / "export"
    card = (export / "README.md").read_text()
    assert "padding=2" in card and "model.maxpool = torch.nn.Identity()" in card
    reference = features(hub.from_pretrained(export), 16)
    spaces = run_blocks(card)
    tv = next(s for s in spaces if "torchvision" in s)
    assert torch.allclose(features(tv["model"], 16), reference, atol=1e-6)
    # the card as uploaded (MODEL = repo id) runs too, downloading from the (faked) Hub
    fake_hub(monkeypatch, export, tmp_path)
    uploaded = export_mod.card_for_repo(export, REPO).decode()
    assert f'MODEL = "{REPO}"' in uploaded and str(export.resolve()) not in uploaded.split("## Recipe")[0]
    for space in run_blocks(uploaded):
        model = space.get("model", space.get("encoder"))
        assert torch.allclose(features(model, 16), reference, atol=1e-6)


def test_timm_loads_the_export_from_the_hub_and_a_local_folder(runs, monkeypatch, tmp_path):
    import timm

    export = runs("timm") / "export"
    config = json.loads((export / "config.json").read_text())
    assert config["architecture"] == "resnet10t" and config["num_classes"] == 0
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert config["pretrained_cfg"]["mean"] == config["inputs"]["mean"]
    assert "license" not in config["pretrained_cfg"]  # timm's own ImageNet weights' metadata is dropped
    reference = features(hub.from_pretrained(export), 32)
    fake_hub(monkeypatch, export, tmp_path)
    from_hub = timm.create_model(f"hf-hub:{REPO}", pretrained=True, num_classes=0)
    assert torch.allclose(features(from_hub, 32), reference, atol=1e-6)
    local = timm.create_model(f"local-dir:{export}", pretrained=True, num_classes=0)
    assert torch.allclose(features(local, 32), reference, atol=1e-6)
    for space in run_blocks((export / "README.md").read_text()):  # ssl_kit and timm snippets
        model = space.get("model", space.get("encoder"))
        assert torch.allclose(features(model, 32), reference, atol=1e-6)


# --- sharing -----------------------------------------------------------------------------------
class FakeHubServer:
    """The Hub's HTTP API, as much as create_repo + create_commit use; records every request."""

    def __init__(self):
        self.requests = []
        self.committed: dict[str, bytes] = {}

    def __call__(self, request):
        import httpx2

        self.requests.append(request)
        path = request.url.path
        if path == "/api/repos/create":
            return httpx2.Response(200, json={"url": f"https://huggingface.co/{REPO}"})
        if path == "/api/validate-yaml":
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if path.startswith(f"/api/models/{REPO}/preupload/"):
            files = json.loads(request.content)["files"]
            return httpx2.Response(200, json={"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        if path.startswith(f"/api/models/{REPO}/commit/"):
            for line in request.content.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.committed[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return httpx2.Response(200, json={
                "commitUrl": f"https://huggingface.co/{REPO}/commit/abc123", "commitOid": "abc123",
                "pullRequestUrl": f"https://huggingface.co/{REPO}/discussions/1"})
        return httpx2.Response(404, json={"error": "not faked"})

    def posts(self):
        return [(r.url.path, dict(r.url.params)) for r in self.requests if r.method == "POST"]


@pytest.fixture
def hub_server(monkeypatch):
    import httpx2
    import huggingface_hub
    from huggingface_hub.utils import _http

    server = FakeHubServer()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(server)))
    yield server
    huggingface_hub.set_client_factory(_http.default_client_factory)


def test_push_to_hub_uploads_the_export_through_the_real_client(runs, hub_server, capsys):
    run = runs("resnet_cifar")
    url = commands.push(run, REPO, private=True, create_pr=True)
    assert url == f"https://huggingface.co/{REPO}/discussions/1"
    posts = hub_server.posts()
    create = next(r for r in hub_server.requests if r.url.path == "/api/repos/create")
    assert json.loads(create.content) == {"name": "ssl-model", "organization": "user", "visibility": "private",
                                          "type": "model"}
    assert (f"/api/models/{REPO}/commit/main", {"create_pr": "1"}) in posts
    assert set(hub_server.committed) == {"model.safetensors", "config.json", "README.md", "method.safetensors"}
    export = run / "export"
    for name in ("model.safetensors", "config.json", "method.safetensors"):
        assert hub_server.committed[name] == (export / name).read_bytes()
    assert f'MODEL = "{REPO}"' in hub_server.committed["README.md"].decode()
    # the token authenticates every request and goes nowhere else
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub_server.requests
               if r.method == "POST")
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    for path in run.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert all(TOKEN.encode() not in data for data in hub_server.committed.values())


def test_module_push_to_hub_uploads_its_current_weights(runs, hub_server):
    export = runs("convnet") / "export"
    encoder = hub.from_pretrained(export)
    with torch.no_grad():
        next(encoder.parameters()).add_(1.0)  # e.g. fine-tuned after loading
    encoder.push_to_hub(REPO)
    create = next(r for r in hub_server.requests if r.url.path == "/api/repos/create")
    assert json.loads(create.content).get("visibility") in (None, "public")
    assert ("/api/models/%s/commit/main" % REPO, {}) in hub_server.posts()
    assert set(hub_server.committed) == {"model.safetensors", "config.json", "README.md"}
    pushed = hub_server.committed["model.safetensors"]
    from safetensors.torch import load as load_bytes

    state = load_bytes(pushed)
    assert all(torch.equal(state[k], v) for k, v in encoder.state_dict().items())
    import hashlib

    recorded = json.loads(hub_server.committed["config.json"])["sha256"]
    assert recorded == {"model.safetensors": hashlib.sha256(pushed).hexdigest()}  # the new weights', not the export's


def test_push_errors_are_one_line(runs, tmp_path, hub_server):
    with pytest.raises(UserError, match="not a run directory or export folder"):
        hub.push_to_hub(tmp_path, REPO)
    with pytest.raises(UserError, match="not of the form"):
        hub.push_to_hub(runs("convnet"), "no-slash")


# --- security ----------------------------------------------------------------------------------
class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/ssl_kit_pwned_by_test",))


def test_pickle_files_are_refused_unless_allowed_and_then_weights_only(tmp_path):
    plain = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, plain)
    for suffix in (".bin", ".pt", ".pth", ".ckpt"):
        path = tmp_path / f"copy{suffix}"
        shutil.copy(plain, path)
        with pytest.raises(CheckpointError, match="pickle-based.*allow_pickle=True"):
            loading.load_legacy_weights(path)
    assert torch.equal(loading.load_legacy_weights(plain, allow_pickle=True)["w"], torch.ones(2))
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"w": Evil()}, f, protocol=2)
    marker = Path("/tmp/ssl_kit_pwned_by_test")
    marker.unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="weights_only=True") as refused:
        loading.load_legacy_weights(evil, allow_pickle=True)
    assert not marker.exists()
    assert "posix.system" in str(refused.value) or "os.system" in str(refused.value)  # the reason: what it holds
    assert "weights_only=False" not in str(refused.value) and "weights_only` set to `False" not in str(refused.value)
    safe = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(3)}, str(safe))
    assert torch.equal(loading.load_legacy_weights(safe)["w"], torch.ones(3))


def test_truncated_or_tampered_safetensors_give_a_clear_error(runs, tmp_path):
    source = runs("convnet") / "export"

    def copy(name):
        folder = tmp_path / name
        shutil.copytree(source, folder)
        return folder

    truncated = copy("truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated or corrupted") as err:
        hub.from_pretrained(truncated)
    assert "\n" not in str(err.value)

    header = copy("bad_header")  # tampered header: a shape that no longer fits the data
    text = data.replace(b'"shape":[8,3,3,3]', b'"shape":[9,3,3,3]', 1)
    assert text != data
    (header / "model.safetensors").write_bytes(text)
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        hub.from_pretrained(header)

    flipped = copy("flipped")  # tampered tensor bytes: caught by the recorded sha256
    raw = bytearray(data)
    raw[-5] ^= 0xFF
    (flipped / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        hub.from_pretrained(flipped)

    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        loading.load_legacy_weights(truncated / "model.safetensors")


# --- wiring: training, public API, CLI ---------------------------------------------------------
def knn_on_export(run: Path, export: Path) -> dict:
    """The run's k-NN protocol on features of ``from_pretrained(export)``, extracted with the
    run's evaluation transform: what results.json reports for the trained encoder."""
    from ssl_kit.build import build, build_dataset
    from ssl_kit.data.presets import eval_transform
    from ssl_kit.eval.features import extract_features
    from ssl_kit.plugins import get_registry

    recipe = load_recipe(str(run / "recipe.toml"))
    encoder = ssl_kit.from_pretrained(export)
    parts = build(recipe, recipe.eval.train_split)
    train_set, test_set = parts.dataset, build_dataset(recipe, recipe.eval.test_split)
    transform = eval_transform(parts.info, parts.views)
    train_f, train_y = extract_features(encoder, train_set, transform, recipe.eval.batch_size)
    test_f, test_y = extract_features(encoder, test_set, transform, recipe.eval.batch_size)
    knn = get_registry().get("evaluators", "knn").factory(recipe.evaluators["knn"])
    return knn(train_f, train_y, test_f, test_y)


def test_knn_on_from_pretrained_features_reproduces_results_json_exactly(runs):
    run = runs("convnet")
    reported = json.loads((run / "results.json").read_text())["results"]["trained"]
    again = knn_on_export(run, run / "export")
    assert again and all(reported[k] == v for k, v in again.items()), (again, reported)


def test_export_of_backbone_plus_projector_layer_reproduces_its_knn_results(tiny, tmp_path):
    """eval.features = "projector.0": the export holds exactly the module the evaluators saw."""
    run = tmp_path / "run"
    train(tiny(*COMMON, "eval.features=projector.0", "eval.online_probe=false"))
    config = json.loads((run / "export" / "config.json").read_text())
    assert config["features"] == "projector.0" and config["backbone_only"] is False
    assert config["num_features"] == 32  # proj_hidden_dim: the first projector layer's output
    reported = json.loads((run / "results.json").read_text())["results"]["trained"]
    assert knn_on_export(run, run / "export") == reported
    card = (run / "export" / "README.md").read_text()
    assert "projector.0" in card and "torchvision" not in card
    (space,) = run_blocks(card)
    assert space["features"].shape == (2, 32)


def test_public_api_is_lazy_and_is_the_hub_api():
    import subprocess
    import sys

    code = ("import sys, ssl_kit; assert 'ssl_kit.hub' not in sys.modules and 'torch' not in sys.modules; "
            "from ssl_kit import hub; "
            "assert (ssl_kit.from_pretrained, ssl_kit.load_method, ssl_kit.push_to_hub) == "
            "(hub.from_pretrained, hub.load_method, hub.push_to_hub)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_hub_push_in_the_recipe_uploads_after_training(tiny, tmp_path, hub_server, capsys):
    run = tmp_path / "run"
    results = train(tiny(*COMMON, "hub.push=true", f"hub.repo_id='{REPO}'", "hub.private=true"))
    create = next(r for r in hub_server.requests if r.url.path == "/api/repos/create")
    assert json.loads(create.content)["visibility"] == "private"
    assert (f"/api/models/{REPO}/commit/main", {}) in hub_server.posts()
    assert set(hub_server.committed) == {"model.safetensors", "config.json", "README.md"}
    card = hub_server.committed["README.md"].decode()
    assert f"{results['results']['trained']['knn_cosine_k20_t0.07_top1']:.2f}" in card  # the final results
    assert f"pushed {run / 'export'} to {REPO}: https://huggingface.co/{REPO}/commit/abc123" in capsys.readouterr().out
    files = [p for p in run.rglob("*") if p.is_file()]
    assert files and not [p for p in files if TOKEN.encode() in p.read_bytes()]


def test_hub_push_without_a_token_fails_before_training(tiny, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    recipe = tiny(*COMMON, "hub.push=true", f"hub.repo_id='{REPO}'")
    with pytest.raises(UserError, match="no Hugging Face token was found"):
        train(recipe)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("hub_table, overrides, message", [
    ("push = true", [], r"\[hub\] key 'push' is true but 'repo_id' is not set"),
    ('repo_id = "no-slash"', [], r"\[hub\] key 'repo_id' must be of the form 'user/name'"),
    ('repo_id = "user/x"\ntypo = 1', [], r"\[hub\] unknown key 'typo'"),
    (f'push = true\nrepo_id = "{REPO}"', ["train.export=false"], r"\[hub\] push = true needs \[train\] export = true"),
])
def test_hub_table_errors_name_the_file_and_key(tmp_path, hub_table, overrides, message):
    from ssl_kit.errors import RecipeError

    (tmp_path / "r.toml").write_text(f'extends = "{TINY}"\n[hub]\n{hub_table}\n')  # a recipe file's [hub] table
    with pytest.raises(RecipeError, match=f"r.toml: {message}") as err:
        load_recipe(str(tmp_path / "r.toml"), overrides)
    assert "\n" not in str(err.value)


def test_cli_export_and_push(runs, tmp_path, hub_server, capsys):
    from ssl_kit.cli import main

    run = runs("convnet")
    assert main(["export", str(run), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "README.md").exists()
    assert torch.equal(features(hub.from_pretrained(tmp_path / "out"), 16), features(hub.from_pretrained(run / "export"), 16))
    assert main(["push", str(tmp_path / "out"), "--repo-id", REPO, "--create-pr", "--revision", "dev"]) == 0
    assert (f"/api/models/{REPO}/commit/dev", {"create_pr": "1"}) in hub_server.posts()
    assert "discussions/1" in capsys.readouterr().out
    for argv, message in [
        (["export", str(tmp_path / "missing")], "does not exist"),
        (["export", str(tmp_path)], "is not a run directory (no recipe.toml)"),
        (["push", str(tmp_path / "missing"), "--repo-id", REPO], "does not exist"),
        (["push", str(tmp_path), "--repo-id", REPO], "is not a run directory or export folder"),
        (["push", str(run), "--repo-id", "no-slash"], "is not of the form 'user/name'"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err

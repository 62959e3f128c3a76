"""The code in the docs is the code that runs: every python and TOML block of README.md, docs/ and
the plugins' READMEs is run, validated, or matched against the tested source it shows; the few
that need the network (the Hugging Face Hub) are listed here with the reason."""

import re
from pathlib import Path

import pytest
import torch

from ssl_kit import train
from ssl_kit.io import loads_toml
from ssl_kit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ssl-kit-example"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("plugins/*/README.md"))]
TINY = Path(__file__).parent / "tiny.toml"

# (file, language, index of the block in that file and language) -> why it does not run here
NOT_RUN = {
    ("README.md", "python", 1): "uploads to the Hugging Face Hub (the same calls run against a faked Hub in test_hub.py)",
    ("hub.md", "python", 2): "a fragment: the CIFAR-stem lines to insert into the block before it",
    ("hub.md", "python", 3): "downloads from the Hugging Face Hub (test_hub.py runs the card's timm snippet offline)",
    ("hub.md", "python", 4): "uploads to the Hugging Face Hub (test_hub.py pushes to a faked Hub)",
    ("distributed.md", "python", 0): "a plugin's test: the contract suite runs the same calls for every method",
    ("hub.md", "toml", 0): "a [hub] table to add to a recipe: validated by test_recipe.py and test_hub.py",
}


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.DOTALL | re.MULTILINE)


def code_lines(text: str) -> list[str]:
    """Lines without inline comments (two spaces and a '#') and surrounding space, empty and
    comment-only lines dropped."""
    lines = [re.sub(r"\s{2,}#.*$", "", line).strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def name_of(path: Path) -> str:
    return f"{path.parent.name}/README.md" if path.parent.parent.name == "plugins" else path.name


def plugin_guide_toml_kind(text: str) -> str:
    """Which test covers a TOML block of docs/plugins.md."""
    if "[build-system]" in text:
        return "pyproject"
    if text.startswith("# src/ssl_kit_mymethod/recipes/"):
        return "recipe"
    if text.startswith("# tests/contract/"):
        return "contract"
    return "extends" if text.startswith("extends") else "unknown"


def test_every_block_is_run_checked_or_listed():
    """A new block must join one of the tests below or NOT_RUN (with its reason)."""
    handled = {("README.md", "python", 0), ("README.md", "toml", 0), ("hub.md", "python", 0), ("hub.md", "python", 1)}
    handled |= {(name_of(p), "python", i) for p in ROOT.glob("plugins/*/README.md") for i in range(len(blocks(p, "python")))}
    guide = ROOT / "docs" / "plugins.md"
    handled |= {("plugins.md", "python", i) for i in range(len(blocks(guide, "python")))}
    kinds = [plugin_guide_toml_kind(b) for b in blocks(guide, "toml")]
    assert "unknown" not in kinds, kinds
    handled |= {("plugins.md", "toml", i) for i in range(len(kinds))}
    found = {(name_of(p), language, i) for p in DOCS for language in ("python", "toml")
             for i in range(len(blocks(p, language)))}
    missing = sorted(found - handled - set(NOT_RUN))
    assert not missing, f"blocks no test runs or checks: {missing}"


# --- README --------------------------------------------------------------------------------------
def test_readme_loss_block_runs():
    code = blocks(ROOT / "README.md", "python")[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["loss"].ndim == 0 and torch.isfinite(namespace["loss"])


def test_readme_recipe_block_is_the_quickstart_abridged(tmp_path):
    (text,) = blocks(ROOT / "README.md", "toml")
    assert text.startswith("# recipes/quickstart.toml (abridged)")
    (tmp_path / "abridged.toml").write_text(text)
    load_recipe(str(tmp_path / "abridged.toml"))  # a valid recipe on its own
    quickstart = loads_toml((ROOT / "recipes" / "quickstart.toml").read_text())
    for section, table in loads_toml(text).items():
        for key, value in table.items():
            assert quickstart[section][key] == value, f"README shows [{section}] {key} = {value!r}; quickstart.toml says otherwise"


def test_plugin_readme_blocks_run():
    for readme in sorted(ROOT.glob("plugins/*/README.md")):
        for code in blocks(readme, "python"):
            exec(compile(code, str(readme), "exec"), {})


# --- docs/plugins.md: the blocks are the example plugin's tested code ----------------------------
def example_source() -> str:
    files = [*EXAMPLE.rglob("*.py"), EXAMPLE / "pyproject.toml"]
    return "\n".join(code_lines("\n".join(p.read_text() for p in files)))


def as_example(text: str) -> str:
    return text.replace("ssl_kit_mymethod", "ssl_kit_example").replace("ssl-kit-mymethod", "ssl-kit-example")


def test_plugin_guide_python_blocks_are_the_example_plugins_code():
    source = example_source()
    for code in blocks(ROOT / "docs" / "plugins.md", "python"):
        for line in code_lines(as_example(code)):
            if "..." not in line:  # an elision
                assert line in source, f"docs/plugins.md shows a line the example plugin does not have: {line!r}"


def test_plugin_guide_pyproject_block_declares_what_the_example_declares():
    (text,) = [b for b in blocks(ROOT / "docs" / "plugins.md", "toml") if plugin_guide_toml_kind(b) == "pyproject"]
    shown, example = loads_toml(as_example(text)), loads_toml((EXAMPLE / "pyproject.toml").read_text())
    (shown_entry,), (example_entry,) = shown["project"]["entry-points"]["ssl_kit"].values(), example["project"]["entry-points"]["ssl_kit"].values()
    assert shown_entry == example_entry  # the module holding the hooks
    assert shown["project"]["dependencies"] == example["project"]["dependencies"]
    assert shown["tool"] == example["tool"] and shown["build-system"] == example["build-system"]


def test_plugin_guide_digits_recipe_is_the_shipped_file_and_trains(tmp_path):
    header = "# src/ssl_kit_mymethod/recipes/"
    (text,) = [b for b in blocks(ROOT / "docs" / "plugins.md", "toml") if plugin_guide_toml_kind(b) == "recipe"]
    name = text.splitlines()[0][len(header):]
    shipped = EXAMPLE / "src" / "ssl_kit_example" / "recipes" / name
    assert text.split("\n", 1)[1] == shipped.read_text()
    results = train(load_recipe(name[: -len(".toml")], [f"train.output_dir={tmp_path}", "train.max_steps=2",
                                                        "train.progress=false", "eval.baselines=[]"]))
    assert results["steps"] == 2 and "knn_cosine_k20_t0.07_top1" in results["results"]["trained"]


def test_plugin_guide_extends_blocks_mean_what_the_text_says(tmp_path):
    extending = [b for b in blocks(ROOT / "docs" / "plugins.md", "toml") if plugin_guide_toml_kind(b) == "extends"]
    assert len(extending) == 2
    for i, text in enumerate(extending):
        (tmp_path / f"child{i}.toml").write_text(text)
    on_quickstart = load_recipe(str(tmp_path / "child0.toml"))
    quickstart = load_recipe("quickstart")
    assert on_quickstart.method_name == "align_uniform" and on_quickstart.method.proj_dim == 32  # its default
    assert (on_quickstart.backbone, on_quickstart.views, on_quickstart.optim) == (quickstart.backbone, quickstart.views,
                                                                                 quickstart.optim)
    variant = load_recipe(str(tmp_path / "child1.toml"))
    assert variant.method.proj_dim == 64 and variant.method.t == 3.0
    results = train(load_recipe(str(tmp_path / "child0.toml"), [f"train.output_dir={tmp_path / 'run'}",
                                                                "train.max_steps=1", "train.progress=false",
                                                                "eval.enabled=false"]))
    assert results["steps"] == 1


def test_plugin_guide_contract_recipe_of_built_in_parts_trains(tmp_path):
    (text,) = [b for b in blocks(ROOT / "docs" / "plugins.md", "toml") if plugin_guide_toml_kind(b) == "contract"]
    (tmp_path / "contract.toml").write_text(text)
    results = train(load_recipe(str(tmp_path / "contract.toml"), [f"train.output_dir={tmp_path / 'run'}",
                                                                  "train.progress=false", "eval.enabled=false"]))
    assert results["steps"] == 4


# --- docs/hub.md ---------------------------------------------------------------------------------
def test_hub_guide_loading_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["train.max_steps=1", "train.progress=false", "eval.enabled=false", "hub.full_method=true",
              "data.image_size=16"]
    train(load_recipe(str(TINY), ["train.output_dir=runs/my-run", *common]))
    load, torchvision_block = blocks(ROOT / "docs" / "hub.md", "python")[:2]
    namespace: dict = {"images": torch.rand(2, 3, 16, 16)}
    exec(compile(load, "hub.md", "exec"), namespace)
    assert namespace["features"].shape == (2, 16) and not namespace["method"].training
    child = tmp_path / "resnet.toml"
    child.write_text(f'extends = "{TINY}"\n[backbone]\nname = "resnet18"\n')
    train(load_recipe(str(child), ["train.output_dir=resnet", *common]))
    monkeypatch.chdir(tmp_path / "resnet")
    namespace = {}
    exec(compile(torchvision_block, "hub.md", "exec"), namespace)
    assert not any(k.startswith("fc.") for k in namespace["model"].state_dict())


@pytest.mark.parametrize("key", sorted(NOT_RUN))
def test_blocks_left_out_still_exist(key):
    """NOT_RUN names blocks that exist: an index that points nowhere hides a new block."""
    name, language, index = key
    path = next(p for p in DOCS if name_of(p) == name)
    assert index < len(blocks(path, language)), key

"""Recipes: loading, extends, overrides, and one clear one-line error per kind of mistake."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_kit.errors import RecipeError, UserError
from ssl_kit.io import dumps_toml, loads_toml
from ssl_kit.recipe import load_recipe, parse_override

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "recipes" / "quickstart.toml")

TINY = Path(__file__).parent / "tiny.toml"
TINY_TEXT = TINY.read_text()  # the shared tiny recipe, for recipes made by editing its text
CHILD = f'extends = "{TINY}"\n'  # the start of a recipe that adds tables or keys to it


def write(tmp_path, text, name="r.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_quickstart_validates_and_overrides_apply():
    recipe = load_recipe(QUICKSTART, ["train.epochs=1", "method.temperature=0.2", "data.batch_size=64"])
    assert recipe.train.epochs == 1
    assert recipe.method.temperature == 0.2
    assert recipe.data.batch_size == 64
    assert recipe.name == "quickstart"


def test_resolved_recipe_round_trips_through_toml(tmp_path):
    recipe = load_recipe(QUICKSTART)
    path = write(tmp_path, dumps_toml(recipe.resolved()), "quickstart.toml")
    again = load_recipe(path)
    assert again.resolved() == recipe.resolved()


HOSTILE = ['quote " and \\ backslash', "line\nbreak\ttab", "control \x01\x1f\x7f", "é ünïcödé 中文",
           "{name} braces [not a table]", "'''triple''' and \"\"\"", "trailing space "]


@pytest.mark.parametrize("text", HOSTILE)
def test_resolved_recipe_with_hostile_strings_is_valid_toml_and_reruns_as_is(tmp_path, text):
    """Every string a recipe may hold survives the resolved recipe.toml (description, values)."""
    recipe = load_recipe(QUICKSTART, [f"train.tracker_project={json.dumps(text)}"])
    tree = {"description": text, **{k: v for k, v in recipe.resolved().items() if k != "description"}}
    written = dumps_toml(tree)
    assert loads_toml(written)["description"] == text
    again = load_recipe(write(tmp_path, written, "hostile.toml"))
    assert again.resolved() == tree and again.train.tracker_project == text


def test_extends_deep_merges_the_base(tmp_path):
    write(tmp_path, CHILD + "[train]\nepochs = 7\nseed = 3\n", "base.toml")
    path = write(tmp_path, 'extends = "base.toml"\n[train]\nepochs = 2\n')
    recipe = load_recipe(path)
    assert (recipe.train.epochs, recipe.train.seed, recipe.method_name) == (2, 3, "simclr")


def test_override_parses_toml_values_and_bare_strings():
    assert parse_override("train.epochs=5") == (["train", "epochs"], 5)
    assert parse_override("eval.baselines=['raw']") == (["eval", "baselines"], ["raw"])
    assert parse_override("data.name=digits") == (["data", "name"], "digits")


BAD_RECIPES = [
    # (recipe text: CHILD and what it adds, or tiny.toml's text edited; overrides; expected fragments)
    (CHILD + "[train]\nepoch = 3\n", [], ["[train]", "unknown key 'epoch'", "Did you mean 'epochs'"]),
    (CHILD + "[train]\nepochs = 'ten'\n", [], ["[train]", "'epochs' must be int", "'ten'"]),
    (CHILD + "[train]\nepochs = 0\n", [], ["'epochs' must be >= 1"]),
    (TINY_TEXT.replace('lr_scaling = "none"', ""), [], ["[optim]", "missing required key 'lr_scaling'"]),
    (TINY_TEXT.replace('lr_scaling = "none"', 'lr_scaling = "sqrt"'), [], ["'lr_scaling' must be 'none' | 'linear'"]),
    (TINY_TEXT.replace('name = "simclr"', 'name = "simclrr"'), [], ["unknown method 'simclrr'", "Did you mean 'simclr'"]),
    (TINY_TEXT.replace('name = "fake"', 'name = "fak"'), [], ["unknown dataset 'fak'", "Did you mean 'fake'"]),
    (CHILD + "[trian]\nepochs = 1\n", [], ["unknown top-level table 'trian'", "Did you mean 'train'"]),
    (TINY_TEXT.split("\n[backbone]")[0], [], ["missing table [backbone]"]),
    (CHILD + "[method\n", [], ["invalid TOML"]),
    (TINY_TEXT + "[data]\nroot = 'x'\n", [], ["invalid TOML"]),  # table defined twice
    (CHILD + "[data]\nimage_sise = 8\n", [], ["[data]", "unknown key 'image_sise'", "Did you mean 'image_size'"]),
    (CHILD + "[eval]\nevaluators = ['knm']\n", [], ["unknown evaluator 'knm'", "Did you mean 'knn'"]),
    (CHILD + "[eval]\nbaselines = ['random']\n", [], ["unknown entry 'random'", "Did you mean 'random_init'"]),
    (CHILD + "[views]\npreset = 'simclear'\n", [], ["unknown view preset 'simclear'", "Did you mean 'simclr'"]),
    (CHILD + "[views]\nglobal_scale = [0.9, 0.1]\n", [], ["global_scale", "low <= high"]),
    (TINY_TEXT, ["train.epochs"], ["not of the form section.key=value"]),
    (TINY_TEXT, ["epochs=3"], ["the key must be section.key"]),
    (TINY_TEXT, ["trainn.epochs=3"], ["unknown section 'trainn'", "Did you mean 'train'"]),
    (TINY_TEXT, ["method.name.x=3"], ["'method.name' is a value, not a table"]),
    (TINY_TEXT, ["method.temperatur=0.3"], ["unknown key 'temperatur'", "Did you mean 'temperature'", "from override"]),
    (TINY_TEXT, ["optim.name=adm"], ["'name' must be 'sgd' | 'adam' | 'adamw' | 'lars'", "from override"]),
    (TINY_TEXT, ["data.batch_size=1"], ["'batch_size' must be >= 2"]),
    ('extends = "missing_base"\n' + TINY_TEXT, [], ["extends 'missing_base'", "neither a recipe file nor a registered recipe"]),
    (CHILD + "method = 3\n", [], ["'method' must be a table"]),
]


@pytest.mark.parametrize("text,overrides,fragments", BAD_RECIPES)
def test_bad_recipe_gives_one_clear_error(tmp_path, text, overrides, fragments):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_recipe(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_extends_cycle_is_an_error(tmp_path):
    write(tmp_path, 'extends = "b.toml"\n' + TINY_TEXT, "a.toml")
    write(tmp_path, 'extends = "a.toml"\n', "b.toml")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(str(tmp_path / "a.toml"))


def test_missing_recipe_file_is_a_user_error():
    with pytest.raises(UserError, match="recipe file 'nope/x.toml' not found"):
        load_recipe("nope/x.toml")


def test_cli_prints_one_line_and_exits_2_without_traceback(tmp_path):
    path = write(tmp_path, CHILD + "[train]\nepoch = 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ssl_kit", "validate", path], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "unknown key 'epoch'" in lines[-1]


def test_every_registered_recipe_validates():
    from ssl_kit.plugins import get_registry

    names = get_registry().names("recipes")
    assert "quickstart" in names
    for name in names:
        load_recipe(name)


def test_extends_with_another_component_replaces_that_table(tmp_path):
    write(tmp_path, CHILD + "[method]\ntemperature = 0.3\n", "base.toml")  # simclr's, with a temperature
    path = write(tmp_path, 'extends = "base.toml"\n[method]\nname = "byol"\npred_hidden_dim = 8\n[train]\nepochs = 2\n')
    recipe = load_recipe(path)
    assert recipe.method_name == "byol" and recipe.method.pred_hidden_dim == 8  # no 'temperature' leaks in
    assert recipe.backbone_name == "convnet" and recipe.train.epochs == 2


def test_pointer_file_runs_the_plugin_recipe_of_its_name_and_is_not_registered_itself(tmp_path):
    from ssl_kit.hooks import hookimpl, is_pointer
    from ssl_kit.testing import temporary_plugin

    plugin_recipe = write(tmp_path, CHILD + "[train]\nepochs = 4\n", "pointed.toml")
    clone = tmp_path / "clone"
    clone.mkdir()
    pointer = write(clone, 'extends = "pointed"\ndescription = "pip install -e plugins/x"\n', "pointed.toml")
    assert is_pointer(Path(pointer)) and not is_pointer(Path(plugin_recipe))
    with pytest.raises(RecipeError, match=r"points at recipe 'pointed', which no installed plugin registers: pip install -e plugins/x"):
        load_recipe(pointer)

    class Plugin:
        @hookimpl
        def register_recipes(self, register):
            register("pointed", plugin_recipe)

    with temporary_plugin(Plugin(), "pointer-test"):
        recipe = load_recipe(pointer, ["train.seed=5"])
    assert (recipe.train.epochs, recipe.train.seed, recipe.name) == (4, 5, "pointed")


def test_the_clone_recipes_folder_registers_no_pointer():
    from ssl_kit.hooks import is_pointer
    from ssl_kit.plugins import get_registry

    registry = get_registry()
    for path in (ROOT / "recipes").glob("*.toml"):
        if is_pointer(path) and path.stem in registry.names("recipes"):
            assert Path(registry.get("recipes", path.stem).factory).resolve() != path.resolve()

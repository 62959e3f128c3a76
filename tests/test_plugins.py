"""The registry, through real entry points of distributions made on the fly."""

import json
import sys
import textwrap
import warnings

import pytest

from ssl_kit.errors import PluginError
from ssl_kit.plugins import get_registry


def make_distribution(root, dist, module, entry_point, code, version="1.2.3"):
    """An installed distribution in ``root``: dist-info with METADATA and entry_points.txt."""
    (root / f"{module}.py").write_text(textwrap.dedent(code))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[ssl_kit]\n{entry_point} = {module}\n")


GOOD = """
import dataclasses
from ssl_kit import hookimpl
from ssl_kit.methods.simclr import SimCLR, SimCLRConfig

@dataclasses.dataclass
class TinyConfig:
    width: int = 4

def tiny(cfg):
    import torch
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(cfg.width))
    net.num_features = cfg.width
    return net

@hookimpl
def register_methods(register):
    register("simclr_copy", SimCLR, config=SimCLRConfig)

@hookimpl
def register_backbones(register):
    register("test_tiny_mlp", tiny, config=TinyConfig)
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SSL_KIT_DISABLE_PLUGINS", raising=False)
    yield tmp_path
    monkeypatch.undo()  # drop the fake distributions before rebuilding the registry
    for module in ("good_plugin", "broken_plugin", "clash_plugin"):
        sys.modules.pop(module, None)
    get_registry(reload=True)


def test_entry_point_plugin_is_found_with_its_distribution_and_components(site):
    make_distribution(site, "ssl-kit-good", "good_plugin", "good", GOOD)
    registry = get_registry(reload=True)
    info = next(p for p in registry.plugins if p.name == "good")
    assert (info.distribution, info.version, info.status) == ("ssl-kit-good", "1.2.3", "ok")
    assert info.provides == {"methods": ["simclr_copy"], "backbones": ["test_tiny_mlp"]}
    assert registry.get("backbones", "test_tiny_mlp").plugin is info
    # built-ins are registered through the same hooks, as a peer plugin
    assert registry.get("methods", "simclr").plugin.distribution == "ssl-kit"


def test_plugin_raising_at_import_is_recorded_and_does_not_break_others(site):
    make_distribution(site, "ssl-kit-good", "good_plugin", "good", GOOD)
    make_distribution(site, "ssl-kit-broken", "broken_plugin", "broken", "raise RuntimeError('boom')\n")
    with pytest.warns(UserWarning, match=r"plugin 'broken' \(ssl-kit-broken 1.2.3\) failed to load"):
        registry = get_registry(reload=True)
    broken = next(p for p in registry.plugins if p.name == "broken")
    assert broken.status == "failed" and "RuntimeError: boom" in broken.error
    assert "simclr_copy" in registry.names("methods")
    with pytest.raises(PluginError) as info:
        registry.get("methods", "broken_method")
    assert "ssl-kit-broken" in str(info.value) and "RuntimeError: boom" in str(info.value)


def test_same_name_from_two_distributions_is_an_error_naming_both(site):
    make_distribution(site, "ssl-kit-good", "good_plugin", "good", GOOD)
    make_distribution(site, "ssl-kit-clash", "clash_plugin", "clash", GOOD)
    with pytest.warns(UserWarning, match="registered by both"):
        registry = get_registry(reload=True)
    with pytest.raises(PluginError) as info:
        registry.get("methods", "simclr_copy")
    assert "ssl-kit-good" in str(info.value) and "ssl-kit-clash" in str(info.value)


def test_disable_plugins_environment_variable(site, monkeypatch):
    make_distribution(site, "ssl-kit-broken", "broken_plugin", "broken", "raise RuntimeError('boom')\n")
    monkeypatch.setenv("SSL_KIT_DISABLE_PLUGINS", "broken, other")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry = get_registry(reload=True)
    assert next(p for p in registry.plugins if p.name == "broken").status == "disabled"


def test_plugins_command_lists_distributions_as_json(site, capsys):
    from ssl_kit.cli import main

    make_distribution(site, "ssl-kit-good", "good_plugin", "good", GOOD)
    make_distribution(site, "ssl-kit-broken", "broken_plugin", "broken", "import not_a_module_xyz\n")
    with pytest.warns(UserWarning, match="broken"):
        get_registry(reload=True)
    assert main(["plugins", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert sorted(rows["ssl_kit"]["provides"]["methods"]) == ["byol", "mocov2plus", "simclr", "simsiam"]
    assert rows["good"]["version"] == "1.2.3" and rows["good"]["status"] == "ok"
    assert rows["broken"]["status"] == "failed" and "not_a_module_xyz" in rows["broken"]["error"]
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert "ssl-kit-good 1.2.3" in text and "failed: ModuleNotFoundError" in text


@pytest.mark.parametrize("where", ["import", "hook"])
@pytest.mark.parametrize("raise_", ["raise SystemExit(3)", "import sys; sys.exit('bye')", "raise KeyboardInterrupt"])
def test_plugin_exiting_or_interrupting_is_that_plugins_failure(site, capsys, where, raise_):
    code = raise_ + "\n" if where == "import" else (
        "from ssl_kit import hookimpl\n@hookimpl\ndef register_methods(register):\n    " + raise_ + "\n")
    make_distribution(site, "ssl-kit-broken", "broken_plugin", "broken", code)
    with pytest.warns(UserWarning, match=r"plugin 'broken' .* failed to load"):
        registry = get_registry(reload=True)
    broken = next(p for p in registry.plugins if p.name == "broken")
    kind = "KeyboardInterrupt" if "Keyboard" in raise_ else "SystemExit"
    assert broken.status == "failed" and broken.error.startswith(kind if where == "import" else f"{kind} in register_")
    assert "simclr" in registry.names("methods")  # the built-ins still work
    from ssl_kit.cli import main
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["validate", "quickstart"]) == 0


def test_bad_register_call_marks_the_plugin_failed(site):
    make_distribution(site, "ssl-kit-good", "good_plugin", "good", """
from ssl_kit import hookimpl
@hookimpl
def register_methods(register):
    register("x", object, config=int)
""")
    with pytest.warns(UserWarning, match="config must be a dataclass"):
        registry = get_registry(reload=True)
    assert "x" not in registry.names("methods")


def test_plugin_requiring_another_core_version_is_flagged(site, capsys):
    from ssl_kit.cli import main

    make_distribution(site, "ssl-kit-good", "good_plugin", "good", GOOD)
    metadata = next(site.glob("ssl_kit_good-*.dist-info")) / "METADATA"
    metadata.write_text(metadata.read_text() + "Requires-Dist: ssl-kit<0.1,>=0.0.1\nRequires-Dist: numpy\n")
    with pytest.warns(UserWarning, match=r"requires ssl-kit<0.1,>=0.0.1"):
        registry = get_registry(reload=True)
    info = next(p for p in registry.plugins if p.name == "good")
    assert not info.compatible and info.status == "ok"
    main(["plugins"])
    assert "INCOMPATIBLE: requires ssl-kit<0.1,>=0.0.1" in capsys.readouterr().out


def test_recipes_are_registered_by_name(capsys):
    from ssl_kit.cli import main

    registry = get_registry(reload=True)
    assert registry.get("recipes", "quickstart").factory.endswith("quickstart.toml")
    main(["recipes"])
    assert "quickstart" in capsys.readouterr().out

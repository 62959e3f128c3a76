from pathlib import Path

from ssl_kit.docs import reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_recipe_reference_is_current():
    """docs/recipes.md documents every knob; regenerate with `python -m ssl_kit describe`."""
    assert (ROOT / "docs" / "recipes.md").read_text() == reference_markdown(), (
        "docs/recipes.md is stale: run `python -m ssl_kit describe > docs/recipes.md`"
    )


def test_every_knob_has_help_text():
    text = reference_markdown()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows
    for row in rows:
        assert row.split("|")[4].strip(), f"undocumented knob: {row}"


def test_api_reference_builds_offline(tmp_path):
    import subprocess
    import sys

    from ssl_kit.testing import need

    need("mkdocstrings")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "nt_xent" in page and "MethodContract" in page

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

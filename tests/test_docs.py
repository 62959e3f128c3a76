from pathlib import Path

from ssl_kit.docs import reference_markdown
from ssl_kit.reference import api_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_recipe_reference_is_current():
    """docs/recipes.md documents every knob; regenerate with `python -m ssl_kit describe`."""
    assert (ROOT / "docs" / "recipes.md").read_text() == reference_markdown(), (
        "docs/recipes.md is stale: run `python -m ssl_kit describe > docs/recipes.md`"
    )


def test_api_reference_is_current_and_documents_everything():
    """docs/reference.md, the API a plugin uses in plain Markdown; regenerate with
    `python -m ssl_kit describe --api > docs/reference.md`."""
    text = api_markdown()
    assert (ROOT / "docs" / "reference.md").read_text() == text, (
        "docs/reference.md is stale: run `python -m ssl_kit describe --api > docs/reference.md`"
    )
    assert "(undocumented)" not in text
    for name in ("nt_xent", "class `Method(", "set_views", "mlp(", "gather(", "class `DatasetInfo(",
                 "register_recipe_folder", "class `MethodContract(", "assert_same_runs", "summary("):
        assert name in text, name


def test_no_file_cites_a_document_the_project_does_not_contain():
    for path in [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.rglob("*.py"), *ROOT.rglob("*.toml")]:
        if ".venv" in path.parts or "site-packages" in path.parts or path.name == "test_docs.py":
            continue
        assert "METHODS.md" not in path.read_text(errors="replace"), path
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

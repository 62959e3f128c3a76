"""The core's layering (docs/architecture.md) holds: import-linter's contracts in pyproject.toml,
no ssl_kit import hidden inside a function, no module using another module's private names."""

import ast
import subprocess
import sys
from pathlib import Path

from ssl_kit.testing import need

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "ssl_kit"


def test_import_linter_contracts_are_kept():
    # In its own process: import-linter configures logging with dictConfig, which disables every
    # logger that exists at that moment (ssl_kit's included) for the rest of the test process.
    need("importlinter")
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename='pyproject.toml'))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"run `lint-imports` to see the broken contract:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"


def imports(path: Path) -> list[tuple[ast.AST, bool]]:
    """Every import statement of a file, and whether it sits inside a function."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(path.read_text()), False)
    return found


def test_no_ssl_kit_import_is_hidden_inside_a_function():
    hidden = []
    for path in sorted(CORE.rglob("*.py")):
        for node, in_function in imports(path):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if in_function and any(m == "ssl_kit" or m.startswith("ssl_kit.") for m in modules):
                hidden.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # the public facade (ssl_kit/__init__.py) imports by module name (importlib), never with a statement
    assert not hidden, f"function-level imports of ssl_kit modules (a cycle in disguise): {hidden}"


def test_no_module_imports_another_modules_private_names():
    private = []
    for path in sorted([*CORE.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "plugins").rglob("*.py"),
                        *(ROOT / "examples").rglob("*.py")]):
        for node, _ in imports(path):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ssl_kit"):
                private += [f"{path.relative_to(ROOT)}:{node.lineno} {a.name}" for a in node.names if a.name.startswith("_")
                            and not a.name.startswith("__")]
    assert not private, private

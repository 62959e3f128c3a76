"""Command line: ``python -m ssl_kit RECIPE [key=value ...]`` and subcommands (argument parsing;
the commands' bodies are :mod:`ssl_kit.commands`).

    python -m ssl_kit RECIPE [section.key=value ...]    train (same as 'train RECIPE ...')
    python -m ssl_kit validate RECIPE [overrides]       check a recipe without training
    python -m ssl_kit plugins [--json]                  installed plugins and what they provide
    python -m ssl_kit recipes [--json]                  registered recipes
    python -m ssl_kit describe [--all | --api]          reference of every recipe key, or of the API (markdown)
    python -m ssl_kit export RUN_DIR [--out DIR] [--full-method]
                                                        export a run's newest checkpoint (docs/hub.md)
    python -m ssl_kit push RUN_OR_EXPORT_DIR --repo-id user/name [--private] [--create-pr]
                                                        upload an export to the Hugging Face Hub
    python -m ssl_kit eval TARGET [--evaluator NAME ...] [--out DIR] [overrides]
                                                        evaluate a run directory, export or Hub id

User mistakes print one line ``error: ...`` and exit with code 2; bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch
import torch.distributed as dist

from ssl_kit import commands
from ssl_kit.errors import UserError

SUBCOMMANDS = ("train", "validate", "plugins", "recipes", "describe", "eval", "export", "push")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ssl_kit",
        description="Self-supervised representation learning. Run a recipe: "
        "python -m ssl_kit RECIPE [section.key=value ...]",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in (("train", "train, evaluate and export a recipe"),
                            ("validate", "validate a recipe and print it resolved")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("recipe", help="recipe file (recipes/x.toml) or registered recipe name")
        p.add_argument("overrides", nargs="*", metavar="section.key=value", help="override recipe keys")
    p = sub.add_parser("plugins", help="list plugin distributions and their components")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("recipes", help="list registered recipes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("describe", help="print the reference of every recipe table and component (markdown)")
    p.add_argument("--all", action="store_true", help="include the components of installed plugins")
    p.add_argument("--api", action="store_true", help="the Python API a plugin uses instead (docs/reference.md)")
    p = sub.add_parser("export", help="export a run's newest checkpoint: model.safetensors, config.json, model card")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory (the recipe's train.output_dir)")
    p.add_argument("--out", metavar="DIR", help="export folder (default: RUN_DIR/export)")
    p.add_argument("--full-method", action="store_true",
                   help="also write method.safetensors (every head, EMA target, queue) for ssl_kit.load_method")
    p = sub.add_parser("push", help="upload an export folder to the Hugging Face Hub (token: HF_TOKEN or 'hf auth login')")
    p.add_argument("path", metavar="RUN_OR_EXPORT_DIR", help="run directory, or an export folder")
    p.add_argument("--repo-id", required=True, metavar="USER/NAME", help="Hub model repo, created if needed")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing to main")
    p.add_argument("--revision", metavar="BRANCH", help="branch to commit to (default: main)")
    p = sub.add_parser("eval", help="evaluate a run directory, an export folder or a Hub id of an export")
    p.add_argument("target", help="run directory, export folder, or Hub id (user/name)")
    p.add_argument("--evaluator", action="append", metavar="NAME",
                   help="evaluator to run (repeatable; default: the recipe's eval.evaluators)")
    p.add_argument("--out", help="output folder (default: TARGET/eval)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="override recipe keys (eval.*, data.* for another dataset)")
    return parser


def user_message(err: BaseException) -> str:
    """One line for the user. A UserError raised in a DataLoader worker arrives re-raised with the
    worker's traceback inside its message: keep only the original message."""
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if last.startswith(("ssl_kit.errors.", type(err).__name__)) and ": " in last else last
    return " ".join(text.split("\n")).strip()


def _destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in SUBCOMMANDS:
        argv.insert(0, "train")
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "eval" and all("=" in x and not x.startswith("-") for x in extra):
        args.overrides += extra  # overrides after an option (eval TARGET --evaluator knn k=v)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        _parser().print_help()
        return 2
    warnings.filterwarnings("default", category=UserWarning, module="ssl_kit")
    if not torch.cuda.is_available():  # DeepSpeed, when installed, otherwise warns on every run
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        if args.command == "plugins":
            commands.plugins(args.json)
        elif args.command == "recipes":
            commands.recipes(args.json)
        elif args.command == "describe":
            commands.describe(args.all, args.api)
        elif args.command == "export":
            commands.export(args.run_dir, args.out, args.full_method)
        elif args.command == "push":
            commands.push(args.path, args.repo_id, args.private, args.create_pr, args.revision)
        elif args.command == "eval":
            commands.evaluate(args.target, args.evaluator, args.overrides, args.out)
        elif args.command == "validate":
            commands.validate(args.recipe, args.overrides)
        else:
            commands.train(args.recipe, args.overrides)
            _destroy_process_group()
    except UserError as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0

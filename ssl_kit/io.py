"""Small file helpers every layer shares: atomic writes, versioned JSON, TOML (torch-free;
tensors are :mod:`ssl_kit.weights`').

Writes go to a temporary file in the same folder, are flushed to disk and renamed into place, so
a reader (or a run resumed after a kill) never sees half a file.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import tomli_w

from ssl_kit.errors import CheckpointError, RecipeError, UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: The layout version of checkpoints (state.json) and exports (config.json) this ssl_kit writes and reads.
FORMAT_VERSION = 1


# --- the run directory -------------------------------------------------------------------------
def make_folder(path: Path, what: str = "train.output_dir") -> None:
    """Create folder ``path`` (and its parents) and check it is writable, or raise a one-line error
    naming ``what`` (the key or option that gave the path) and why it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{what} '{path}' (or a folder above it) is a file, not a folder") from None
    except OSError as err:
        raise UserError(f"{what} '{path}' cannot be created or written: {err.strerror or err}") from None


def lock_run_dir(run_dir: Path) -> Any:
    """An OS lock on ``run_dir`` held by this process until the returned file is closed; a
    one-line error naming the holder if another process has it. The lock dies with its process, so
    a killed run never leaves it stuck. It is a POSIX record lock (``lockf``), which forked children
    (DataLoader workers) do not inherit: an orphaned worker of a killed run cannot keep it. (No lock
    where the OS has no ``fcntl``, e.g. Windows.)"""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return None
    make_folder(run_dir)
    handle = open(run_dir / ".lock", "a+", encoding="utf-8")
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"run directory '{run_dir}' is in use by {holder}: wait for that run to end, or choose "
                        "another train.output_dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    return handle


# --- atomic writes -----------------------------------------------------------------------------
def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk, where the platform allows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``<path>.tmp``, fsync and rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_versioned_json(folder: Path, name: str, what: str) -> dict[str, Any]:
    """``folder/name`` as a dict, with a clear error when it is unreadable or its
    ``format_version`` is not :data:`FORMAT_VERSION`."""
    try:
        data = json.loads((Path(folder) / name).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{what} '{folder}': cannot read {name}: {err}") from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        found = data.get("format_version") if isinstance(data, dict) else None
        raise CheckpointError(
            f"{what} '{folder}' has format_version {found!r}; this ssl_kit reads format_version {FORMAT_VERSION}"
        )
    return data


# --- TOML --------------------------------------------------------------------------------------
def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a one-line :class:`RecipeError` naming the file when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: invalid TOML: {err}") from None
    except OSError as err:
        raise RecipeError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a UTF-8 text file") from None


TOMLDecodeError = tomllib.TOMLDecodeError


def loads_toml(text: str) -> dict[str, Any]:
    """TOML text as a dict (tomllib; raises ``tomllib.TOMLDecodeError``)."""
    return tomllib.loads(text)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value]
    return value


def dumps_toml(tree: dict[str, Any]) -> str:
    """A recipe tree as TOML (tomli_w). Keys whose value is None are left out: TOML has no null,
    and every such key means "the default", which validation fills in again."""
    return tomli_w.dumps(_without_none(tree))

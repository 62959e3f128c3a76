"""The installed ssl_kit version, read from the package metadata (pyproject.toml's ``version``)."""

from importlib import metadata

try:
    __version__ = metadata.version("ssl-kit")
except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"

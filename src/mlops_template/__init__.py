"""A production-shaped MLOps reference package: prepare, train, export to ONNX, serve."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version(__name__.replace("_", "-"))
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]

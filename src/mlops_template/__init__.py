"""A production-shaped MLOps reference package: prepare, train, export to ONNX, serve."""

from importlib import metadata


def _version() -> str:
    try:
        return metadata.version(__name__)  # names are normalised: my_project finds my-project
    except metadata.PackageNotFoundError:
        distributions = metadata.packages_distributions().get(__name__, [])
        return metadata.version(distributions[0]) if distributions else "0.0.0"


__version__ = _version()
__all__ = ["__version__"]

"""A production-shaped MLOps reference package: prepare, train, export to ONNX, serve."""

import os
from importlib import metadata

# onnxruntime 1.29+ sends usage telemetry from every process that opens a session unless this is
# set before it loads; every module that loads it is imported through this package, so nothing
# leaves the machine. Set it to 0 in the environment to opt in.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def _version() -> str:
    try:
        return metadata.version(__name__)  # names are normalised: my_project finds my-project
    except metadata.PackageNotFoundError:
        distributions = metadata.packages_distributions().get(__name__, [])
        return metadata.version(distributions[0]) if distributions else "0.0.0"


__version__ = _version()
__all__ = ["__version__"]

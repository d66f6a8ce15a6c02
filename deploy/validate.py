"""Render every kustomization under deploy/ and validate what it makes, strictly and offline.

Built-in kinds are checked against Kubernetes' own schemas (kubernetes-validate, which bundles
them) for the oldest and the newest Kubernetes these manifests support; custom resources (KServe's
InferenceService) against the strict schemas in deploy/schemas/, whose README says where they
come from. An unknown field, a wrong type or a missing required field fails, naming the
kustomization, the resource and the field. A kind with no schema fails too: nothing goes
unchecked.

    python deploy/validate.py                      # every kustomization under deploy/
    python deploy/validate.py deploy/overlays/dev  # some of them
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils as kubernetes

DEPLOY = Path(__file__).resolve().parent
SCHEMAS = DEPLOY / "schemas"
KUBERNETES_VERSIONS = ("1.30", "1.37")


def kustomizations(root: Path = DEPLOY) -> list[Path]:
    return sorted(path.parent for path in root.rglob("kustomization.yaml"))


def kubectl() -> str:
    """The kubectl of this environment (the dev tools install one), else the one on PATH."""
    found = shutil.which(
        "kubectl",
        path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    if found is None:
        raise SystemExit("kubectl not found: run `make install` (it comes with the dev tools)")
    return found


def build(directory: Path) -> list[dict[str, Any]]:
    """The resources `kubectl kustomize` makes of a directory."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ValueError(f"kustomize failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


def where(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(the resource)"


def custom_schema(resource: dict[str, Any]) -> dict[str, Any] | None:
    group, _, version = str(resource.get("apiVersion", "")).rpartition("/")
    if "." not in group:  # a built-in group: core (""), apps, policy, autoscaling, batch...
        return None
    path = SCHEMAS / f"{group}_{version}_{str(resource.get('kind', '')).lower()}.json"
    if not path.is_file():
        raise LookupError(
            f"no schema for {resource.get('kind')} ({resource.get('apiVersion')}): "
            f"add a strict one as {path.relative_to(DEPLOY.parent)}"
        )
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def problems(resource: dict[str, Any]) -> Iterator[str]:
    """What is wrong with one resource, field by field."""
    try:
        schema = custom_schema(resource)
    except LookupError as error:
        yield str(error)
        return
    if schema is not None:
        validator = jsonschema.Draft7Validator(schema)
        for error in sorted(validator.iter_errors(resource), key=lambda e: list(e.path)):
            yield f"{where(error.absolute_path)}: {error.message}"
        return
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes.validate(resource, version, strict=True)
        except kubernetes.ValidationError as error:
            yield f"{where(error.path)}: {error.message} (Kubernetes {version})"
            return
        except kubernetes.SchemaNotFoundError:
            kind = f"{resource.get('apiVersion')} {resource.get('kind')}"
            yield f"{kind} is not a Kubernetes {version} kind"
            return


def check(directory: Path) -> list[str]:
    name = os.path.relpath(directory)
    try:
        resources = build(directory)
    except ValueError as error:
        return [f"{name}: {error}"]
    found = []
    for resource in resources:
        meta = resource.get("metadata")
        label = f"{resource.get('kind', '?')}/{(meta or {}).get('name', '?')}"
        found += [f"{name}: {label}: {problem}" for problem in problems(resource)]
    if not found:
        kinds = ", ".join(sorted({str(resource.get("kind")) for resource in resources}))
        print(f"{name}: {len(resources)} resources valid ({kinds})")
    return found


def main(arguments: list[str]) -> int:
    directories = [Path(argument).resolve() for argument in arguments] or kustomizations()
    found = [problem for directory in directories for problem in check(directory)]
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

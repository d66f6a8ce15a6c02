"""Render every kustomization under deploy/ and validate what it makes, strictly and offline.

Built-in kinds are checked against Kubernetes' own schemas (kubernetes-validate, which bundles
them) for the oldest and the newest Kubernetes these manifests support; custom resources (KServe's
InferenceService) against the strict schemas in deploy/schemas/, whose README says where they
come from. An unknown field, a wrong type or a missing required field fails, naming the
kustomization, the resource and the field. A kind with no schema fails too: nothing goes
unchecked.

Then what a schema cannot see, which a cluster or KServe would refuse or silently change: every
container's image and resource quantities; the server's settings, ports, probe paths and grace
period against the package it runs; a Service's target port and an autoscaler's target against
the resources beside them; KServe's annotations. Each problem names the file and the field.

    python deploy/validate.py                      # every kustomization under deploy/
    python deploy/validate.py deploy/overlays/dev  # some of them
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils as kubernetes
from pydantic import ValidationError

from mlops_template.serving.routes import health, v2
from mlops_template.settings import ENV_PREFIX, Settings

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


# A Kubernetes quantity: `500m`, `1`, `0.5`, `256Mi`, `1e3`.
QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")
# Where each kind keeps its pod specs.
PODS = {
    "Deployment": [("spec", "template", "spec")],
    "InferenceService": [("spec", "predictor")],
    "DaskJob": [
        ("spec", "job", "spec"),
        ("spec", "cluster", "spec", "scheduler", "spec"),
        ("spec", "cluster", "spec", "worker", "spec"),
    ],
}
ROUTES = {
    getattr(route, "path", "") for router in (health.router, v2.router) for route in router.routes
}
KSERVE_MODES = ("Standard", "RawDeployment", "Serverless", "Knative", "ModelMesh")
KSERVE_ANNOTATIONS = ("deploymentMode", "autoscalerClass", "enable-prometheus-scraping")


def pods(resource: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    for path in PODS.get(str(resource.get("kind")), []):
        node: Any = resource
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            yield path, node


def container_problems(pod: dict[str, Any], container: dict[str, Any]) -> Iterator[str]:
    """What a schema lets through in one container: (field, problem) as 'field: problem'."""
    if not container.get("image"):
        yield "image: missing: the pod would not start"
    for bound in ("requests", "limits"):
        for name, value in (container.get("resources", {}).get(bound) or {}).items():
            if not QUANTITY.match(str(value)):
                yield f"resources.{bound}.{name}: {value!r} is not a quantity (500m, 1, 256Mi)"
    env = {item.get("name"): item.get("value") for item in container.get("env", [])}
    if env.get("ORT_DISABLE_TELEMETRY") != "1":
        yield 'env.ORT_DISABLE_TELEMETRY: must be "1" (onnxruntime sends telemetry otherwise)'
    ours = {
        k.removeprefix(ENV_PREFIX).lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)
    }
    unknown = sorted(k for k in ours if k not in Settings.model_fields)
    for key in unknown:
        yield f"env.{ENV_PREFIX}{key.upper()}: not a setting of the server"
    if "port" not in ours or unknown:
        return  # not a model server: the rest is about serving
    try:
        settings = Settings.model_validate(ours)
    except ValidationError as error:
        for item in error.errors():
            yield f"env.{ENV_PREFIX}{str(item['loc'][0]).upper()}: {item['msg']}"
        return
    ports = container.get("ports", [])
    if settings.port not in [port.get("containerPort") for port in ports]:
        yield f"ports: none is {ENV_PREFIX}PORT ({settings.port})"
    names = {port.get("name") for port in ports} | {port.get("containerPort") for port in ports}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = (container.get(probe) or {}).get("httpGet")
        if get is None:
            continue
        if get.get("path") not in ROUTES:
            yield f"{probe}.httpGet.path: {get.get('path')!r} is not a route of the server"
        if get.get("port") not in names:
            yield f"{probe}.httpGet.port: {get.get('port')!r} names no port of the container"
    pause = (container.get("lifecycle") or {}).get("preStop", {}).get("exec", {}).get("command")
    wait = int(pause[-1]) if pause and str(pause[-1]).isdigit() else 0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= wait + settings.graceful_timeout:
        yield (
            f"terminationGracePeriodSeconds: {grace} s is not above the preStop pause ({wait} s) "
            f"plus {ENV_PREFIX}GRACEFUL_TIMEOUT ({settings.graceful_timeout:g} s)"
        )


def cross_problems(resource: dict[str, Any], resources: list[dict[str, Any]]) -> Iterator[str]:
    """What a resource says of the others, or of a pod's containers, that does not hold."""
    for path, pod in pods(resource):
        for index, container in enumerate(pod.get("containers", [])):
            for problem in container_problems(pod, container):
                yield f"{where([*path, 'containers', index])}.{problem}"
    kind, spec = resource.get("kind"), resource.get("spec") or {}
    if kind == "Service":
        ports = {
            value
            for other in resources
            for _, pod in pods(other)
            for container in pod.get("containers", [])
            for port in container.get("ports", [])
            for value in (port.get("name"), port.get("containerPort"))
        }
        for index, port in enumerate(spec.get("ports", [])):
            if port.get("targetPort", port.get("port")) not in ports:
                target = port.get("targetPort")
                yield f"spec.ports[{index}].targetPort: {target!r} names no container port"
    if kind == "HorizontalPodAutoscaler":
        target = spec.get("scaleTargetRef", {})
        named = [(r.get("kind"), r.get("metadata", {}).get("name")) for r in resources]
        if (target.get("kind"), target.get("name")) not in named:
            yield f"spec.scaleTargetRef: no {target.get('kind')} named {target.get('name')!r} here"
    annotations = (resource.get("metadata") or {}).get("annotations") or {}
    if kind == "InferenceService":
        for key in annotations:
            group, _, name = key.partition("/")
            if group != "serving.kserve.io" or name in KSERVE_ANNOTATIONS:
                continue
            near = difflib.get_close_matches(name, KSERVE_ANNOTATIONS, n=1, cutoff=0.8)
            if near:
                yield f"metadata.annotations.{key}: unknown to KServe: did you mean {near[0]}?"
        mode = annotations.get("serving.kserve.io/deploymentMode")
        if mode is not None and mode not in KSERVE_MODES:
            yield (
                f"metadata.annotations.serving.kserve.io/deploymentMode: {mode!r} is not one of "
                f"{', '.join(KSERVE_MODES)} (KServe would fall back to its default)"
            )


def sources(directory: Path) -> list[Path]:
    """The manifest files a kustomization takes, its bases' included."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    found: list[Path] = []
    for entry in (kustomization or {}).get("resources", []):
        path = (directory / entry).resolve()
        found += sources(path) if path.is_dir() else [path]
    return found


def origin(directory: Path, resource: dict[str, Any]) -> str:
    """The file a resource comes from, found by its kind and name (kustomize may prefix it)."""
    kind, name = resource.get("kind"), str((resource.get("metadata") or {}).get("name", ""))
    for path in sources(directory):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            own = str((doc.get("metadata") or {}).get("name")) if isinstance(doc, dict) else "?"
            if isinstance(doc, dict) and doc.get("kind") == kind and name.endswith(own):
                return os.path.relpath(path)
    return os.path.relpath(directory)


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
        every = [*problems(resource), *cross_problems(resource, resources)]
        found += [f"{origin(directory, resource)}: {label}: {problem}" for problem in every]
    if not found:
        kinds = ", ".join(sorted({str(resource.get("kind")) for resource in resources}))
        print(f"{name}: {len(resources)} resources valid ({kinds})")
    return found


def main(arguments: list[str]) -> int:
    directories = [Path(argument).resolve() for argument in arguments] or kustomizations()
    # A fault in a base shows in every overlay of it: each once.
    found = list(dict.fromkeys(p for directory in directories for p in check(directory)))
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

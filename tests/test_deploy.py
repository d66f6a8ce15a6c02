"""The Kubernetes manifests in deploy/: every kustomization renders and validates, the defaults
match the server they run, and a broken manifest fails validation with the field named."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from .conftest import ROOT

DEPLOY = ROOT / "deploy"


def load_script(path: Path) -> ModuleType:
    """A script of the project (not in a package), imported from its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validate = load_script(DEPLOY / "validate.py")


def rendered(directory: str) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = validate.build(DEPLOY / directory)
    return resources


def one(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = (resource for resource in resources if resource["kind"] == kind)
    return found


def test_every_kustomization_renders_and_validates(capsys: pytest.CaptureFixture[str]) -> None:
    directories = validate.kustomizations()
    names = {path.relative_to(DEPLOY).as_posix() for path in directories}
    assert {"base", "overlays/dev", "overlays/prod", "kserve"} <= names
    assert "dask" in names  # [dask]
    assert validate.main([]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.count("resources valid") == len(directories)


def test_overlays_set_image_replicas_and_resources() -> None:
    """The autoscaler alone sets the pod count: a Deployment's `replicas` beside it would reset
    the count on every apply."""
    dev, prod = rendered("overlays/dev"), rendered("overlays/prod")
    for resources, tag, replicas in ((dev, ":dev", 1), (prod, ":0.1.0", 3)):
        deployment = one(resources, "Deployment")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"].endswith(tag)
        assert "replicas" not in deployment["spec"]
        assert one(resources, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == replicas
    limits = [
        one(resources, "Deployment")["spec"]["template"]["spec"]["containers"][0]["resources"]
        for resources in (dev, prod)
    ]
    assert limits[0] != limits[1]


def containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) of the server in every kustomization."""
    return [
        (pod, container)
        for directory in validate.kustomizations()
        for resource in validate.build(directory)
        if resource["kind"] in ("Deployment", "InferenceService")
        for _, pod in validate.pods(resource)
        for container in pod["containers"]
    ]


def test_every_server_runs_hardened() -> None:
    for pod, container in containers():
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= set(container["resources"])
        assert {mount["mountPath"] for mount in container["volumeMounts"]} == {"/tmp"}
        assert {"startupProbe", "livenessProbe", "readinessProbe"} & set(container)


def test_prometheus_scrapes_the_servers_metrics_on_its_port(api: TestClient) -> None:
    deployment = one(rendered("overlays/prod"), "Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == container["ports"][0]["containerPort"]
    assert api.get(annotations["prometheus.io/path"]).text.startswith("# HELP")


def set_path(document: dict[str, Any], path: str, value: Any) -> None:
    """Set (or with None, delete) a field by its dotted path."""
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is None:
        del node[key]
    else:
        node[key] = value


BROKEN = {
    "unknown field in a Deployment": (
        "base/deployment.yaml",
        "spec.template.spec.containers.0.imagePulPolicy",
        "Always",
        "imagePulPolicy",
    ),
    "wrong type in a Deployment": (
        "base/deployment.yaml",
        "spec.revisionHistoryLimit",
        "five",
        "spec.revisionHistoryLimit",
    ),
    "missing required field in a Service": (
        "base/service.yaml",
        "spec.ports.0.port",
        None,
        "'port' is a required property",
    ),
    "unknown field in the InferenceService": (
        "kserve/inferenceservice.yaml",
        "spec.predictor.minReplica",
        1,
        "minReplica",
    ),
    "wrong type in the InferenceService": (
        "kserve/inferenceservice.yaml",
        "spec.predictor.scaleTarget",
        "seventy",
        "spec.predictor.scaleTarget",
    ),
    "missing required field in the InferenceService": (
        "kserve/inferenceservice.yaml",
        "spec.predictor.containers.0.name",
        None,
        "'name' is a required property",
    ),
    # What the schemas let through, and a cluster or KServe would refuse or silently change.
    "a container without an image": (
        "base/deployment.yaml",
        "spec.template.spec.containers.0.image",
        None,
        "containers[0].image: missing",
    ),
    "a limit that is not a quantity": (
        "base/deployment.yaml",
        "spec.template.spec.containers.0.resources.limits.cpu",
        "one",
        "resources.limits.cpu: 'one' is not a quantity",
    ),
    "a misspelt KServe mode": (
        "kserve/inferenceservice.yaml",
        "metadata.annotations",
        {"serving.kserve.io/deploymentMode": "RawDeploymnet"},
        "deploymentMode: 'RawDeploymnet' is not one of",
    ),
    "a misspelt KServe annotation": (
        "kserve/inferenceservice.yaml",
        "metadata.annotations",
        {"serving.kserve.io/deploymentMod": "Standard"},
        "serving.kserve.io/deploymentMod: unknown to KServe: did you mean deploymentMode?",
    ),
    "a Service whose target port names no port": (
        "base/service.yaml",
        "spec.ports.0.targetPort",
        "htp",
        "spec.ports[0].targetPort: 'htp' names no container port",
    ),
    "an autoscaler whose target names no Deployment": (
        "base/hpa.yaml",
        "spec.scaleTargetRef.name",
        "mlops-templat",
        "spec.scaleTargetRef: no Deployment named",
    ),
    "a bad value an overlay overwrites": (
        "base/hpa.yaml",
        "spec.minReplicas",
        "two",
        "spec.minReplicas",
    ),
    "a startup probe on no route": (
        "base/deployment.yaml",
        "spec.template.spec.containers.0.startupProbe.httpGet.path",
        "/health/lve",
        "startupProbe.httpGet.path: '/health/lve' is not a route of the server",
    ),
    "a probe on no port": (
        "kserve/inferenceservice.yaml",
        "spec.predictor.containers.0.readinessProbe.httpGet.port",
        8000,
        "readinessProbe.httpGet.port: 8000 names no port of the container",
    ),
    "a server port the container does not open": (
        "base/deployment.yaml",
        "spec.template.spec.containers.0.env.1.value",
        "8001",
        "ports: none is MLOPS_TEMPLATE_PORT (8001)",
    ),
    "a setting the server does not read": (
        "base/deployment.yaml",
        "spec.template.spec.containers.0.env.0.name",
        "MLOPS_TEMPLATE_HOSTNAME",
        "env.MLOPS_TEMPLATE_HOSTNAME: not a setting of the server",
    ),
    "a setting of the wrong type": (
        "kserve/inferenceservice.yaml",
        "spec.predictor.containers.0.env.3.value",
        "one",
        "env.MLOPS_TEMPLATE_THREADS: Input should be a valid integer",
    ),
    "onnxruntime's telemetry left on": (
        "base/deployment.yaml",
        "spec.template.spec.containers.0.env.5",
        None,
        "env.ORT_DISABLE_TELEMETRY: must be",
    ),
    "a grace period shorter than the drain": (
        "base/deployment.yaml",
        "spec.template.spec.terminationGracePeriodSeconds",
        30,
        "terminationGracePeriodSeconds: 30 s is not above the preStop pause (5 s)",
    ),
}


@pytest.mark.parametrize(("file", "path", "value", "named"), BROKEN.values(), ids=list(BROKEN))
def test_a_broken_manifest_fails_with_the_field_named(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    file: str,
    path: str,
    value: Any,
    named: str,
) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    manifest = copy / file
    document = yaml.safe_load(manifest.read_text())
    set_path(document, path, value)
    manifest.write_text(yaml.safe_dump(document))
    assert validate.main([str(d) for d in validate.kustomizations(copy)]) == 1
    err = capsys.readouterr().err
    assert named in err
    assert all(line.split(": ")[0].endswith(file) for line in err.splitlines()), err


def test_a_kind_without_a_schema_is_refused_not_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - job.yaml\n")
    job = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    assert validate.main([str(tmp_path)]) == 1
    assert "no schema for Widget (example.com/v1)" in capsys.readouterr().err


def test_a_kustomization_that_does_not_build_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    assert validate.main([str(tmp_path)]) == 1
    assert "kustomize failed" in capsys.readouterr().err


def test_the_kind_smoke_says_what_it_needs_where_docker_or_kind_is_missing() -> None:
    bin_dir = Path(sys.executable).parent  # python and kubectl, never docker nor kind
    assert shutil.which("docker", path=str(bin_dir)) is None
    done = subprocess.run(
        [sys.executable, ROOT / ".ci" / "kind_smoke.py"],
        env={**os.environ, "PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "docker and kind not found: this needs a Docker engine and kind" in done.stderr


def test_the_workflow_runs_make_targets_and_the_smoke_probes_the_images_card() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "kubernetes.yml").read_text())
    runs = [step["run"] for step in workflow["jobs"]["kind"]["steps"] if "run" in step]
    assert runs[-1] == "make k8s-smoke"
    makefile = (ROOT / "Makefile").read_text()
    for command in runs:
        for target in command.split()[1:]:
            assert f"\n{target}:" in makefile, target
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "models/current/model.json /app/models/" in dockerfile  # where the probe reads it


@pytest.mark.e2e
def test_the_smoke_probe_predicts_through_a_live_server(trained_dir: Path, tmp_path: Path) -> None:
    from mlops_template._fs import current_version

    from .test_serving_live import serving

    probe = load_script(ROOT / ".ci" / "kind_smoke.py").PROBE
    card = current_version(trained_dir) / "model.json"
    with serving(trained_dir, tmp_path) as server:
        done = subprocess.run(
            [sys.executable, "-c", probe, f"{server.url}/predict", str(card)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("200 ")

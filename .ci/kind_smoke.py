"""The serving image on a real Kubernetes cluster, end to end.

Builds the image, starts a kind cluster, loads the image into it, applies the dev overlay, waits
for the rollout (the readiness probe passes only once the model answered a smoke prediction),
then sends the model card's example row to /predict through the Service, from a pod inside the
cluster. The cluster is deleted at the end (KEEP_CLUSTER=1 keeps it).

Needs Docker and kind (GitHub's hosted runners have both; the `kubernetes` workflow runs this)
and a trained model (`make train`). `make k8s-smoke` runs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
OVERLAY = "deploy/overlays/dev"
CARD = Path("models/current/model.json")
# Run in a pod of the image itself (it has Python and the model card): POST the card's example
# to the URL, print the answer, fail unless it is 200 with one prediction.
PROBE = """
import json, sys, urllib.request
url, card = sys.argv[1], json.load(open(sys.argv[2]))
body = json.dumps({"records": [card["example"]]}).encode()
request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=30) as answer:
    status, result = answer.status, json.load(answer)
print(status, json.dumps(result))
sys.exit(0 if status == 200 and len(result["predictions"]) == 1 else 1)
"""


def run(*command: str) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def validator() -> ModuleType:
    """deploy/validate.py: how this project renders its manifests and finds kubectl."""
    spec = importlib.util.spec_from_file_location("validate", ROOT / "deploy" / "validate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    missing = [tool for tool in ("docker", "kind") if shutil.which(tool) is None]
    if missing:
        print(
            f"k8s-smoke: {' and '.join(missing)} not found: this needs a Docker engine and kind "
            "(GitHub's hosted runners have both; the kubernetes workflow runs it there)",
            file=sys.stderr,
        )
        return 2
    if not (ROOT / CARD).is_file():
        print(f"k8s-smoke: no trained model ({CARD}): run `make train` first", file=sys.stderr)
        return 2
    deploy = validator()
    kubectl = deploy.kubectl()
    resources = deploy.build(ROOT / OVERLAY)
    (deployment,) = (r for r in resources if r["kind"] == "Deployment")
    (service,) = (r for r in resources if r["kind"] == "Service")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    name = deployment["metadata"]["name"]
    url = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/predict"
    cluster = f"{name}-smoke"[:40]
    run("docker", "build", "--tag", image, ".")
    run("kind", "create", "cluster", "--name", cluster, "--wait", "180s")
    try:
        run("kind", "load", "docker-image", image, "--name", cluster)
        run(kubectl, "apply", "--kustomize", OVERLAY)
        run(kubectl, "rollout", "status", f"deployment/{name}", "--timeout=300s")
        run(
            kubectl,
            "run",
            f"{name}-probe",
            f"--image={image}",
            "--image-pull-policy=Never",
            "--restart=Never",
            "--rm",
            "--attach",
            "--quiet",
            "--command",
            "--",
            "python",
            "-c",
            PROBE,
            url,
            "/app/models/model.json",
        )
    except subprocess.CalledProcessError:
        subprocess.run([kubectl, "get", "all"], cwd=ROOT, check=False)
        subprocess.run([kubectl, "describe", f"deployment/{name}"], cwd=ROOT, check=False)
        subprocess.run([kubectl, "logs", f"deployment/{name}", "--tail=50"], cwd=ROOT, check=False)
        raise
    finally:
        if os.environ.get("KEEP_CLUSTER") != "1":
            run("kind", "delete", "cluster", "--name", cluster)
    print(json.dumps({"k8s-smoke": "passed", "image": image, "url": url}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        print(f"k8s-smoke: `{' '.join(map(str, error.cmd))[:200]}` failed", file=sys.stderr)
        sys.exit(1)

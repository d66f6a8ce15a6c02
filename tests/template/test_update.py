"""Projects stay current: `copier update` from one template release to the next keeps users' work.

Each test builds throwaway git repositories of the template at two states (tagged v0.1.0 and
v0.2.0), so nothing depends on this repository's real tag history.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import _template

from .test_scaffold import copy_as_new_repository

pytestmark = pytest.mark.e2e
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def commit_all(repo: Path, message: str, tag: str | None = None) -> None:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", message)
    if tag:
        git(repo, "tag", tag)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def release_v2(template: Path) -> None:
    """The template's next release: it changes files that users also change."""
    edit(template / "template" / "README.md.jinja", "## Quick start", "## Quick start (updated)")
    edit(
        template / "template" / "README.md.jinja",
        "# << project_name >>",
        "# << project_name >> (v2)",
    )
    makefile = template / "template" / "Makefile.jinja"
    edit(makefile, "help: ## Show this help", "help: ## Show this help (and nothing else)")
    edit(
        template / "template" / "pyproject.toml.jinja",
        '"-ra", "--strict-markers"',
        '"-ra", "-q", "--strict-markers"',
    )
    edit(
        template / ".github" / "workflows" / "ci.yml", "timeout-minutes: 60", "timeout-minutes: 45"
    )
    tests = template / "template" / "tests" / "test_schema.py.jinja"
    tests.write_text(
        tests.read_text() + "\n\ndef test_added_in_v2() -> None:\n    assert True is not False\n"
    )
    (template / "template" / "docs").mkdir()
    (template / "template" / "docs" / "operations.md").write_text("# Operations\n\nNew in v2.\n")
    commit_all(template, "v2", tag="v0.2.0")


@pytest.fixture
def template(tmp_path: Path) -> Path:
    repo = copy_as_new_repository(tmp_path / "template-repo")
    git(repo, "tag", "v0.1.0")
    return repo


def copy(template: Path, dest: Path, ref: str | None = "v0.1.0", **answers: Any) -> Path:
    _template.render(template, dest, {"project_name": "Kept Project", **answers}, vcs_ref=ref)
    git(dest, "init", "--quiet", "-b", "main")
    commit_all(dest, "Start from the template")
    return dest


def update(project: Path, ref: str | None = "v0.2.0", **answers: Any) -> None:
    import copier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DirtyLocalWarning from the throwaway template
        copier.run_update(
            str(project),
            data=answers,
            defaults=True,
            overwrite=True,
            skip_answered=True,
            vcs_ref=ref,
            conflict="inline",
            quiet=True,
            unsafe=False,
        )


def make_update(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The project's own `make update`, with this environment's Copier standing in for its .venv."""
    run = f"env PATH={Path(sys.executable).parent}:{os.environ['PATH']}"
    command = [
        "make",
        "--no-print-directory",
        "update",
        f"RUN={run}",
        "VENV=",
        "ARGS=" + " ".join(args),
    ]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)


def conflicts(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "check-conflicts"],
        cwd=project,
        capture_output=True,
        text=True,
    )


def files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file()
        and ".git" not in p.relative_to(root).parts
        and p.name != ".copier-answers.yml"
    }


def test_update_without_local_edits_equals_a_fresh_copy_of_the_new_release(
    template: Path, tmp_path: Path
) -> None:
    project = copy(template, tmp_path / "project")
    release_v2(template)
    update(project)
    fresh = copy(template, tmp_path / "fresh", ref="v0.2.0")
    assert files(project) == files(fresh)
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v0.2.0"


def test_update_keeps_every_line_the_user_wrote(template: Path, tmp_path: Path) -> None:
    project = copy(template, tmp_path / "project")
    package = project / "src" / "kept_project"
    added: dict[str, list[str]] = {}

    def add(path: str, lines: list[str], *, after: str | None = None) -> None:
        target = project / path
        text = target.read_text() if target.exists() else ""
        block = "\n".join(lines) + "\n"
        text = text.replace(after, after + block, 1) if after else text + block
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        added.setdefault(path, []).extend(lines)

    # 1. an edited line in a rendered file (the template edits the same line: a conflict)
    edit(project / "README.md", "# Kept Project", "# Kept Project, our fork")
    added["README.md"] = ["# Kept Project, our fork"]
    # 2. a README section of the user's own
    add("README.md", ["## Our runbook", "", "Call the on-call engineer."])
    # 3. a new file
    add("notes/ideas.md", ["# Ideas", "", "- try gradient boosting"])
    # 4. a deleted file (that the template changes in v2)
    (project / "tests" / "test_schema.py").unlink()
    # 5. a new Makefile target
    add("Makefile", ["", "docs: ## Build the docs", "\t@echo building docs"])
    # 6. an added dependency
    add("pyproject.toml", ['    "httpx2>=2.16",'], after="dependencies = [\n")
    # 7. the user's own module in the package
    add("src/kept_project/features.py", ['"""Our own features."""', "", "RATIO = 0.5"])
    # 8. an edited workflow step
    add(".github/workflows/ci.yml", ["      - name: our smoke step", "        run: echo smoke"])
    # 9. a replaced dataset and its schema
    (project / "data" / "raw" / "penguins.csv").write_text("species,island\nAdelie,Dream\n")
    edit(project / "dataset.toml", 'name = "penguins"', 'name = "our-penguins"')
    added["dataset.toml"] = ['name = "our-penguins"']
    # 10. a trained model (ignored by git, but on disk)
    (project / "models").mkdir()
    (project / "models" / "model.onnx").write_bytes(b"our model")
    # 11. an edited test
    add("tests/test_project.py", ["", "", "def test_ours() -> None:", "    assert 1 + 1 == 2"])
    commit_all(project, "Our work")
    assert (package / "features.py").is_file()

    release_v2(template)
    result = make_update(project, "--vcs-ref", "v0.2.0", "--defaults")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Review with 'git status' and 'git diff'" in result.stdout

    for path, lines in added.items():
        text = (project / path).read_text()
        missing = [line for line in lines if line not in text.splitlines()]
        assert missing == [], f"{path} lost {missing}"
    assert not (project / "tests" / "test_schema.py").exists()
    assert (
        project / "data" / "raw" / "penguins.csv"
    ).read_text() == "species,island\nAdelie,Dream\n"
    assert (project / "models" / "model.onnx").read_bytes() == b"our model"
    assert (project / "docs" / "operations.md").is_file()
    assert "timeout-minutes: 45" in (project / ".github" / "workflows" / "ci.yml").read_text()
    assert "help: ## Show this help (and nothing else)" in (project / "Makefile").read_text()
    assert not list(project.rglob("*.rej"))
    # The README's title was changed on both sides: the conflict is inline, and blocks lint.
    readme = (project / "README.md").read_text()
    assert "<<<<<<< before updating" in readme
    failed = conflicts(project)
    assert failed.returncode != 0
    assert "README.md" in failed.stdout + failed.stderr
    resolved = [
        line
        for line in readme.splitlines()
        if not line.startswith(("<<<<<<<", "=======", ">>>>>>>"))
    ]
    (project / "README.md").write_text("\n".join(resolved) + "\n")
    assert conflicts(project).returncode == 0, conflicts(project).stdout


def test_update_refuses_a_dirty_tree(template: Path, tmp_path: Path) -> None:
    project = copy(template, tmp_path / "project")
    release_v2(template)
    edit(project / "README.md", "# Kept Project", "# Kept Project, uncommitted")
    result = make_update(project, "--vcs-ref", "v0.2.0", "--defaults")
    assert result.returncode != 0
    assert "dirty" in (result.stdout + result.stderr).lower()
    assert "# Kept Project, uncommitted" in (project / "README.md").read_text()
    assert not (project / "docs").exists()


def test_a_template_without_tags_updates_to_its_latest_commit(tmp_path: Path) -> None:
    template = copy_as_new_repository(tmp_path / "untagged")
    project = copy(template, tmp_path / "project", ref=None)
    release_v2(template)
    git(template, "tag", "--delete", "v0.2.0")
    update(project, ref=None)
    assert (project / "docs" / "operations.md").is_file()


def test_an_answer_can_change_on_update(template: Path, tmp_path: Path) -> None:
    project = copy(template, tmp_path / "project")
    assert (project / "Dockerfile").is_file()
    release_v2(template)
    update(project, include_docker=False)
    assert not (project / "Dockerfile").exists()
    assert not (project / "tests" / "test_container.py").exists()
    assert "hadolint" not in (project / "Makefile").read_text()
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["include_docker"] is False

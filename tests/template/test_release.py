"""Releases: the version lives in pyproject.toml, its notes in CHANGELOG.md, tags are vX.Y.Z."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .conftest import ROOT, render
from .test_update import commit_all, git, update

NOTES = [sys.executable, str(ROOT / "scripts" / "release_notes.py")]


def test_the_current_version_has_release_notes() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = subprocess.run(NOTES, capture_output=True, text=True, check=True)
    assert "Manual steps on update:" in result.stdout
    assert f"## [{version}]" in (ROOT / "CHANGELOG.md").read_text()


@pytest.mark.parametrize(
    ("version", "message"), [("9.9.9", "no section for 9.9.9"), ("1.0", "is not X.Y.Z")]
)
def test_a_version_without_notes_or_of_the_wrong_form_fails(version: str, message: str) -> None:
    result = subprocess.run([*NOTES, version], capture_output=True, text=True)
    assert result.returncode == 1
    assert message in result.stderr


def test_generated_projects_can_update_and_check_for_conflicts(tmp_path: Path) -> None:
    project = render(tmp_path / "project", project_name="Release Project")
    makefile = (project / "Makefile").read_text()
    assert "bash .ci/update" in makefile
    assert (
        "copier update --conflict inline --skip-answered"
        in (project / ".ci" / "update").read_text()
    )
    assert "lint: check-conflicts" in makefile
    assert (project / "project.mk").is_file()
    assert not (project / "CHANGELOG.md").exists()
    assert not (project / ".github" / "workflows" / "release.yml").exists()
    readme = (project / "README.md").read_text()
    assert "make update" in readme


@pytest.mark.e2e
def test_the_previous_release_updates_to_head_and_passes_make_all(tmp_path: Path) -> None:
    tags = subprocess.run(
        ["git", "tag", "--list", "v*", "--sort=-v:refname"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not tags:
        pytest.skip(
            "no release tag in this clone yet: the release workflow tags the first push to main"
        )
    project = render(tmp_path / "project", vcs_ref=tags[0])
    git(project, "init", "--quiet", "-b", "main")
    commit_all(project, "Start from the previous release")
    update(project, ref="HEAD")
    result = subprocess.run(
        ["make", "all"], cwd=project, capture_output=True, text=True, timeout=1500
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

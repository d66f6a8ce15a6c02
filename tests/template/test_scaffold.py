"""`make new` and the "Use this template" render: refusals, one-line errors, a real render."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from scripts import _template

from .conftest import ROOT


def new(*args: str) -> subprocess.CompletedProcess[str]:
    """new_project.py on this clone, uncommitted changes allowed (a test runs in a dirty tree
    too; the refusal of one is tested on a copy, in test_update.py)."""
    command = [sys.executable, str(ROOT / "scripts" / "new_project.py"), "--allow-dirty", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_new_refuses_a_non_empty_destination_before_writing(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = new(str(tmp_path))
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f"error: {tmp_path} exists and is not empty; choose a new folder"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_new_turns_a_bad_answer_into_one_line(tmp_path: Path) -> None:
    result = new(str(tmp_path / "project"), "--data", "package_name=json")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith('error: package_name: "json" would shadow')
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "project").exists()


def test_new_renders_the_working_tree(tmp_path: Path) -> None:
    result = new(
        str(tmp_path / "project"),
        *("--name", "Question Service", "--data", "task=text_classification", "--no-bring-up"),
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "project" / "src" / "question_service" / "serving" / "app.py").is_file()
    assert (tmp_path / "project" / "data" / "raw" / "questions.csv").is_file()


def test_make_new_passes_the_name_and_the_task_on() -> None:
    dry = subprocess.run(
        ["make", "-n", "new", "DEST=../elsewhere", "NAME=My Model", "TASK=text_classification"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = dry.stdout.replace("\\\n", " ").splitlines()  # the recipe's lines, joined
    command = next(line for line in lines if "new_project.py" in line)
    assert '--name "My Model"' in command
    assert '--data "task=text_classification"' in command
    dry = subprocess.run(
        ["make", "-n", "new", "DEST=../x", "NAME=Модель", "SLUG=model", "PACKAGE=model_app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = dry.stdout.replace("\\\n", " ").splitlines()
    command = next(line for line in lines if "new_project.py" in line)
    assert '--data "project_slug=model"' in command
    assert '--data "package_name=model_app"' in command
    assert "--allow-dirty" not in command


def test_a_name_with_no_latin_letters_is_told_to_give_slug(tmp_path: Path) -> None:
    result = new(str(tmp_path / "project"), "--name", "Модель", "--no-bring-up")
    assert result.returncode == 1
    assert "give one: lower-case letters, digits and single hyphens (e.g. SLUG=my-project)" in (
        result.stderr
    )
    made = new(
        str(tmp_path / "project"),
        *("--name", "Модель", "--data", "project_slug=model", "--no-bring-up"),
    )
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "project" / "src" / "model" / "cli.py").is_file()


def copy_as_new_repository(dest: Path, source: Path = ROOT) -> Path:
    """This working tree (or `source`'s), committed in a fresh git repository, as GitHub would
    make it."""
    _template.copy_working_tree(dest, source)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "--quiet", "-b", "main"], cwd=dest, check=True)
    subprocess.run(["git", "add", "--all"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "Initial commit"], cwd=dest, check=True)
    return dest


def test_new_refuses_an_empty_name_rather_than_using_the_default(tmp_path: Path) -> None:
    for name in ("", "   "):
        result = new(str(tmp_path / "project"), "--name", name, "--no-bring-up")
        assert result.returncode == 2
        assert result.stderr.strip().startswith("error: NAME is empty")
        assert not (tmp_path / "project").exists()


def test_use_this_template_renders_the_new_repository_under_its_own_name(tmp_path: Path) -> None:
    repo = copy_as_new_repository(tmp_path / "penguin-service")
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    command = [
        sys.executable,
        str(ROOT / "scripts" / "render_self.py"),
        "--repository",
        "acme/penguin-service",
        "--path",
        str(repo),
        "--template-url",
        "https://github.com/acme/mlops-template.git",
        "--commit",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (repo / "src" / "penguin_service" / "cli.py").is_file()
    assert not (repo / "src" / "mlops_template").exists()
    for gone in ("copier.yml", "template", "scripts", "generator.mk", "tests/template"):
        assert not (repo / gone).exists(), gone
    assert (repo / ".github" / "workflows" / "template-render.yml").is_file()
    answers = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    assert answers["project_name"] == "penguin-service"
    assert answers["github_owner"] == "acme"
    assert answers["_src_path"] == "https://github.com/acme/mlops-template.git"
    log = subprocess.run(
        ["git", "log", "--format=%s"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert log.stdout.splitlines()[0] == "Render from mlops-template as acme/penguin-service"
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""
    again = subprocess.run(command[:-1], capture_output=True, text=True, timeout=60)
    assert "already rendered, nothing to do" in again.stdout

"""Projects stay current: `copier update` from one template release to the next keeps users' work.

Each test builds throwaway git repositories of the template at two states (tagged v0.1.0 and
v0.2.0), so nothing depends on this repository's real tag history.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import _template

from .conftest import UV
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
    ci = template / "template" / ".github" / "workflows" / "ci.yml.jinja"
    edit(ci, "timeout-minutes: 60", "timeout-minutes: 45")
    tests = template / "template" / "tests" / "test_schema.py.jinja"
    tests.write_text(
        tests.read_text() + "\n\ndef test_added_in_v2() -> None:\n    assert True is not False\n"
    )
    (template / "template" / "docs").mkdir()
    (template / "template" / "docs" / "operations.md").write_text("# Operations\n\nNew in v2.\n")
    commit_all(template, "v2", tag="v0.2.0")


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """This template as a repository of its own, its release called v0.1.0 whatever this
    repository's version is (the tests below name the next one v0.2.0)."""
    repo = copy_as_new_repository(tmp_path / "template-repo")
    pyproject = repo / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    if version != "0.1.0":
        edit(pyproject, f'version = "{version}"', 'version = "0.1.0"')
        commit_all(repo, "Call this release 0.1.0")
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
        f"UV={UV}",
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
    # The README's title was changed on both sides: `make update` names the conflict, and fails.
    assert result.returncode != 0, result.stdout + result.stderr
    assert "  README.md: 1 conflict, each between <<<<<<< and >>>>>>>" in result.stderr
    assert "then run 'make lock'" in result.stderr

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
    assert "hadolint Dockerfile" not in (project / "Makefile").read_text()
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["include_docker"] is False


def release_v2_with_the_projects_files(template: Path) -> None:
    """A release that changes what users change too: a dependency (and so the lock), the
    template's own version, and a Makefile target; made the way the template's maintainers
    make one (edit this repository's files, `uv lock`, `make sync-template`)."""
    version = tomllib.loads((template / "pyproject.toml").read_text())["project"]["version"]
    major, minor, _ = version.split(".")
    edit(
        template / "pyproject.toml",
        f'version = "{version}"',
        f'version = "{major}.{int(minor) + 1}.0"',
    )
    edit(
        template / "pyproject.toml",
        '    "orjson>=3.10",\n',
        '    "orjson>=3.10",\n    "certifi>=2024.2",\n',
    )
    edit(  # after the last target, where a user would have appended one too
        template / "Makefile",
        "\t\t.ruff_cache .hypothesis .bench\n",
        "\t\t.ruff_cache .hypothesis .bench\n\n.PHONY: docs\ndocs: ## Build the docs\n\t@echo docs\n",
    )
    subprocess.run([UV, "lock", "--quiet"], cwd=template, check=True, timeout=300)
    sync = [sys.executable, str(template / "scripts" / "sync_template.py")]
    subprocess.run(sync, cwd=template, check=True, capture_output=True)
    commit_all(template, "v2: certifi, docs target, 0.2.0", tag="v0.2.0")


def test_an_update_after_uv_add_keeps_both_sides_and_a_consistent_lock(
    template: Path, tmp_path: Path
) -> None:
    project = copy(template, tmp_path / "project")
    edit(project / "pyproject.toml", 'version = "0.1.0"', 'version = "1.4.0"')
    subprocess.run([UV, "add", "--no-sync", "--quiet", "idna>=3"], cwd=project, check=True)
    own = project / "project.mk"  # where the README says a project's own targets go
    own.write_text(own.read_text() + "\n.PHONY: deploy\ndeploy: ## Ship it\n\t@echo deploy\n")
    commit_all(project, "Our dependency, version and target")
    ours = own.read_text()

    release_v2_with_the_projects_files(template)
    result = make_update(project, "--vcs-ref", "v0.2.0", "--defaults")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Review with 'git status' and 'git diff'" in result.stdout

    pyproject = (project / "pyproject.toml").read_text()
    lock = (project / "uv.lock").read_text()
    assert 'version = "1.4.0"' in pyproject  # the project's version is the project's
    assert '"idna>=3"' in pyproject
    assert '"certifi>=2024.2"' in pyproject
    assert 'name = "idna"' in lock
    assert 'name = "certifi"' in lock
    checked = subprocess.run([UV, "lock", "--check"], cwd=project, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "docs: ## Build the docs" in (project / "Makefile").read_text()
    assert own.read_text() == ours
    assert conflicts(project).returncode == 0, conflicts(project).stderr
    targets = subprocess.run(["make", "-n", "docs", "deploy"], cwd=project, capture_output=True)
    assert targets.returncode == 0, targets.stderr
    listed = subprocess.run(["make", "help"], cwd=project, capture_output=True, text=True)
    assert "Ship it" in listed.stdout


def test_an_update_that_conflicts_in_pyproject_reports_each_file_and_locks_once_resolved(
    template: Path, tmp_path: Path
) -> None:
    """uv cannot read a pyproject.toml with markers: `make update` names every conflicted file
    before it would lock, and `make lock` locks once the user has resolved them."""
    project = copy(template, tmp_path / "project")
    # A comment makes it more than two dependency lists: a conflict only the user can resolve.
    edit(
        project / "pyproject.toml",
        '    "orjson>=3.10",\n',
        '    "orjson>=3.10.7",  # our parser needs it\n',
    )
    edit(  # a target appended to the Makefile rather than project.mk, where the release adds one
        project / "Makefile",
        "\t\t.ruff_cache .hypothesis .bench\n",
        "\t\t.ruff_cache .hypothesis .bench\n\n.PHONY: ours\nours:\n\t@echo ours\n",
    )
    commit_all(project, "Our floor and our target, where the template changes too")

    release_v2_with_the_projects_files(template)
    result = make_update(project, "--vcs-ref", "v0.2.0", "--defaults")
    assert result.returncode != 0
    report = result.stderr
    assert "TOML parse error" not in report
    assert "  Makefile: 1 conflict, each between <<<<<<< and >>>>>>>" in report
    assert "  pyproject.toml: 1 conflict, each between <<<<<<< and >>>>>>>" in report
    assert "make cannot read the Makefile until its conflicts are resolved" in report
    assert "Updated." not in result.stdout

    for path in ("pyproject.toml", "Makefile"):  # keep both sides
        text = (project / path).read_text().splitlines(keepends=True)
        kept = [line for line in text if not line.startswith(("<<<<<<<", "=======", ">>>>>>>"))]
        (project / path).write_text("".join(kept).replace('    "orjson>=3.10",\n', ""))
    assert "# our parser needs it" in (project / "pyproject.toml").read_text()
    locked = subprocess.run(
        ["make", "--no-print-directory", "lock", f"UV={UV}"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert locked.returncode == 0, locked.stdout + locked.stderr
    pyproject = (project / "pyproject.toml").read_text()
    assert '"orjson>=3.10.7"' in pyproject
    assert '"certifi>=2024.2"' in pyproject
    checked = subprocess.run([UV, "lock", "--check"], cwd=project, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert 'name = "certifi"' in (project / "uv.lock").read_text()


def test_dependency_lists_changed_on_both_sides_merge_with_the_higher_floor(
    template: Path, tmp_path: Path
) -> None:
    """The project raised a floor on the line where the release adds a dependency: a conflict
    of two dependency lists, which `make update` resolves (both kept, the higher floor)."""
    project = copy(template, tmp_path / "project")
    edit(project / "pyproject.toml", '    "orjson>=3.10",\n', '    "orjson>=3.10.7",\n')
    commit_all(project, "Our floor for orjson")
    release_v2_with_the_projects_files(template)
    result = make_update(project, "--vcs-ref", "v0.2.0", "--defaults")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pyproject.toml: 1 conflict(s) between dependency lists merged" in result.stdout
    pyproject = (project / "pyproject.toml").read_text()
    assert '    "certifi>=2024.2",\n    "orjson>=3.10.7",\n' in pyproject
    assert conflicts(project).returncode == 0
    checked = subprocess.run([UV, "lock", "--check"], cwd=project, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_update_says_why_it_cannot_reach_the_template_in_one_line(tmp_path: Path) -> None:
    project = copy(
        copy_as_new_repository(tmp_path / "template-repo"), tmp_path / "project", ref=None
    )
    answers = project / ".copier-answers.yml"
    answers.write_text(
        re.sub(
            r"(?m)^_src_path: .*$", "_src_path: https://127.0.0.1:9/none.git", answers.read_text()
        )
    )
    commit_all(project, "A template that cannot be reached")
    result = make_update(project, "--defaults")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make")]
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: copier update from https://127.0.0.1:9/none.git failed: ")
    assert lines[1].startswith("hint: check that https://127.0.0.1:9/none.git is reachable")
    assert lines[1].endswith("nothing was changed")
    assert git(project, "status", "--porcelain") == ""

    answers.write_text(re.sub(r"(?m)^_src_path: .*$", "_src_path: .", answers.read_text()))
    result = make_update(project, "--defaults")
    assert result.returncode != 0
    assert "does not record the template it was made from (_src_path: .)" in result.stderr


def test_a_fresh_project_starts_at_its_own_first_version(template: Path, tmp_path: Path) -> None:
    release_v2_with_the_projects_files(template)
    fresh = copy(template, tmp_path / "fresh", ref="v0.2.0")
    assert 'version = "0.1.0"' in (fresh / "pyproject.toml").read_text()
    checked = subprocess.run([UV, "lock", "--check"], cwd=fresh, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_conflict_check_runs_when_the_makefile_itself_holds_markers(
    template: Path, tmp_path: Path
) -> None:
    project = copy(template, tmp_path / "project")
    makefile = project / "Makefile"
    makefile.write_text("<<<<<<< before updating\nold:\n=======\nnew:\n>>>>>>> after updating\n")
    assert subprocess.run(["make", "help"], cwd=project, capture_output=True).returncode != 0
    found = subprocess.run(
        ["bash", ".ci/check-conflicts"], cwd=project, capture_output=True, text=True
    )
    assert found.returncode == 1
    assert "unresolved update conflicts" in found.stderr
    assert "Makefile" in found.stderr
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    steps = [step.get("run", "") for step in workflow["jobs"]["all"]["steps"]]
    assert steps.index("bash .ci/check-conflicts") < steps.index("make all")


@pytest.mark.parametrize("slug", ["aaa-first", "zzz-last"])
def test_the_rendered_lock_is_what_uv_writes(tmp_path: Path, slug: str) -> None:
    """uv sorts the lock by name: a project whose name sorts anywhere gets the lock uv itself
    would write, so the first `uv add` moves nothing that an update would then conflict on."""
    project = _template.render(
        _template.ROOT, tmp_path / slug, {"project_name": slug, "include_docker": False}
    )
    rendered = (project / "uv.lock").read_bytes()
    for command in ("add", "remove"):
        subprocess.run([UV, command, "--no-sync", "--quiet", "idna"], cwd=project, check=True)
    assert (project / "uv.lock").read_bytes() == rendered


CANONICAL = _template.template_url()
IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def serve_template_at_its_url(monkeypatch: pytest.MonkeyPatch, template: Path) -> None:
    """git (and so Copier, in the processes started after this) fetches the template's canonical
    URL from `template`, as it would from GitHub: the projects below record only that URL.
    (Copier in this process would not see it: plumbum copies the environment at import.)"""
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{template}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", f"{CANONICAL}.git")


def make_new(template: Path, project: Path, *args: str) -> Path:
    """`make new` from the clone `template`, rendering only: it makes the first commit too."""
    script = template / "scripts" / "new_project.py"
    command = [sys.executable, str(script), str(project), "--name", "Kept Project", "--no-bring-up"]
    made = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **IDENTITY},
    )
    assert made.returncode == 0, made.stderr
    assert git(project, "status", "--porcelain") == ""
    assert git(project, "log", "--format=%s").startswith("Start from mlops-template ")
    return project


def test_make_new_from_a_commit_past_a_release_records_it_and_updates_with_no_conflict(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit(template / "template" / "README.md.jinja", "## Quick start", "## Quick start (since)")
    commit_all(template, "A change after v0.1.0, not yet released")
    project = make_new(template, tmp_path / "made")
    head = git(template, "rev-parse", "HEAD").strip()
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == f"v0.1.0-1-g{head}"

    release_v2(template)
    serve_template_at_its_url(monkeypatch, template)
    result = make_update(project, "--vcs-ref", "v0.2.0", "--defaults")
    assert result.returncode == 0, result.stdout + result.stderr
    assert conflicts(project).returncode == 0
    assert "## Quick start (updated)" in (project / "README.md").read_text()


def test_make_new_refuses_uncommitted_changes_unless_asked_and_records_a_forks_address(
    template: Path, tmp_path: Path
) -> None:
    git(template, "remote", "add", "origin", "https://github.com/a-fork/mlops-template.git")
    edit(template / "template" / "README.md.jinja", "## Quick start", "## Quick start (draft)")
    script = template / "scripts" / "new_project.py"
    refused = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "refused"), "--no-bring-up"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "error: the template has uncommitted changes (template/README.md.jinja)\nhint: "
    )
    assert not (tmp_path / "refused").exists()
    project = make_new(template, tmp_path / "draft", "--allow-dirty")
    assert "## Quick start (draft)" in (project / "README.md").read_text()
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == "https://github.com/a-fork/mlops-template.git"


def test_a_project_made_by_make_new_updates_after_the_clone_moves(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_new(template, tmp_path / "made")
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == CANONICAL
    assert answers["_commit"] == "v0.1.0"

    moved = template.rename(tmp_path / "moved-clone")  # the clone the project came from moves
    release_v2(moved)
    serve_template_at_its_url(monkeypatch, moved)
    result = make_update(project, "--vcs-ref", "v0.2.0", "--defaults")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "docs" / "operations.md").is_file()
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "v0.2.0"


def render_self(repo: Path) -> subprocess.CompletedProcess[str]:
    """The render workflow's step, in `repo`."""
    command = [
        sys.executable,
        str(repo / "scripts" / "render_self.py"),
        "--repository",
        "acme/penguin-service",
        "--path",
        str(repo),
        "--template-url",
        f"{CANONICAL}.git",  # the workflow passes GitHub's clone URL of the template
        "--commit",
    ]
    env = {**os.environ, **IDENTITY}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_a_use_this_template_repository_updates(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made from a template commit that is no release: the render finds the commit whose files
    GitHub copied and records it, so an untouched repository updates with no conflict."""
    edit(template / "template" / "README.md.jinja", "## Quick start", "## Quick start (since)")
    commit_all(template, "A change after v0.1.0, not yet released")
    head = git(template, "rev-parse", "HEAD").strip()
    serve_template_at_its_url(monkeypatch, template)
    # GitHub's copy of that commit, with a history of its own.
    repo = copy_as_new_repository(tmp_path / "penguin-service", template)
    rendered = render_self(repo)
    assert rendered.returncode == 0, rendered.stderr
    answers = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    assert answers["_commit"] == f"v0.1.0-1-g{head}"  # the template's, not this repository's

    release_v2(template)
    result = make_update(repo, "--vcs-ref", "v0.2.0", "--defaults")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (repo / "docs" / "operations.md").is_file()
    assert conflicts(repo).returncode == 0

    edited = copy_as_new_repository(tmp_path / "edited", template)
    edit(edited / "template" / "README.md.jinja", "(since)", "(ours)")
    git(edited, "add", "--all")
    git(edited, "commit", "--quiet", "--amend", "-m", "Files no template commit holds")
    rendered = render_self(edited)
    assert rendered.returncode == 0, rendered.stderr
    assert "warning: no commit of" in rendered.stderr
    assert yaml.safe_load((edited / ".copier-answers.yml").read_text())["_commit"] == "v0.1.0"


TRAIN_LINE = '"""Training: a scikit-learn Pipeline fitted on the prepared data, exported to ONNX'


def train_module(project: Path) -> Path:
    (package,) = (project / "src").iterdir()
    return package / "train.py"


def own_work(project: Path) -> None:
    """What a user does before the release: a version of their own, `uv add`, a target of
    their own, and an edit of a line the release changes too."""
    edit(project / "pyproject.toml", 'version = "0.1.0"', 'version = "1.4.0"')
    subprocess.run([UV, "add", "--no-sync", "--quiet", "idna>=3"], cwd=project, check=True)
    own = project / "project.mk"
    own.write_text(own.read_text() + "\n.PHONY: deploy\ndeploy: ## Ship it\n\t@echo shipped\n")
    edit(
        train_module(project), TRAIN_LINE, TRAIN_LINE.replace("a scikit-learn", "our scikit-learn")
    )
    commit_all(project, "Our version, dependency, target and wording")


def test_a_release_reaches_projects_made_every_way_from_a_commit_past_a_release(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release of the issue on updates: dependency bumps, a new target and a changed line,
    taken by a project made with `copier copy`, with `make new` and by "Use this template",
    each from a commit that is not a release and each with the user's own work. `make update`
    reports the one genuine conflict (the same line changed on both sides), the user resolves
    it, `make lock` and `make all` pass, and the user's work is kept."""
    edit(template / "template" / "README.md.jinja", "## Quick start", "## Quick start (since)")
    commit_all(template, "A change after v0.1.0, not yet released")
    serve_template_at_its_url(monkeypatch, template)
    copied = copy(template, tmp_path / "copied", ref="HEAD")
    made = make_new(template, tmp_path / "made")
    github = copy_as_new_repository(tmp_path / "github", template)
    rendered = render_self(github)
    assert rendered.returncode == 0, rendered.stderr
    projects = {"copier copy": copied, "make new": made, "Use this template": github}
    for project in projects.values():
        own_work(project)

    edit(template / "src" / "mlops_template" / "train.py", TRAIN_LINE, TRAIN_LINE + " (v2)")
    release_v2_with_the_projects_files(template)  # also bumps a floor and adds a target
    for way, project in projects.items():
        result = make_update(project, "--vcs-ref", "v0.2.0", "--defaults")
        assert result.returncode != 0, f"{way}: {result.stdout}{result.stderr}"
        report = [line for line in result.stderr.splitlines() if line.startswith("  ")]
        train = train_module(project)
        assert report == [
            f"  {train.relative_to(project)}: 1 conflict, each between <<<<<<< and >>>>>>>"
        ], f"{way}: {result.stderr}"
        text = train.read_text()
        ours = text[text.index("<<<<<<<") : text.index("=======")].split("\n", 1)[1]
        end = text.index("\n", text.index(">>>>>>>")) + 1
        train.write_text(text[: text.index("<<<<<<<")] + ours + text[end:])

    for way, project in projects.items():  # one at a time: each runs its own test suite
        result = subprocess.run(
            f"make lock UV={UV} && make all UV={UV}",
            shell=True,
            cwd=project,
            env={k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV"}},
            capture_output=True,
            text=True,
            timeout=1500,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{way}: make lock all failed\n{output[-6000:]}"
    for way, project in projects.items():
        pyproject = (project / "pyproject.toml").read_text()
        assert 'version = "1.4.0"' in pyproject, way
        assert '"idna>=3"' in pyproject, way
        assert '"certifi>=2024.2"' in pyproject, way
        assert "Training: our scikit-learn" in train_module(project).read_text(), way
        assert "docs: ## Build the docs" in (project / "Makefile").read_text(), way
        shipped = subprocess.run(["make", "deploy"], cwd=project, capture_output=True, text=True)
        assert shipped.stdout.strip() == "shipped", way

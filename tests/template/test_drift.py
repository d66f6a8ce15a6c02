"""One source of truth: the template rendered with this repository's answers is this repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from scripts import _template

from .conftest import ROOT, render, repository_answers

# Rendered from files written by hand for projects: they differ from this repository's own.
DIFFERENT_BY_DESIGN = ("README.md", ".copier-answers.yml")


def repository_files() -> set[str]:
    return {
        path
        for path in _template.listed_files()
        if (ROOT / path).is_file()
        and not path.startswith(_template.GENERATOR_ONLY)
        and path not in DIFFERENT_BY_DESIGN
    }


def rendered_files(dest: Path) -> set[str]:
    return {
        p.relative_to(dest).as_posix()
        for p in dest.rglob("*")
        if p.is_file() and p.relative_to(dest).as_posix() not in DIFFERENT_BY_DESIGN
    }


def test_template_is_in_sync_with_the_repository() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sync_template.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_rendering_with_this_repositorys_answers_gives_this_repository(tmp_path: Path) -> None:
    dest = render(tmp_path / "project", **repository_answers())
    ours, theirs = repository_files(), rendered_files(dest)
    assert sorted(theirs - ours) == [], "rendered but not in the repository"
    assert sorted(ours - theirs) == [], "in the repository but not rendered"
    different = [
        path for path in sorted(ours) if expected(ROOT / path) != (dest / path).read_bytes()
    ]
    assert different == []


def expected(path: Path) -> bytes:
    """What a render with this repository's answers must hold: the file, less its
    template-only blocks and option markers, at a new project's version."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    return _template.project_text(text, path.relative_to(ROOT).as_posix()).encode("utf-8")


def test_a_project_makefile_names_no_template_plumbing(tmp_path: Path) -> None:
    makefile = (render(tmp_path / "project") / "Makefile").read_text()
    assert "generator.mk" not in makefile
    assert "sync-template" not in makefile
    assert "[if template]" not in makefile


def test_the_answers_file_records_the_answers(tmp_path: Path) -> None:
    answers = repository_answers()
    dest = render(tmp_path / "project", **answers)
    recorded = yaml.safe_load((dest / ".copier-answers.yml").read_text())
    assert {k: v for k, v in recorded.items() if not k.startswith("_")} == answers
    assert recorded["_src_path"]
    assert "reserved_names" not in recorded

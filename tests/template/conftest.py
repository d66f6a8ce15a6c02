"""Rendering the template: the working tree, uncommitted changes included (vcs_ref="HEAD")."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import _template

ROOT = _template.ROOT
# uv as the template's own `make install` has it (on PATH, or bootstrapped into .tools/).
UV = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")


def render(dest: Path, vcs_ref: str | None = "HEAD", **answers: Any) -> Path:
    """Render the template into `dest` with default answers, overridden by `answers`."""
    return _template.render(ROOT, dest, answers, vcs_ref=vcs_ref)


@pytest.fixture(scope="session")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree's files as git sees them, copied once: Copier reads a plain folder
    directly, where a git one is cloned for every render (three times slower to refuse)."""
    return _template.copy_working_tree(tmp_path_factory.mktemp("template"))


def repository_answers() -> dict[str, Any]:
    """This repository's own answers: rendering with them must give the repository back."""
    answers = yaml.safe_load((ROOT / ".copier-answers.yml").read_text())
    return {k: v for k, v in answers.items() if not k.startswith("_")}

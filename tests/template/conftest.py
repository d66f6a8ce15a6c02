"""Rendering the template: the working tree, uncommitted changes included (vcs_ref="HEAD")."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def render(dest: Path, **answers: Any) -> Path:
    """Render the template into `dest` with default answers, overridden by `answers`."""
    import copier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DirtyLocalWarning: testing the working tree is the point
        copier.run_copy(
            str(ROOT),
            str(dest),
            data=answers,
            defaults=True,
            vcs_ref="HEAD",
            quiet=True,
            unsafe=False,
        )
    return dest


def repository_answers() -> dict[str, Any]:
    """This repository's own answers: rendering with them must give the repository back."""
    answers = yaml.safe_load((ROOT / ".copier-answers.yml").read_text())
    return {k: v for k, v in answers.items() if not k.startswith("_")}

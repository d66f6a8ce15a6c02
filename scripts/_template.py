"""What the template's scripts and tests share: the generator's own files, and a render."""

from __future__ import annotations

import re
import subprocess
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# In this repository, never in a project made from it: the template and its own tooling.
GENERATOR_ONLY = (
    "copier.yml",
    "template/",
    "scripts/",
    "tests/template/",
    "generator.mk",
    "CHANGELOG.md",
    ".github/workflows/template-",
    ".github/workflows/release",
    "benchmarks/pandas_baseline.py",
)


_TEMPLATE_ONLY = re.compile(r"(?ms)^[ \t]*# \[if template\]\n.*?^[ \t]*# \[end template\]\n")


def project_text(text: str) -> str:
    """A repository file as a project made from the template has it: without the blocks
    between `# [if template]` and `# [end template]`, which are this repository's own."""
    return _TEMPLATE_ONLY.sub("", text)


def listed_files(root: Path = ROOT) -> list[str]:
    """The files git knows of, or would (tracked, and untracked but not ignored)."""
    return subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()


def render(source: Path, dest: Path, answers: dict[str, Any], vcs_ref: str | None = "HEAD") -> Path:
    """Render the template at `source`; by default its working tree, uncommitted changes too."""
    import copier

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # DirtyLocalWarning: rendering the working tree is the point
        copier.run_copy(
            str(source),
            str(dest),
            data=answers,
            defaults=True,
            vcs_ref=vcs_ref,
            quiet=True,
            unsafe=False,
        )
    return dest

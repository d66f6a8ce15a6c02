"""What the template's scripts and tests share: the generator's own files, and a render."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import tomllib
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
# The options that switch lines: `line  # [docker]`, or `# [if docker]` ... `# [end docker]`.
OPTIONS = {
    "docker": "include_docker",
    "devcontainer": "include_devcontainer",
    "kubernetes": "include_kubernetes",
}
_BLOCK_MARKER = re.compile(rf"(?m)^[ \t]*# \[(?:if|end) (?:{'|'.join(OPTIONS)})\]\n")
_LINE_MARKER = re.compile(rf"(?m)[ \t]+# \[(?:{'|'.join(OPTIONS)})\]$")
# Every project starts at this version, whatever the template's own release is.
PROJECT_VERSION = "0.1.0"
_OWN_VERSION = re.compile(r'(?m)^version = "[^"]*"$')


def project_text(text: str, path: str = "") -> str:
    """A repository file as a project made from the template (with every option on) has it:
    without the blocks between `# [if template]` and `# [end template]`, which are this
    repository's own, without the option markers, and at the project's first version."""
    text = _LINE_MARKER.sub("", _BLOCK_MARKER.sub("", _TEMPLATE_ONLY.sub("", text)))
    if path == "pyproject.toml":
        text = _OWN_VERSION.sub(f'version = "{PROJECT_VERSION}"', text, count=1)
    if path == "uv.lock":
        text = re.sub(
            r'(?m)^(name = "mlops-template"\nversion = )"[^"]*"$', rf'\1"{PROJECT_VERSION}"', text
        )
    return text


def listed_files(root: Path = ROOT) -> list[str]:
    """The files git knows of, or would (tracked, and untracked but not ignored)."""
    return subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()


def copy_working_tree(dest: Path, root: Path = ROOT) -> Path:
    """The files git sees in `root` (uncommitted changes too), copied to `dest`; symlinks stay
    symlinks."""
    for name in listed_files(root):
        source = root / name
        if not (source.exists() or source.is_symlink()):
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        else:
            shutil.copy2(source, target)
    return dest


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


def release_tag(root: Path = ROOT) -> str:
    """The release a working tree is, as the release workflow tags it: `v` and its version."""
    version = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return f"v{version['version']}"


def template_url(root: Path = ROOT) -> str:
    """Where the template itself lives (copier.yml's `template_url`)."""
    import yaml

    config = yaml.safe_load((root / "copier.yml").read_text(encoding="utf-8"))
    return str(config["template_url"]["default"])


def record_source(project: Path, url: str, ref: str) -> None:
    """Point a project's answers file at where `copier update` will find the template later:
    its repository and release tag, not the folder or commit it happened to be rendered from
    (a clone that moves, or a "Use this template" repository's own first commit)."""
    answers = project / ".copier-answers.yml"
    text = answers.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^_src_path: .*$", f"_src_path: {url}", text)
    text = re.sub(r"(?m)^_commit: .*$", f"_commit: {ref}", text)
    with tempfile.NamedTemporaryFile("w", dir=project, delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    Path(tmp.name).replace(answers)

"""One source of truth: the template rendered with this repository's answers is this repository."""

from __future__ import annotations

import re
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


def test_the_generated_readme_documents_every_target_command_and_setting(tmp_path: Path) -> None:
    """The project's README cannot fall behind its code: a render with this repository's
    answers (every option on) names each Make target that has help, each CLI command and each
    setting the rendered project has. (The other way round, that it names nothing the project
    lacks, is `test_render`'s, for every option set.)"""
    dest = render(tmp_path / "project", **repository_answers())
    readme = (dest / "README.md").read_text()
    makefile = (dest / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z0-9-]+):[^\n#]*## ", makefile, re.M))
    undocumented = [t for t in sorted(targets) if not re.search(rf"\bmake {t}\b", readme)]
    assert undocumented == [], "Make targets the README never names"
    package = dest / "src" / "mlops_template"
    commands = re.findall(r"@app\.command\(\)\ndef ([a-z_]+)\(", (package / "cli.py").read_text())
    assert commands
    slug = "mlops-template"
    missing = [c for c in commands if not re.search(rf"\b{slug} {c.replace('_', '-')}\b", readme)]
    assert missing == [], "CLI commands the README never names"
    assert _readme_defaults(readme) == _defaults(), "the README's settings table"


def _defaults() -> dict[str, str]:
    """Each setting's default as the README writes it: sizes in KiB or MiB, no `.0`."""
    from mlops_template.settings import Settings

    shown: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        value = field.default
        if isinstance(value, bool) or value is None:
            text = str(value).lower()
        elif isinstance(value, int) and name.endswith("_bytes"):
            text = f"{value // 2**20} MiB" if value >= 2**20 else f"{value // 2**10} KiB"
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value)
        shown[name] = text
    shown["experiment"] = "the dataset's name"  # None: the dataset's name, as documented
    return shown


def _readme_defaults(readme: str) -> dict[str, str]:
    """The settings table's rows: `| `A` / `B` | a / b | ... |`, a shared default once."""
    found: dict[str, str] = {}
    for names, defaults in re.findall(r"(?m)^\| (`MLOPS_TEMPLATE_.*?) \| (.*?) \|", readme):
        keys = re.findall(r"`MLOPS_TEMPLATE_([A-Z_]+)`", names)
        values = [re.sub(r"(?<=\d) s$", "", v.replace("`", "")) for v in defaults.split(" / ")]
        for key, value in zip(keys, values * len(keys) if len(values) == 1 else values):
            found[key.lower()] = value
    return found

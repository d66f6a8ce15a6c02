"""Every question's validator, and derived defaults that are valid for any reasonable name."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import _template

from .conftest import render

BAD_ANSWERS: list[tuple[str, Any, str]] = [
    *[
        ("project_name", v, m)
        for v, m in [
            ("", "must not be empty"),
            ("   ", "must not be empty"),
            ("two\nlines", "no newlines"),
            ("tab\there", "control characters"),
            ("bell\x07", "control characters"),
            ("x" * 81, "at most 80"),
            ("123 456", "none can be made from project_name"),
            ("日本語", "none can be made from project_name"),
            ("!!!", "none can be made from project_name"),
            ("  padded ", "no leading or trailing spaces"),
            ("null\x00byte", "control characters"),
        ]
    ],
    *[
        ("project_slug", v, m)
        for v, m in [
            ("My-Project", "not a valid name"),
            ("my_project", "not a valid name"),
            ("my project", "not a valid name"),
            ("-leading", "not a valid name"),
            ("trailing-", "not a valid name"),
            ("double--hyphen", "not a valid name"),
            ("1starts-with-digit", "not a valid name"),
            ("", "not a valid name"),
            ("a" * 41, "at most 40"),
            ("dots.in.name", "not a valid name"),
            ("ünïcode", "not a valid name"),
            ("slash/name", "not a valid name"),
        ]
    ],
    *[
        ("package_name", v, m)
        for v, m in [
            ("My_Package", "not a valid package name"),
            ("1package", "not a valid package name"),
            ("my-package", "not a valid package name"),
            ("", "not a valid package name"),
            ("_private", "not a valid package name"),
            ("a" * 25, "at most 24"),
            ("class", "would shadow"),
            ("import", "would shadow"),
            ("json", "would shadow"),
            ("os", "would shadow"),
            ("typing", "would shadow"),
            ("test", "would shadow"),
            ("numpy", "would shadow"),
            ("polars", "would shadow"),
            ("fastapi", "would shadow"),
            ("sklearn", "would shadow"),
            ("pydantic", "would shadow"),
            ("tests", "would shadow"),
            ("my__pkg", "double underscores"),
            ("pkg name", "not a valid package name"),
            ("pkg.sub", "not a valid package name"),
        ]
    ],
    *[
        ("description", v, m)
        for v, m in [
            ("two\nlines", "one line"),
            ("carriage\rreturn", "one line"),
            ("x" * 201, "at most 200"),
            ("esc\x1b[31m", "one line"),
        ]
    ],
    *[
        ("author_name", v, m)
        for v, m in [
            ("", "must not be empty"),
            ("new\nline", "no newlines"),
            ("x" * 101, "at most 100"),
        ]
    ],
    *[
        ("author_email", v, m)
        for v, m in [
            ("not-an-email", "does not look like an email"),
            ("a@b", "does not look like an email"),
            ("@example.com", "does not look like an email"),
            ("a b@example.com", "does not look like an email"),
            ("a@@example.com", "does not look like an email"),
            ("a@example.c", "does not look like an email"),
            ("<a@example.com>", "does not look like an email"),
            ("", "does not look like an email"),
        ]
    ],
    *[
        ("github_owner", v, m)
        for v, m in [
            ("-org", "not a valid GitHub name"),
            ("org-", "not a valid GitHub name"),
            ("my--org", "not a valid GitHub name"),
            ("my_org", "not a valid GitHub name"),
            ("my org", "not a valid GitHub name"),
            ("x" * 40, "not a valid GitHub name"),
            ("", "not a valid GitHub name"),
        ]
    ],
    *[("python_version", v, "python_version") for v in ["3.10", "2.7", "3.14", "latest"]],
    *[("license", v, "license") for v in ["GPL-3.0", "mit", ""]],
    *[("task", v, "task") for v in ["clustering", "Classification", ""]],
]


def test_at_least_sixty_bad_answers_are_tried() -> None:
    assert len(BAD_ANSWERS) >= 60


@pytest.mark.parametrize(
    ("question", "value", "fragment"),
    BAD_ANSWERS,
    ids=[f"{q}={v!r}"[:60] for q, v, _ in BAD_ANSWERS],
)
def test_bad_answer_is_rejected_naming_the_question_and_nothing_is_written(
    snapshot: Path, tmp_path: Path, question: str, value: Any, fragment: str
) -> None:
    dest = tmp_path / "project"
    with pytest.raises(ValueError, match=question) as caught:
        _template.render(snapshot, dest, {question: value}, vcs_ref=None)
    assert fragment in str(caught.value)
    assert not dest.exists()


@pytest.mark.parametrize(
    ("name", "slug", "package"),
    [
        ("My Project 2!", "my-project-2", "my_project_2"),
        ("Penguin Species API", "penguin-species-api", "penguin_species_api"),
        ("json", "json", "json_app"),
        ("Test", "test", "test_app"),
        ("2 Fast 2 Furious", "fast-2-furious", "fast_2_furious"),
        ("Café Übersicht", "cafe-ubersicht", "cafe_ubersicht"),
        ("Zoë's Model", "zoes-model", "zoes_model"),
        ("Straße 5 Łódź", "strasse-5-lodz", "strasse_5_lodz"),
        ("spaced   out", "spaced-out", "spaced_out"),
        (
            "A very long project name that goes on and on and on",
            "a-very-long-project-name-that-goes-on-an",
            "a_very_long_project_name",
        ),
    ],
)
def test_derived_defaults_are_valid(tmp_path: Path, name: str, slug: str, package: str) -> None:
    dest = render(tmp_path / "project", project_name=name)
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text())
    assert (answers["project_slug"], answers["package_name"]) == (slug, package)
    assert (dest / "src" / package / "__init__.py").is_file()


def test_a_name_in_any_script_takes_an_explicit_slug_and_package(tmp_path: Path) -> None:
    dest = render(tmp_path / "project", project_name="名前のモデル", project_slug="namae")
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text())
    assert (answers["project_name"], answers["package_name"]) == ("名前のモデル", "namae")
    assert "# 名前のモデル" in (dest / "README.md").read_text()


def test_awkward_free_text_still_renders_files_that_parse(tmp_path: Path) -> None:
    awkward = "Ünïcødé \"quoted\" \\backslash\\ {{ braces }} <% tag %> << var >> 'single'"
    name = "Zoë's \"Quoted\" \\Model"
    dest = render(
        tmp_path / "project",
        project_name=name,
        project_slug="awkward-project",
        description=awkward,
        author_name=awkward,
        author_email="o'brien+ml@example.co.uk",
    )
    # Written as typed: an accent or an apostrophe is not a \\u escape in the files people read.
    for path in ("pyproject.toml", ".devcontainer/devcontainer.json"):
        assert "\\u" not in (dest / path).read_text(), path
    pyproject = tomllib.loads((dest / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == awkward
    assert pyproject["project"]["authors"] == [
        {"name": awkward, "email": "o'brien+ml@example.co.uk"}
    ]
    assert (
        json.loads((dest / ".devcontainer" / "devcontainer.json").read_text())["name"] == name
    )
    assert yaml.safe_load((dest / ".copier-answers.yml").read_text())["description"] == awkward
    assert awkward in (dest / "README.md").read_text()
    assert awkward in (dest / "LICENSE").read_text()


def test_kubernetes_follows_docker_and_is_refused_without_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="include_kubernetes") as caught:
        render(tmp_path / "refused", include_docker=False, include_kubernetes=True)
    assert "include_docker" in str(caught.value)
    assert not (tmp_path / "refused").exists()
    dest = render(tmp_path / "project", include_docker=False)
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text())
    assert answers["include_kubernetes"] is False
    assert not (dest / "deploy").exists()

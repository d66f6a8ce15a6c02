"""`.ci/merge_requirements.py`: which update conflicts in pyproject.toml resolve themselves."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from .conftest import ROOT


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("merge", ROOT / ".ci" / "merge_requirements.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


merge = _script()


def conflict(ours: list[str], theirs: list[str]) -> str:
    lines = ["<<<<<<< before updating", *ours, "=======", *theirs, ">>>>>>> after updating"]
    return "dependencies = [\n" + "".join(f"{line}\n" for line in lines) + "]\n"


def test_both_lists_are_kept_with_the_higher_floor_compared_as_numbers() -> None:
    text = conflict(
        ['    "numpy>=2.9",', '    "httpx>=0.27",', '    "Typer[all]",'],
        ['    "numpy>=2.10",', '    "typer[all]>=0.12"'],
    )
    assert merge.resolve(text) == (
        'dependencies = [\n    "httpx>=0.27",\n    "numpy>=2.10",\n    "typer[all]>=0.12",\n]\n',
        1,
    )


def test_a_conflict_that_is_more_than_two_lists_is_left_for_the_user() -> None:
    for ours, theirs in (
        (['    "numpy>=2.0",  # pinned for our parser'], ['    "numpy>=2.1",']),
        (['    "numpy>=2.0,<2.3",'], ['    "numpy>=2.1",']),
        (['    "httpx[http2]>=0.27",'], ['    "httpx>=0.28",']),
        (['name = "ours"'], ['name = "theirs"']),
    ):
        text = conflict(ours, theirs)
        assert merge.resolve(text) == (text, 0)

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_template.errors import ConfigError
from mlops_template.schema import load_schema

VALID = """
name = "demo"
source = "data.csv"
[target]
name = "y"
type = "category"
categories = ["a", "b"]
[features.x]
type = "float"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dataset.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_schema_describes_penguins(schema) -> None:
    assert schema.task == "classification"
    assert schema.target.name == "species"
    assert schema.feature_names[0] == "island"
    assert schema.source.is_file()


def test_task_follows_target_type(tmp_path: Path) -> None:
    text = VALID.replace('type = "category"\ncategories = ["a", "b"]', 'type = "float"')
    assert load_schema(write(tmp_path, text)).task == "regression"


def test_source_is_relative_to_the_schema_file(tmp_path: Path) -> None:
    assert load_schema(write(tmp_path, VALID)).source == tmp_path / "data.csv"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (('type = "float"', 'type = "decimal"'), "features.x.type"),
        (('categories = ["a", "b"]', "categories = []"), "non-empty `categories`"),
        (('categories = ["a", "b"]', 'categories = ["a", "a"]'), "duplicates"),
        (('type = "float"', 'type = "float"\nmin = 5\nmax = 1'), "greater than `max`"),
        (('type = "float"', 'type = "float"\ncategories = ["q"]'), "applies to category columns"),
        (('name = "y"', 'name = "x"'), "more than once"),
        (
            ('name = "demo"', 'name = "demo"\nsurprise = 1'),
            "surprise: Extra inputs are not permitted",
        ),
        (('[features.x]\ntype = "float"', ""), "features"),
        (('source = "data.csv"', ""), "source: Field required"),
    ],
)
def test_bad_schema_is_rejected_with_the_field_named(tmp_path: Path, change, named: str) -> None:
    text = VALID.replace(*change)
    assert text != VALID
    with pytest.raises(ConfigError, match="invalid dataset schema") as caught:
        load_schema(write(tmp_path, text))
    assert named in str(caught.value)


def test_missing_and_unparsable_schema_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset schema not found"):
        load_schema(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not a readable TOML file"):
        load_schema(write(tmp_path, "name = [unclosed"))

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from mlops_template._fs import current_version
from mlops_template.data import (
    MANIFEST_FILE,
    TEST_FILE,
    TRAIN_FILE,
    prepare_dataset,
    read_dataset,
)
from mlops_template.errors import DataFileError, DataSchemaError, UserError
from mlops_template.schema import DatasetSchema

from .conftest import PENGUINS

LINES = PENGUINS.read_text(encoding="utf-8").splitlines()
HEADER = LINES[0]


def digests(folder: Path) -> dict[str, str]:
    """The published set's files, by name and content."""
    current = current_version(folder)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(current.iterdir())}


def with_source(schema: DatasetSchema, source: Path) -> DatasetSchema:
    return schema.model_copy(update={"source": source})


def edit_line(number: int, old: str, new: str) -> Callable[[list[str]], list[str]]:
    """Replace `old` by `new` in file line `number` (1-based, header is line 1)."""

    def apply(lines: list[str]) -> list[str]:
        assert old in lines[number - 1], (old, lines[number - 1])
        lines[number - 1] = lines[number - 1].replace(old, new, 1)
        return lines

    return apply


def test_prepare_writes_split_parquet_and_manifest(
    schema: DatasetSchema, prepared_dir: Path
) -> None:
    train = pl.read_parquet(current_version(prepared_dir) / TRAIN_FILE)
    test = pl.read_parquet(current_version(prepared_dir) / TEST_FILE)
    manifest = json.loads((current_version(prepared_dir) / MANIFEST_FILE).read_text())
    assert train.columns == [schema.target.name, *schema.feature_names]
    assert train.schema["bill_length_mm"] == pl.Float64
    assert train.schema["island"] == pl.String
    assert manifest["rows_in"] == len(LINES) - 1 == 344
    assert manifest["rows_train"] + manifest["rows_test"] == 344
    assert manifest["rows_train"] == train.height
    assert manifest["source_sha256"] == hashlib.sha256(PENGUINS.read_bytes()).hexdigest()
    # Stratified: each species keeps its share of the data in the test split, to within a row.
    counts = pl.concat([train, test]).get_column("species").value_counts()
    in_test = test.get_column("species").value_counts()
    for species, total in counts.iter_rows():
        share = in_test.filter(pl.col("species") == species).item(0, "count")
        assert abs(share - total * 0.2) <= 1


def test_prepare_is_byte_identical_when_run_twice(
    schema: DatasetSchema, prepared_dir: Path, tmp_path: Path
) -> None:
    prepare_dataset(schema, tmp_path)
    assert digests(tmp_path) == digests(prepared_dir)


def test_seed_changes_the_split(schema: DatasetSchema, prepared_dir: Path, tmp_path: Path) -> None:
    reseeded = schema.model_copy(update={"split": schema.split.model_copy(update={"seed": 7})})
    prepare_dataset(reseeded, tmp_path)
    assert not pl.read_parquet(current_version(tmp_path) / TEST_FILE).equals(
        pl.read_parquet(current_version(prepared_dir) / TEST_FILE)
    )


def test_rows_without_target_are_dropped_and_counted(schema: DatasetSchema, tmp_path: Path) -> None:
    lines = edit_line(2, "Adelie,", ",")(edit_line(3, "Adelie,", "NA,")(list(LINES)))
    source = tmp_path / "p.csv"
    source.write_text("\n".join(lines) + "\n")
    manifest = prepare_dataset(with_source(schema, source), tmp_path / "out")
    assert manifest.rows_in == 344
    assert manifest.rows_dropped_missing_target == 2
    assert manifest.rows_train + manifest.rows_test == 342


def test_parquet_source_gives_the_same_split(
    schema: DatasetSchema, prepared_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "penguins.parquet"
    pl.read_csv(PENGUINS, null_values=["NA"]).write_parquet(source)
    prepare_dataset(with_source(schema, source), tmp_path / "out")
    for name in (TRAIN_FILE, TEST_FILE):
        assert pl.read_parquet(current_version(tmp_path / "out") / name).equals(
            pl.read_parquet(current_version(prepared_dir) / name)
        )


def test_quoted_commas_and_multiline_fields_are_parsed(
    schema: DatasetSchema, tmp_path: Path
) -> None:
    source = tmp_path / "p.csv"
    lines = list(LINES)
    lines[0] = HEADER + ",note"
    lines[1:] = [f'{line},"a, b"' for line in lines[1:]]
    lines[5] = lines[5].replace('"a, b"', '"two\nlines"')
    source.write_text("\n".join(lines) + "\n")
    ignoring_note = schema.model_copy(update={"source": source, "ignore": (*schema.ignore, "note")})
    assert read_dataset(ignoring_note).height == 344


BROKEN: dict[str, tuple[Callable[[list[str]], list[str]], type[UserError], list[str]]] = {
    "renamed header column": (
        edit_line(1, "island", "isle"),
        DataSchemaError,
        ["column 'island': missing from the file", "column 'isle': not in the schema"],
    ),
    "extra field": (
        edit_line(4, ",2007", ",2007,9"),
        DataFileError,
        ["line 4 has 9", "header's 8 fields"],
    ),
    "short row": (edit_line(6, ",2007", ""), DataFileError, ["line 6 has 7"]),
    "non-numeric value": (
        edit_line(3, "39.5", "39x5"),
        DataSchemaError,
        ["column 'bill_length_mm': expected a number; found '39x5' (line 3)"],
    ),
    "nan text": (
        edit_line(8, "38.9", "nan"),
        DataSchemaError,
        ["'bill_length_mm': not a finite number", "'nan' (line 8)"],
    ),
    "inf text": (
        edit_line(8, "3625", "inf"),
        DataSchemaError,
        ["'body_mass_g': not a finite number", "'inf' (line 8)"],
    ),
    "huge literal": (
        edit_line(8, "3625", "1e309"),
        DataSchemaError,
        ["'body_mass_g': not a finite number"],
    ),
    "unknown label": (
        edit_line(9, "Adelie", "Emperor"),
        DataSchemaError,
        ["'species': unknown label", "'Emperor' (line 9)"],
    ),
    "unknown category": (
        edit_line(2, "Torgersen", "Mars"),
        DataSchemaError,
        ["'island': unknown category", "Biscoe, Dream, Torgersen"],
    ),
    "missing non-nullable value": (
        edit_line(10, "Torgersen", ""),
        DataSchemaError,
        ["'island': missing value", "(line 10)"],
    ),
    "out of range": (
        edit_line(12, "37.8", "378"),
        DataSchemaError,
        ["'bill_length_mm': above the maximum 80", "'378' (line 12)"],
    ),
    "every problem at once": (
        lambda lines: edit_line(2, "39.1", "abc")(edit_line(3, "Torgersen", "Mars")(lines)),
        DataSchemaError,
        ["2 problems", "'bill_length_mm'", "'island'"],
    ),
    "empty file": (lambda lines: [], DataFileError, ["the file is empty"]),
    "header only": (lambda lines: lines[:1], DataFileError, ["no data rows, only a header"]),
    "every target missing": (
        lambda lines: [lines[0]] + [",".join(["NA", *line.split(",")[1:]]) for line in lines[1:]],
        DataSchemaError,
        ["'species': every row's target is missing"],
    ),
    "too few rows to split": (lambda lines: lines[:3], DataFileError, ["too few to split"]),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_broken_csv_gets_a_clear_error_and_keeps_earlier_outputs(
    case: str, schema: DatasetSchema, prepared_dir: Path, tmp_path: Path
) -> None:
    mutate, error, fragments = BROKEN[case]
    source = tmp_path / "broken.csv"
    lines = mutate(list(LINES))
    source.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    out = Path(shutil.copytree(prepared_dir, tmp_path / "out", symlinks=True))
    before = digests(out)
    with pytest.raises(error) as caught:
        prepare_dataset(with_source(schema, source), out)
    message = str(caught.value)
    assert str(source) in message
    for fragment in fragments:
        assert fragment in message
    assert caught.value.hint
    assert digests(out) == before


def test_many_bad_rows_are_counted_not_all_listed(schema: DatasetSchema, tmp_path: Path) -> None:
    source = tmp_path / "p.csv"
    source.write_text("\n".join(line.replace("Torgersen", "Mars") for line in LINES) + "\n")
    with pytest.raises(DataSchemaError) as caught:
        read_dataset(with_source(schema, source))
    assert "(lines 2, 3, 4, 5, 6 and 47 more)" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("data.xlsx", b"PK", "unsupported file type '.xlsx'"),
        ("data.parquet", b"not parquet", "cannot read as parquet"),
        ("data.csv", b"species,island\n\xff\xfe,x\n", "line 2 is not UTF-8 text"),
    ],
)
def test_unreadable_files_are_named(
    schema: DatasetSchema, tmp_path: Path, name: str, content: bytes, fragment: str
) -> None:
    source = tmp_path / name
    source.write_bytes(content)
    with pytest.raises(DataFileError, match=fragment):
        read_dataset(with_source(schema, source))


def test_missing_source_is_named(schema: DatasetSchema, tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"nope\.csv: file not found"):
        read_dataset(with_source(schema, tmp_path / "nope.csv"))


def test_parquet_column_of_the_wrong_type_is_named(schema: DatasetSchema, tmp_path: Path) -> None:
    source = tmp_path / "p.parquet"
    frame = pl.read_csv(PENGUINS, null_values=["NA"]).with_columns(
        pl.col("body_mass_g").cast(pl.String).str.split("")
    )
    frame.write_parquet(source)
    with pytest.raises(
        DataSchemaError, match=r"column 'body_mass_g': expected a number, found List\(String\)"
    ):
        read_dataset(with_source(schema, source))


def test_interrupted_write_leaves_previous_outputs_intact(
    schema: DatasetSchema, prepared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = Path(shutil.copytree(prepared_dir, tmp_path / "out", symlinks=True))
    before = digests(out)
    reseeded = schema.model_copy(update={"split": schema.split.model_copy(update={"seed": 1})})
    calls = []

    def crash_on_second_write(self: pl.DataFrame, file: Path, **kwargs: object) -> None:
        calls.append(file)
        if len(calls) == 2:
            Path(file).write_bytes(b"half a file")
            raise OSError("disk full")
        original(self, file, **kwargs)

    original = pl.DataFrame.write_parquet
    monkeypatch.setattr(pl.DataFrame, "write_parquet", crash_on_second_write)
    with pytest.raises(OSError, match="disk full"):
        prepare_dataset(reseeded, out)
    assert digests(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]


def test_an_unreadable_file_is_named_with_its_reason(
    schema: DatasetSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Path.open

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self == schema.source:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(DataFileError, match=r"penguins\.csv: cannot read: Permission denied"):
        read_dataset(schema)

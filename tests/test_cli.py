from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_template._fs import current_version

from .conftest import PENGUINS, PENGUINS_SCHEMA


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_template", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder laid out like a project: dataset.toml and its data."""
    shutil.copy(PENGUINS_SCHEMA, tmp_path / "dataset.toml")
    shutil.copy(PENGUINS, tmp_path / "penguins.csv")
    return tmp_path


def test_help_lists_every_command_without_loading_heavy_libraries(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom mlops_template.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('polars', 'onnxruntime', 'sklearn', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    for command in ("prepare", "train", "evaluate", "predict", "serve", "info"):
        assert command in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_predict_defaults_are_the_batch_modules() -> None:
    """The CLI spells its chunk default out (importing `batch` would load Polars for `--help`);
    it must be the one `predict_file` uses."""
    import inspect

    from mlops_template import batch, cli

    options = inspect.signature(cli.predict).parameters
    assert options["chunk_size"].default == batch.CHUNK_ROWS
    assert (
        inspect.signature(batch.predict_file).parameters["chunk_size"].default == batch.CHUNK_ROWS
    )


@pytest.mark.e2e  # every stage in its own process: the fast suite checks each in-process
def test_pipeline_runs_from_the_command_line(project: Path) -> None:
    steps = [
        ("prepare",),
        ("train",),
        ("evaluate",),
        ("predict", "penguins.csv", "-o", "scored.csv"),
        ("info",),
    ]
    outputs = {}
    for step in steps:
        result = cli(*step, cwd=project)
        assert result.returncode == 0, result.stderr
        outputs[step[0]] = result.stdout
    assert "train rows" in outputs["prepare"]
    assert "f1_macro" in outputs["train"]
    assert "confusion_matrix.png" in outputs["evaluate"]
    assert "scored 344 rows" in outputs["predict"]
    assert "bill_length_mm" in outputs["info"]
    card = json.loads((current_version(project / "models") / "model.json").read_text())
    assert card["version"] in outputs["info"]
    assert (project / "scored.csv").read_text().splitlines()[0].endswith("probability_Gentoo")


def test_user_error_is_one_line_and_a_hint_with_exit_1(project: Path) -> None:
    result = cli("train", cwd=project)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ")
    assert "prepared data not found" in lines[0]
    assert lines[1] == "hint: run `make prepare` first"
    assert "Traceback" not in result.stderr


def test_bad_data_is_reported_by_line_without_traceback(project: Path) -> None:
    raw = project / "penguins.csv"
    raw.write_text(raw.read_text().replace("Torgersen,39.1", "Torgersen,abc", 1))
    result = cli("prepare", cwd=project)
    assert result.returncode == 1
    assert "column 'bill_length_mm': expected a number; found 'abc' (line 2)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data" / "processed").exists()


def test_a_bad_row_is_met_with_where_its_rule_lives(project: Path) -> None:
    """Under `--schema other.toml` the hint names that file; at predict time the model's card
    is the rule, so the hint names the card; the error is the first line either way."""
    (project / "dataset.toml").rename(project / "other.toml")
    raw = project / "penguins.csv"
    good = raw.read_text()
    raw.write_text(good.replace("Torgersen,39.1", "Torgersen,abc", 1))
    prepared = cli("prepare", "--schema", "other.toml", cwd=project)
    assert prepared.returncode == 1
    assert prepared.stderr.startswith("error: penguins.csv: 1 problem\n")
    assert prepared.stderr.splitlines()[-1] == (
        "hint: fix the rows named above, or the schema in other.toml if the data is right"
    )
    raw.write_text(good)
    for command in ("prepare", "train"):
        assert cli(command, "--schema", "other.toml", cwd=project).returncode == 0
    (project / "new.csv").write_text(good.replace("Torgersen,39.1", "Torgersen,abc", 1))
    predicted = cli("predict", "new.csv", cwd=project)
    assert predicted.returncode == 1
    assert predicted.stderr.startswith("error: new.csv: 1 problem\n")
    card = current_version(project / "models") / "model.json"
    assert predicted.stderr.splitlines()[-1] == (
        f"hint: fix the rows named above; the model's card ({card.relative_to(project)}) "
        "gives each column's rules"
    )
    assert "dataset.toml" not in prepared.stderr + predicted.stderr


def test_an_unreadable_model_or_input_is_an_error_line_not_a_usage_error(
    trained_dir: Path, tmp_path: Path
) -> None:
    """Files its user may not read. Root reads anything, so as root the command runs without
    the capabilities that override file permissions."""
    command = [sys.executable, "-m", "mlops_template", "predict", "in.csv"]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    shutil.copytree(trained_dir, tmp_path / "models", symlinks=True)
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    (tmp_path / "in.csv").chmod(0)
    results = []
    for mode in (0, 0o755):
        (tmp_path / "models").chmod(mode)
        results.append(
            subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        )
    assert [result.returncode for result in results] == [1, 1], results
    assert [result.stderr.splitlines() for result in results] == [
        [
            "error: models/current: cannot read the model: Permission denied",
            "hint: check the permissions of the model folder and its files",
        ],
        ["error: in.csv: cannot read: Permission denied", "hint: check the file's permissions"],
    ]


def test_bad_usage_exits_2(project: Path) -> None:
    assert cli("predict", cwd=project).returncode == 2
    assert cli("nonsense", cwd=project).returncode == 2
    assert cli("predict", "x.csv", "--chunk-size", "0", cwd=project).returncode == 2


def test_environment_settings_apply_and_bad_ones_are_named(project: Path) -> None:
    result = cli("info", cwd=project, env={"MLOPS_TEMPLATE_MODEL_DIR": "elsewhere"})
    assert result.returncode == 1
    assert "elsewhere/model.json: model card not found" in result.stderr
    result = cli("info", cwd=project, env={"MLOPS_TEMPLATE_PORT": "http"})
    assert result.returncode == 1
    expected = "error: bad setting: MLOPS_TEMPLATE_PORT: Input should be a valid integer"
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_options_beat_environment(project: Path) -> None:
    (project / "alt.toml").write_text((project / "dataset.toml").read_text())
    result = cli(
        "prepare",
        "--schema",
        "alt.toml",
        "--processed-dir",
        "out",
        cwd=project,
        env={"MLOPS_TEMPLATE_SCHEMA_PATH": "missing.toml"},
    )
    assert result.returncode == 0, result.stderr
    assert (current_version(project / "out") / "train.parquet").is_file()


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _corrupt_manifest(project: Path) -> None:
    assert cli("prepare", cwd=project).returncode == 0
    (current_version(project / "data" / "processed") / "manifest.json").write_text("{not json")


def _edit_schema_after_prepare(project: Path) -> None:
    assert cli("prepare", cwd=project).returncode == 0
    _replace(project / "dataset.toml", "[split]\n", "[split]\n")
    _replace(project / "dataset.toml", 'ignore = ["year"]', 'ignore = ["year", "sex"]')
    schema = (project / "dataset.toml").read_text()
    start = schema.index("[features.sex]")
    (project / "dataset.toml").write_text(schema[:start])


# (id, command, how to break the project, what the one error line says)
FAULTS = {
    "schema error names the feature table": (
        "prepare",
        lambda p: _replace(p / "dataset.toml", 'type = "float"', 'type = "decimal"'),
        "features.bill_length_mm.type: Input should be",
    ),
    "schema error of the whole file has no invented location": (
        "prepare",
        lambda p: _replace(p / "dataset.toml", 'ignore = ["year"]', 'ignore = ["year", "sex"]'),
        "columns named more than once (target, features, ignore): ['sex']",
    ),
    "a file that is only a byte-order mark": (
        "prepare",
        lambda p: (p / "penguins.csv").write_bytes(b"\xef\xbb\xbf"),
        "penguins.csv: the file is empty; expected a header row",
    ),
    "a folder where the data file should be": (
        "prepare",
        lambda p: ((p / "penguins.csv").unlink(), (p / "penguins.csv").mkdir()),
        "penguins.csv: is a folder, not a data file",
    ),
    "a column named twice in the header": (
        "prepare",
        lambda p: _replace(p / "penguins.csv", "bill_depth_mm", "bill_length_mm"),
        "the header names a column more than once: 'bill_length_mm' (columns 3, 4)",
    ),
    "a latin-1 byte": (
        "prepare",
        lambda p: (p / "penguins.csv").write_bytes(
            (p / "penguins.csv").read_bytes().replace(b"Dream", b"Dr\xe9am", 1)
        ),
        "is not UTF-8 text (byte 0xe9)",
    ),
    "header and rows are wrong at once": (
        "prepare",
        lambda p: (
            _replace(p / "penguins.csv", "island", "isle"),
            _replace(p / "penguins.csv", "39.1", "abc"),
        ),
        "3 problems",
    ),
    "an unwritable output folder": (
        "prepare",
        lambda p: ((p / "data").mkdir(), (p / "data" / "processed").write_text("a file")),
        "cannot write the prepared data",
    ),
    "a damaged manifest": (
        "train",
        _corrupt_manifest,
        "manifest.json: not a valid manifest",
    ),
    "a schema edited since prepare": (
        "train",
        _edit_schema_after_prepare,
        "the prepared data is from another version of the dataset",
    ),
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_each_fault_is_one_error_line_with_a_hint(project: Path, fault: str) -> None:
    command, damage, message = FAULTS[fault]
    damage(project)
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    result = cli(command, cwd=project)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert message in result.stderr
    assert lines[-1].startswith("hint: ")
    assert "Traceback" not in result.stderr
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before


def test_scoring_leaves_no_telemetry_of_onnxruntime_behind(
    trained_dir: Path, prepared_dir: Path, tmp_path: Path
) -> None:
    """onnxruntime 1.29+ keeps a device id and an event store under ~/.cache/Microsoft and
    sends usage events unless ORT_DISABLE_TELEMETRY is set before it loads: the package sets it
    for every command, whatever the caller's environment holds (a caller may opt in with 0)."""
    unset = {"ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME"}
    env = {k: v for k, v in os.environ.items() if k not in unset} | {"HOME": str(tmp_path)}
    source = current_version(prepared_dir) / "test.parquet"
    output = tmp_path / "scored.parquet"
    command = [sys.executable, "-m", "mlops_template", "predict", str(source)]
    result = subprocess.run(
        [*command, "--output", str(output), "--model-dir", str(trained_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert output.is_file()
    assert not (tmp_path / ".cache" / "Microsoft").exists()


@pytest.mark.parametrize(
    ("command", "blocked", "extra"),
    [(("train",), "sklearn", "train"), (("serve",), "uvicorn", "serve")],
)
def test_a_missing_extra_is_one_error_line_that_names_it(
    project: Path, command: tuple[str, ...], blocked: str, extra: str
) -> None:
    code = (
        f"import sys\nsys.modules[{blocked!r}] = None  # import fails, as if not installed\n"
        "from mlops_template.cli import main\nmain()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *command],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: "), result.stderr
    assert f"needs the `{extra}` extra, which is not installed" in lines[0]
    assert lines[1] == f"hint: install it: `make install`, or `uv sync --extra {extra}`"

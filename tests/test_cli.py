from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    card = json.loads((project / "models" / "model.json").read_text())
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
    assert "error: setting port: Input should be a valid integer" in result.stderr
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
    assert (project / "out" / "train.parquet").is_file()

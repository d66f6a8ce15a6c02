"""The Makefile as people and scripts meet it: plain help when piped, a clean that cleans."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .conftest import ROOT


def make(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=cwd, capture_output=True, text=True
    )


# [if docker]
def test_the_published_images_are_built_by_the_target_the_image_tests_build_with() -> None:
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "publish.yml").read_text())
    (push,) = [s for s in workflow["jobs"]["images"]["steps"] if s.get("id") == "push"]
    builds = [line for line in push["run"].splitlines() if "make " in line]
    assert builds
    assert all(line.strip().startswith("make image ") for line in builds)
    assert workflow["jobs"]["images"]["permissions"]["packages"] == "write"
    assert workflow["permissions"] == {}  # every other job asks for what it needs
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "run: make test-containers" in ci


# [end docker]
def test_help_lists_the_targets_without_colour_codes_when_piped() -> None:
    result = make("help", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "\\033" not in result.stdout
    assert "\x1b" not in result.stdout
    for target in ("install", "lint", "test", "train", "serve", "bench", "clean"):
        assert f"  {target} " in result.stdout
    documented = re.findall(r"(?m)^([\w-]+):.*## ", (ROOT / "Makefile").read_text())
    assert [target for target in documented if f"  {target} " not in result.stdout] == []


def test_clean_removes_outputs_and_caches(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    made = ["data/processed", "models", ".pytest_cache", ".mypy_cache", ".hypothesis"]
    for name in made:
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "data" / "raw").mkdir()
    assert make("clean", cwd=tmp_path).returncode == 0
    assert [name for name in made if (tmp_path / name).exists()] == []
    assert (tmp_path / "data" / "raw").is_dir()  # the data is the user's

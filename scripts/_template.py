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
    # The benchmarks' yardsticks: a project's `make bench` measures its own model and server.
    "benchmarks/pandas_baseline.py",
    "benchmarks/reference.py",
    "benchmarks/mlserver_runtime.py",
    # The template's own tests of the package, on its fixtures: the penguin table of bad
    # requests, the codecs held against each other, the contract on renamed penguins, the text
    # and second-dataset examples, and the guarantees against foreign clients (the stock Triton
    # client, Schemathesis' fuzzing) with the peers they need. A project tests its own data
    # (`tests/test_project.py`, from its dataset.toml).
    "tests/test_serving_bad_requests.py",
    "tests/test_serving_codec.py",
    "tests/test_contract.py",
    "tests/test_text.py",
    "tests/test_second_dataset.py",
    "tests/test_serving_triton.py",
    "tests/test_serving_fuzz.py",
)


_TEMPLATE_ONLY = re.compile(r"(?ms)^[ \t]*# \[if template\]\n.*?^[ \t]*# \[end template\]\n")
_TEMPLATE_LINE = re.compile(r"(?m)^.*[ \t]# \[template\]\n")
# The options that switch files and lines: `line  # [docker]`, or `# [if docker]` ...
# `# [end docker]`; whole files and folders by their path (`CONDITIONAL_PATHS`).
OPTIONS = {
    "docker": "include_docker",
    "devcontainer": "include_devcontainer",
    "kubernetes": "include_kubernetes",
    "demo": "include_demo",
    "dask": "include_dask",
    "tracking": "include_tracking",
}
# Conditions made of options, usable as markers too.
DERIVED = {"containers": "include_docker or include_devcontainer"}
_NAMES = "|".join([*OPTIONS, *DERIVED])
_BLOCK_MARKER = re.compile(rf"(?m)^[ \t]*# \[(?:if|end) (?:{_NAMES})\]\n")
_LINE_MARKER = re.compile(rf"(?m)[ \t]+(?:# \[(?:{_NAMES})\]|<!-- \[(?:{_NAMES})\] -->)$")
# What each marker word switches on: an option's answer, or a condition of the example.
SWITCHES = {
    **OPTIONS,
    **DERIVED,
    "template": "false",
    "penguins": "not text_example",
    "text": "text_example",
    "kubernetes_dask": "include_kubernetes and include_dask",
}

# A line of an option: `line  # [docker]`, or in Markdown `line <!-- [docker] -->`.
SUFFIX = re.compile(r"(?:# \[(\w+)\]|<!-- \[(\w+)\] -->)$")


def option_of(suffix: re.Match[str]) -> str:
    return suffix.group(1) or suffix.group(2)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_conditions(pyproject: str) -> dict[str, str]:
    """The condition under which a project declares each of this repository's dependencies
    (an extra, a dev tool): from the option markers around it in `pyproject.toml`. A name
    declared with no condition anywhere is absent: the project always has it. Extras are
    named `extra:NAME`."""
    found: dict[str, list[str | None]] = {}
    blocks: list[str] = []
    for line in pyproject.splitlines():
        block = re.fullmatch(r"\s*# \[(if|end) (\w+)\]", line)
        if block:
            if block.group(1) == "if":
                blocks.append(SWITCHES[block.group(2)])
            else:
                blocks.pop()
            continue
        suffix = SUFFIX.search(line)
        switched = suffix is not None and option_of(suffix) in SWITCHES
        wanted = [*blocks, *([SWITCHES[option_of(suffix)]] if suffix and switched else [])]
        condition = " and ".join(f"({w})" for w in wanted) or None
        dependency = re.match(r'\s*"([A-Za-z0-9][A-Za-z0-9_.\-]*)', line)
        extra = re.match(r"([a-z][a-z0-9-]*) = \[$", line)
        if dependency:
            found.setdefault(_normal(dependency.group(1)), []).append(condition)
        elif extra:
            found.setdefault(f"extra:{extra.group(1)}", []).append(condition)
    return {
        name: " or ".join(sorted({str(c) for c in conditions}))
        for name, conditions in found.items()
        if None not in conditions
    }


def needed_packages(
    lock: dict[str, Any], own: str, conditions: dict[str, str]
) -> dict[str, str | None]:
    """Each locked package, and the condition under which the project needs it (None: always):
    the packages reachable from the project's own dependencies, by the options they hang on."""
    packages: dict[str, list[dict[str, Any]]] = {}
    for package in lock["package"]:
        packages.setdefault(package["name"], []).append(package)
    roots: list[tuple[dict[str, Any], str | None]] = []
    for package in packages[own]:
        roots += [(dep, conditions.get(dep["name"])) for dep in package.get("dependencies", [])]
        for extra, deps in package.get("optional-dependencies", {}).items():
            group = conditions.get(f"extra:{extra}")
            roots += [(dep, group or conditions.get(dep["name"])) for dep in deps]
        for deps in package.get("dev-dependencies", {}).values():
            roots += [(dep, conditions.get(dep["name"])) for dep in deps]
    needed: dict[str, set[str | None]] = {}
    for root, condition in roots:
        stack, seen = [(root["name"], tuple(root.get("extra", ())))], set()
        while stack:
            name, extras = stack.pop()
            if (name, extras) in seen:
                continue
            seen.add((name, extras))
            needed.setdefault(name, set()).add(condition)
            for package in packages.get(name, []):
                deps = list(package.get("dependencies", []))
                for extra in extras:
                    deps += package.get("optional-dependencies", {}).get(extra, [])
                stack += [(dep["name"], tuple(dep.get("extra", ()))) for dep in deps]
    return {
        name: None if None in found else " or ".join(sorted(str(c) for c in found))
        for name, found in needed.items()
    }


# Every option on, as this repository is, and none of the template's own tools.
_EVERY_OPTION = {**dict.fromkeys(OPTIONS.values(), True), "false": False, "text_example": False}


def _holds(condition: str | None) -> bool:
    # Conditions are this module's own, made from SWITCHES: names, `and`, `or`, parentheses.
    return condition is None or bool(eval(condition, {"__builtins__": {}}, _EVERY_OPTION))  # noqa: S307


def project_lock(text: str) -> str:
    """This repository's `uv.lock` as a project with every option on has it: without the
    packages that only the template's own tools need."""
    conditions = dependency_conditions((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    own = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
    needed = needed_packages(tomllib.loads(text), own, conditions)
    head, *blocks = re.split(r"(?m)^(?=\[\[package\]\]\n)", text)
    kept = []
    for block in blocks:
        name = re.match(r'\[\[package\]\]\nname = "([^"]+)"', block)
        assert name, block[:80]
        if name.group(1) == own:
            lines = block.splitlines(keepends=True)
            named = [re.search(r'\{ name = "([^"]+)"', line) for line in lines]
            block = "".join(
                line
                for line, n in zip(lines, named, strict=True)
                if n is None or _holds(conditions.get(n.group(1)))
            )
        elif not _holds(needed.get(name.group(1))):
            continue
        kept.append(block.rstrip("\n"))
    return head + "\n\n".join(kept) + "\n"


# Every project starts at this version, whatever the template's own release is.
PROJECT_VERSION = "0.1.0"
_OWN_VERSION = re.compile(r'(?m)^version = "[^"]*"$')


def project_text(text: str, path: str = "") -> str:
    """A repository file as a project made from the template (with every option on) has it:
    without the blocks between `# [if template]` and `# [end template]` and the lines marked
    `# [template]`, which are this repository's own, without the option markers, and at the
    project's first version."""
    text = _TEMPLATE_LINE.sub("", _TEMPLATE_ONLY.sub("", text))
    text = _LINE_MARKER.sub("", _BLOCK_MARKER.sub("", text))
    if path == "pyproject.toml":
        text = _OWN_VERSION.sub(f'version = "{PROJECT_VERSION}"', text, count=1)
    if path == "uv.lock":
        text = project_lock(text)
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


def rendered_commit(root: Path = ROOT) -> str:
    """The commit a render of `root` is made from, as Copier records one: `git describe` (the
    release tag, or the tag and the commits since), the full hash in it so that any clone finds
    it."""
    return rendered_commit_of(root, "HEAD")


def matching_commit(path: Path, url: str) -> str | None:
    """The template commit a "Use this template" repository at `path` was copied from, in
    `git describe` form: GitHub copies a commit's files into a first commit of its own, so the
    template commit whose tree is that commit's tree. None when the template cannot be fetched
    or holds no such commit."""
    git = ["git", "-C", str(path)]
    first = subprocess.run(
        [*git, "rev-list", "--max-parents=0", "HEAD"], capture_output=True, text=True
    )
    fetched = subprocess.run(
        [*git, "fetch", "--quiet", "--tags", url, "+refs/heads/*:refs/template/*"],
        capture_output=True,
    )
    if first.returncode != 0 or fetched.returncode != 0:
        return None
    tree = subprocess.run(
        [*git, "rev-parse", f"{first.stdout.split()[0]}^{{tree}}"], capture_output=True, text=True
    ).stdout.strip()
    history = subprocess.run(
        [*git, "log", "--format=%H %T", "--glob=refs/template/*"], capture_output=True, text=True
    ).stdout
    for line in history.splitlines():
        commit, commit_tree = line.split()
        if commit_tree == tree:
            return rendered_commit_of(path, commit)
    return None


def rendered_commit_of(path: Path, commit: str) -> str:
    describe = ["git", "describe", "--tags", "--always", "--abbrev=40", commit]
    return subprocess.run(
        describe, cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()


def uncommitted(root: Path = ROOT) -> list[str]:
    """The files of `root` whose changes no commit holds."""
    status = ["git", "status", "--porcelain", "--untracked-files=normal"]
    lines = subprocess.run(status, cwd=root, capture_output=True, text=True, check=True).stdout
    return [line[3:] for line in lines.splitlines()]


def source_url(root: Path = ROOT) -> str:
    """Where `copier update` should find the template later: the repository this clone came
    from (a fork's clone, the fork), or else copier.yml's `template_url`."""
    origin = subprocess.run(
        ["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    return origin if "://" in origin or origin.startswith("git@") else template_url(root)


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

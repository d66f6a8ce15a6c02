"""Turn a repository made with GitHub's "Use this template" into a project of its own name.

`.github/workflows/template-render.yml` runs it on the new repository's first push; it runs the
same Copier render as `copier copy`, with answers derived from the repository's name, replaces
the template's files with the result and commits. Locally, in a fresh copy:

    python scripts/render_self.py --repository acme/penguin-service --commit

The template's own workflows are kept (they do nothing outside the template), because a
workflow's own token may not change workflow files.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _template import matching_commit, record_source, release_tag, render

# A workflow's token may not change workflow files: the template's own two stay (they do nothing
# outside the template), and so does the rest of .git.
KEPT_WORKFLOWS = ("template-render.yml", "release.yml")


def answers_for(repository: str) -> dict[str, str]:
    owner, _, name = repository.partition("/")
    if not owner or not name:
        raise SystemExit(f"error: --repository takes OWNER/NAME, got {repository!r}")
    return {"project_name": name, "github_owner": owner}


def render_in_place(path: Path, answers: dict[str, str], template_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rendered = render(path, Path(tmp) / "project", answers)
        if template_url:  # so that `copier update` finds the template and the commit copied
            commit = matching_commit(path, template_url)
            if commit is None:
                commit = release_tag(path)
                print(
                    f"warning: no commit of {template_url} holds these files; recording the "
                    f"release {commit}, so the first update may show changes since it as "
                    "conflicts",
                    file=sys.stderr,
                )
            record_source(rendered, template_url, commit)
        for child in path.iterdir():
            if child.name == ".git":
                continue
            if child.name == ".github":
                workflows = child / "workflows"
                saved = {
                    n: (workflows / n).read_bytes()
                    for n in KEPT_WORKFLOWS
                    if (workflows / n).is_file()
                }
                shutil.rmtree(child)
                workflows.mkdir(parents=True)
                for name, content in saved.items():
                    (workflows / name).write_bytes(content)
                continue
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        shutil.copytree(rendered, path, dirs_exist_ok=True, symlinks=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", required=True, help="OWNER/NAME, e.g. $GITHUB_REPOSITORY")
    parser.add_argument(
        "--path", type=Path, default=Path.cwd(), help="the repository's working tree"
    )
    parser.add_argument("--template-url", help="where `copier update` should find the template")
    parser.add_argument("--commit", action="store_true", help="commit the result")
    args = parser.parse_args(argv)
    path = args.path.resolve()
    if not (path / "copier.yml").is_file():
        print(f"{path} has no copier.yml: already rendered, nothing to do")
        return 0
    try:
        render_in_place(path, answers_for(args.repository), args.template_url)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"rendered {path} as {args.repository}")
    if args.commit:
        subprocess.run(["git", "add", "--all"], cwd=path, check=True)
        message = f"Render from mlops-template as {args.repository}"
        subprocess.run(["git", "commit", "--quiet", "-m", message], cwd=path, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scaffold a new project from this template, then bring it up: `make new DEST=../my-project`.

It renders the template's current commit with the default answers, or those given, records that
commit and the repository this clone came from (so that `make update` in the project finds both
later), makes the project's first commit, installs it, prepares its data and trains its model,
then says how to serve it. A template with uncommitted changes is refused (no commit holds
them, so no update could start from them) unless they are wanted: `--allow-dirty`. A
destination that exists and is not empty is refused before anything is written; a bad answer is
one line naming the question.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from _template import ROOT, record_source, render, rendered_commit, source_url, uncommitted

PREFIX = "Validation error for question "


def parse_answers(pairs: list[str]) -> dict[str, str]:
    answers = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --data takes KEY=VALUE, got {pair!r}")
        answers[key] = value
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", help="where to create the project (must not exist, or be empty)")
    parser.add_argument("--name", help="the project's name (the other names derive from it)")
    parser.add_argument(
        "--data", action="append", default=[], metavar="KEY=VALUE", help="any answer"
    )
    parser.add_argument("--no-bring-up", action="store_true", help="render only")
    parser.add_argument(
        "--allow-dirty", action="store_true", help="render uncommitted changes too (to try them)"
    )
    args = parser.parse_args(argv)
    if not args.dest.strip():
        print(
            "error: DEST is empty; say where to create the project: make new DEST=../my-project",
            file=sys.stderr,
        )
        return 2
    dest = Path(args.dest).expanduser().resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        print(f"error: {dest} exists and is not empty; choose a new folder", file=sys.stderr)
        return 1
    answers = parse_answers(args.data)
    if args.name is not None:
        if not args.name.strip():
            print(
                'error: NAME is empty; give a name: make new DEST=... NAME="My Project"',
                file=sys.stderr,
            )
            return 2
        answers["project_name"] = args.name  # as given: the question itself refuses padding
    changed = uncommitted()
    if changed and not args.allow_dirty:
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        shown = ", ".join(changed[:5]) + more
        print(f"error: the template has uncommitted changes ({shown})", file=sys.stderr)
        print(
            "hint: commit them first, so that the project records the commit it was made from; "
            "or try them with make new ... ALLOW_DIRTY=1 (that project's first update will "
            "show them as changes of its own)",
            file=sys.stderr,
        )
        return 1
    try:
        render(ROOT, dest, answers)
    except ValueError as exc:
        message = str(exc)
        if message.startswith(PREFIX):
            message = message.split(": ", 1)[1] if ": " in message else message
        # `make new` passes these answers as SLUG= and PACKAGE=.
        message = message.replace("--data project_slug=", "SLUG=")
        print(f"error: {message}", file=sys.stderr)
        return 1
    # Updates come from the repository this clone came from, at the commit rendered.
    commit = rendered_commit()
    record_source(dest, source_url(), commit)
    print(f"created {dest}")
    first_commit(dest, f"Start from mlops-template {commit}")
    if args.no_bring_up:
        return 0
    # The new project finds (or installs) its own uv, as it will when its user runs make.
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV"}}
    make = shutil.which("make") or "make"
    result = subprocess.run([make, "install", "prepare", "train"], cwd=dest, env=env)
    if result.returncode != 0:
        print(f"error: `make install prepare train` failed in {dest}", file=sys.stderr)
        return result.returncode
    print(f"\n{dest} is ready: its model is trained. Next:\n  cd {dest}")
    print("  make serve    # the model server, its API docs at http://127.0.0.1:8000/docs")
    print("  make all      # lint, typecheck, test")
    return 0


def first_commit(dest: Path, message: str) -> None:
    """`git init` and the project's first commit; without a git identity, say how to make it."""
    subprocess.run(["git", "init", "--quiet", "-b", "main"], cwd=dest, check=True)
    subprocess.run(["git", "add", "--all"], cwd=dest, check=True)
    made = subprocess.run(
        ["git", "commit", "--quiet", "-m", message], cwd=dest, capture_output=True, text=True
    )
    if made.returncode != 0:
        print(
            f"warning: the first commit was not made: {made.stderr.strip().splitlines()[-1]}\n"
            f'hint: cd {dest} && git commit -m "{message}"',
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())

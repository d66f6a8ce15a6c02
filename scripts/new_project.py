"""Scaffold a new project from this template, then bring it up: `make new DEST=../my-project`.

It renders the working tree (uncommitted changes included) with the default answers, or those
given, installs the new project, prepares its data and trains its model, then says how to serve
it. A destination that exists and is not empty is refused before anything is written; a bad
answer is one line naming the question.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from _template import ROOT, record_source, release_tag, render, template_url

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
        answers["project_name"] = args.name.strip()
    try:
        render(ROOT, dest, answers)
    except ValueError as exc:
        message = str(exc)
        if message.startswith(PREFIX):
            message = message.split(": ", 1)[1] if ": " in message else message
        print(f"error: {message}", file=sys.stderr)
        return 1
    # Updates come from the template's repository and this release, not from this clone.
    record_source(dest, template_url(), release_tag())
    print(f"created {dest}")
    if args.no_bring_up:
        return 0
    # The new project finds (or installs) its own uv, as it will when its user runs make.
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV"}}
    make = shutil.which("make") or "make"
    subprocess.run(["git", "init", "--quiet"], cwd=dest, check=True)
    result = subprocess.run([make, "install", "prepare", "train"], cwd=dest, env=env)
    if result.returncode != 0:
        print(f"error: `make install prepare train` failed in {dest}", file=sys.stderr)
        return result.returncode
    print(f"\n{dest} is ready: its model is trained. Next:\n  cd {dest}")
    print("  make serve    # the model server, its API docs at http://127.0.0.1:8000/docs")
    print("  make all      # lint, typecheck, test")
    return 0


if __name__ == "__main__":
    sys.exit(main())

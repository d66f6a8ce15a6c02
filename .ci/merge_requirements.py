"""Resolve the update conflicts in pyproject.toml that are only two versions of a dependency list.

`copier update` marks a conflict wherever the template and the project changed nearby lines;
in a list of requirements that happens whenever both add or bump one (`uv add` sorts a new
dependency in beside one the template bumped). Such a conflict has one right answer: every
requirement of both sides, and for one named on both, the higher floor (`>=`). This script
writes that answer in place of each conflict whose lines on both sides are all requirements
of that simple form, and leaves every other conflict for the user. A requirement that only one
side still lists is kept, so one the template dropped stays until the user removes it.
`make update` runs it.
Standard library only, so it runs before the project's environment is brought up to date.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CONFLICT = re.compile(
    r"^<{7}[^\n]*\n(?P<ours>(?:(?!={7}).*\n)*?)={7}\n(?P<theirs>(?:(?!>{7}).*\n)*?)>{7}[^\n]*\n",
    re.MULTILINE,
)
REQUIREMENT = re.compile(
    r'^(?P<indent>\s*)"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[^\]]*\])?'
    r'(?:>=(?P<floor>[0-9][0-9A-Za-z.]*))?"(?P<comma>,?)\s*$'
)


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # names as PEP 503 compares them


def _version(text: str) -> tuple[int | str, ...]:
    return tuple(int(part) if part.isdigit() else part for part in text.split("."))


def merged(ours: str, theirs: str) -> str | None:
    """Both sides' requirements, the higher floor for one on both; None unless every line on
    both sides is a plain requirement (a name, extras, at most a `>=` floor)."""
    chosen: dict[str, re.Match[str]] = {}
    for line in ours.splitlines() + theirs.splitlines():
        found = REQUIREMENT.match(line)
        if found is None:
            return None
        key = _key(found["name"])
        kept = chosen.get(key)
        if kept is None:
            chosen[key] = found
        elif (kept["extras"] or "") != (found["extras"] or ""):
            return None
        elif found["floor"] and (
            not kept["floor"] or _version(found["floor"]) > _version(kept["floor"])
        ):
            chosen[key] = found
    lines = [
        f'{m["indent"]}"{m["name"]}{m["extras"] or ""}{">=" + m["floor"] if m["floor"] else ""}",'
        for _, m in sorted(chosen.items())
    ]
    return "".join(line + "\n" for line in lines)


def resolve(text: str) -> tuple[str, int]:
    """`text` with every resolvable conflict resolved, and how many were."""
    count = 0

    def replace(conflict: re.Match[str]) -> str:
        nonlocal count
        answer = merged(conflict["ours"], conflict["theirs"])
        if answer is None:
            return conflict[0]
        count += 1
        return answer

    return CONFLICT.sub(replace, text), count


def main(argv: list[str]) -> int:
    for name in argv or ["pyproject.toml"]:
        path = Path(name)
        if not path.is_file():
            continue
        text, count = resolve(path.read_text(encoding="utf-8"))
        if count:
            path.write_text(text, encoding="utf-8")
            print(f"{path}: {count} conflict(s) between dependency lists merged (both sides kept)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

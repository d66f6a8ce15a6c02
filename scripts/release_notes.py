"""Print the CHANGELOG section of a version, for its GitHub release; fail if there is none.

python scripts/release_notes.py 0.2.0      # or without a version: the one in pyproject.toml
"""

from __future__ import annotations

import re
import sys
import tomllib

from _template import ROOT


def project_version() -> str:
    """The version: it lives in one place, pyproject.toml."""
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def notes(version: str, changelog: str) -> str:
    """The body of `## [version]` in a Keep a Changelog file."""
    match = re.search(
        rf"^## \[{re.escape(version)}\][^\n]*\n(.*?)(?=^## \[|\Z)", changelog, re.M | re.S
    )
    if not match or not match.group(1).strip():
        raise SystemExit(
            f"error: CHANGELOG.md has no section for {version}; add `## [{version}] - DATE`"
        )
    return match.group(1).strip() + "\n"


def main(argv: list[str]) -> int:
    version = argv[0] if argv else project_version()
    if not re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?", version):
        print(
            f"error: version {version!r} is not X.Y.Z (PEP 440, final or pre-release)",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(notes(version, (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

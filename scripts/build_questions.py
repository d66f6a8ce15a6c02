"""Build `tests/data/questions.csv`, the text example, from the chatterbot-corpus package.

The data is ChatterBot's English dialog corpus (chatterbot-corpus 1.3.3 on PyPI, BSD-3-Clause,
copyright Gunther Cox): YAML files of conversations, one file per topic. Each conversation
becomes one row: its opening line (`question`), the first reply (`answer`, empty when there is
none) and how many replies it has (`replies`), labelled with the file's topic. Exact duplicates
are dropped (the "tech support" file repeats ten conversations a hundred times), and topics with
fewer than 40 conversations are left out, so that each class has enough rows to learn from.

    pip download --no-deps chatterbot-corpus==1.3.3 -d /tmp/corpus
    python scripts/build_questions.py /tmp/corpus/chatterbot_corpus-1.3.3-py2.py3-none-any.whl

Nothing here runs at build or test time: the CSV is committed, with its licence beside it.
"""

from __future__ import annotations

import argparse
import csv
import io
import zipfile
from collections import Counter
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "questions.csv"
MIN_ROWS = 40


def rows(wheel: Path) -> list[tuple[str, str, str, int]]:
    found: dict[tuple[str, str, str], int] = {}
    with zipfile.ZipFile(wheel) as archive:
        names = sorted(
            n
            for n in archive.namelist()
            if n.startswith("chatterbot_corpus/data/english/") and n.endswith(".yml")
        )
        for name in names:
            corpus = yaml.safe_load(archive.read(name).decode("utf-8"))
            topic = corpus["categories"][0]
            for conversation in corpus["conversations"]:
                lines = [" ".join(str(line).split()) for line in conversation]
                answer = lines[1] if len(lines) > 1 else ""
                found.setdefault((topic, lines[0], answer), len(lines) - 1)
    counts = Counter(topic for topic, _, _ in found)
    return [(t, q, a, n) for (t, q, a), n in found.items() if counts[t] >= MIN_ROWS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="the chatterbot-corpus 1.3.3 wheel")
    table = rows(parser.parse_args().wheel)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["topic", "question", "answer", "replies"])
    writer.writerows(table)
    OUT.write_text(buffer.getvalue(), encoding="utf-8")
    print(f"{OUT}: {len(table)} rows, {dict(Counter(t for t, *_ in table))}")


if __name__ == "__main__":
    main()

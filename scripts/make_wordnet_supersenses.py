"""A real labelled text task from Debian's ``wordnet-base``: noun gloss → supersense (26 classes).

Each line of ``/usr/share/wordnet/data.noun`` is one synset: field 2 is its lexicographer file
(03 = noun.Tops ... 28 = noun.time, the 26 noun supersenses) and the gloss follows `` | ``. We keep the
definition (the gloss before its quoted examples, which often contain the word itself), shuffle with a
fixed seed, and write ``train.jsonl`` and ``test.jsonl`` (``{"text", "label", "synset"}``) atomically.

    python scripts/make_wordnet_supersenses.py OUT_DIR [--train N] [--test M] [--seed S] [--data-noun FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

SUPERSENSES = [
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
]  # lexicographer files 03..28, in order


def read_glosses(data_noun: Path) -> list[dict[str, str]]:
    rows = []
    for line in data_noun.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("  ") or " | " not in line:
            continue  # licence header
        fields, _, gloss = line.partition(" | ")
        offset, lex_file = fields.split()[:2]
        definition = gloss.split('; "')[0].strip().strip(";").strip()
        if definition:
            rows.append({"text": definition, "label": SUPERSENSES[int(lex_file) - 3], "synset": offset})
    return rows


def write_jsonl(rows: list[dict[str, str]], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-noun", type=Path, default=Path("/usr/share/wordnet/data.noun"))
    args = parser.parse_args()
    rows = read_glosses(args.data_noun)
    random.Random(args.seed).shuffle(rows)
    if args.train + args.test > len(rows):
        raise SystemExit(f"only {len(rows)} glosses")
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(rows[: args.train], args.out / "train.jsonl")
    write_jsonl(rows[args.train : args.train + args.test], args.out / "test.jsonl")
    print(f"{len(rows)} noun glosses; wrote {args.train} train and {args.test} test to {args.out}")


if __name__ == "__main__":
    main()

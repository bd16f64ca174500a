"""Start-up: ``relstitch --help`` and ``relstitch inspect`` vs a bare interpreter and vs ``import torch``.

    .venv/bin/python bench/startup.py

Each command runs in a fresh interpreter (subprocess), interleaved, best of ``--repeats``. Ratios are
against ``python -c pass`` (the floor) and ``python -c "import torch"`` (what a careless CLI would pay).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from _common import REPO, finish, report, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import torch": [sys.executable, "-c", "import torch"],
        "relstitch --help": [sys.executable, "-m", "relstitch", "--help"],
        "relstitch inspect": [
            sys.executable,
            "-m",
            "relstitch",
            "inspect",
            "checkpoints/anchors.safetensors",
        ],
    }
    best = dict.fromkeys(commands, float("inf"))
    for _ in range(args.repeats):
        for name, command in commands.items():
            best[name] = min(
                best[name],
                timed(lambda c=command: subprocess.run(c, cwd=REPO, check=True, capture_output=True)),
            )
    for name in ("relstitch --help", "relstitch inspect"):
        report(
            f"{name} vs bare interpreter",
            "fresh process",
            best[name],
            best["python -c pass"],
            "python -c pass",
            target="(under 0.5 s in absolute terms)",
            higher_is_better=False,
            extra={"seconds": round(best[name], 3)},
        )
        report(
            f"{name} vs import torch",
            "fresh process",
            best[name],
            best["import torch"],
            'python -c "import torch"',
            target="< 1",
            higher_is_better=False,
        )
    finish(args.json)


if __name__ == "__main__":
    main()

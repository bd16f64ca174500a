"""Train the shipped zoo in ``checkpoints/`` on the built-in data (reproducible: seeded, CPU).

3 seeds of the CNN classifier with a relative bottleneck, the same 3 seeds with an absolute
bottleneck, 2 seeds of the MLP (relative), and the 300-anchor file they share. Every step goes through
the public CLI, exactly as a user would run it.

    python scripts/make_zoo.py [--out checkpoints]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ANCHOR_COUNT, ANCHOR_SEED, EPOCHS = 300, 0, 12
MODELS = (
    [("cnn", "relative", s) for s in (0, 1, 2)]
    + [("cnn", "absolute", s) for s in (0, 1, 2)]
    + [("mlp", "relative", s) for s in (0, 1)]
)


def relstitch(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "relstitch", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("checkpoints"))
    args = parser.parse_args()
    args.out.mkdir(exist_ok=True)
    anchors = args.out / "anchors.safetensors"
    relstitch(
        "anchors",
        str(anchors),
        "--data",
        "builtin:train",
        "--count",
        str(ANCHOR_COUNT),
        "--seed",
        str(ANCHOR_SEED),
        "--force",
    )
    for arch, space, seed in MODELS:
        started = time.perf_counter()
        prefix = args.out / f"{arch}-{space[:3]}-s{seed}"
        extra = ["--anchors", str(anchors)] if space == "relative" else []
        relstitch(
            "train",
            str(prefix),
            "--arch",
            arch,
            "--space",
            space,
            "--seed",
            str(seed),
            "--epochs",
            str(EPOCHS),
            *extra,
            "--force",
        )
        print(f"  ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()

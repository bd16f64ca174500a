"""The allocator tuning (relstitch.runtime.tune_allocator): the same work with glibc's defaults and tuned.

    .venv/bin/python bench/allocator.py

mallopt settings cannot be undone within a process, so each side runs in its own fresh process,
alternating (A B A B ...). The ratio uses the *median* process, not the best: with glibc's defaults a
process lands in one of two states (its dynamic mmap threshold ends up above the activations' size or
not) and stays there, so the best of a few processes hides how often the slow state happens; every
process's time is printed too. Measured: (1) a bare forward loop of the shipped CNN over the
built-in images, batch 256, one torch thread, and (2) the whole ``relstitch encode`` command on all of
Fashion-MNIST train when it is installed (else the built-in set), wall time, with
``RELSTITCH_ALLOCATOR=system`` as the untuned side. Both print the speed-up (default time / tuned time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from _common import REPO, finish, report

FORWARD = """
import json, sys, time
sys.path[:0] = [{bench!r}, {repo!r}]
from relstitch.runtime import tune_allocator
applied = tune_allocator() if {tune} else False
import torch
torch.set_num_threads(1)
from encode import build
encoder, anchors, dataset = build("cnn", {n}, 300)
batches = [dataset.x[s : s + 256] for s in range(0, len(dataset), 256)]
best = float("inf")
with torch.inference_mode():
    for _ in range(5):
        start = time.perf_counter()
        for batch in batches:
            encoder.module(encoder.prepare(batch))
        best = min(best, time.perf_counter() - start)
import resource
maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"applied": applied, "seconds": best, "maxrss_mb": maxrss_mb}}))
"""

FASHION = Path("/usr/share/datasets/fashion-mnist")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "RELSTITCH_ALLOCATOR"}
    return {**env, **extra}


def forward(n: int, rounds: int) -> None:
    times: dict[bool, list[float]] = {True: [], False: []}
    peaks: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for tune in (False, True):
            code = FORWARD.format(bench=str(Path(__file__).parent), repo=str(REPO), tune=tune, n=n)
            run = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=clean_env()
            )
            out = json.loads(run.stdout.strip().splitlines()[-1])
            assert out["applied"] is tune, "the tuning did not apply: not glibc?"
            times[tune].append(out["seconds"])  # the best of 5 loops within that process
            peaks[tune].append(
                out["maxrss_mb"]
            )  # the process's peak resident size: the tuning must not raise it
    report(
        "bare CNN forward, tuned allocator vs glibc defaults (median process)",
        f"shipped cnn-rel-s0, N={n}, batch 256, 1 thread",
        median(times[True]),
        median(times[False]),
        "the same loop in a process with glibc's default malloc settings",
        target="> 1 (speed-up)",
        extra={
            **per_process(times),
            "peak RSS MB tuned": f"{min(peaks[True]):.0f}-{max(peaks[True]):.0f}",
            "peak RSS MB default": f"{min(peaks[False]):.0f}-{max(peaks[False]):.0f}",
        },
    )


def command(rounds: int) -> None:
    relstitch = Path(sys.executable).with_name("relstitch")
    # Real data needs its anchors named (the command refuses to pair it with the zoo's by default); the
    # zoo's anchor file keeps the workload what it always was.
    anchors = ["--anchors", str(REPO / "checkpoints" / "anchors.safetensors")]
    data = (
        ["--data", str(FASHION), *anchors]
        if (FASHION / "train-images-idx3-ubyte.gz").exists() or FASHION.is_dir()
        else []
    )
    folder = Path(tempfile.mkdtemp(prefix="relstitch-bench-"))
    out = folder / "e.safetensors"
    argv = [
        str(relstitch),
        "encode",
        str(REPO / "checkpoints" / "cnn-rel-s0.encoder.safetensors"),
        *data,
        "-o",
        str(out),
        "--force",
    ]
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for tune in (False, True):
            env = clean_env() if tune else clean_env(RELSTITCH_ALLOCATOR="system")
            start = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True, env=env)
            times[tune].append(time.perf_counter() - start)
    out.unlink()
    folder.rmdir()
    what = "Fashion-MNIST train (60,000)" if data else "builtin:train (6,000)"
    report(
        "relstitch encode command, tuned vs RELSTITCH_ALLOCATOR=system (median run)",
        f"shipped CNN, {what}, wall time incl. start-up",
        median(times[True]),
        median(times[False]),
        "the same command with the tuning switched off",
        target="> 1 (speed-up)",
        extra=per_process(times),
    )


def per_process(times: dict[bool, list[float]]) -> dict[str, str]:
    return {
        side: " ".join(f"{t:.3f}" for t in times[tune])
        for side, tune in (("tuned s", True), ("default s", False))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    forward(args.n, args.rounds)
    command(args.rounds)
    finish(args.json)


if __name__ == "__main__":
    main()

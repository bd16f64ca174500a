"""Run the seven experiments in order and record the run (date, machine, times) in docs/RESULTS.md.

    python experiments/run_all.py [--quick] [--jobs 2] [--only 1,3] [--stop-after MINUTES]

Each experiment runs in its own process (``python experiments/expN_*.py``), so one failing does not stop
the others; its outcome (done, failed, not run) goes into the run record. ``--jobs 2`` runs two lanes side by
side, one torch thread each (experiment 1 in one lane, 2-6 in the other), then experiment 7, which reuses
experiments 1 and 3: on two cores this beats one lane of two threads, whose small matrix products scale
poorly. ``--stop-after`` starts no experiment past that many minutes (it is marked "not run").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

import common

EXPERIMENTS = {
    1: "exp1_seeds_architectures",
    2: "exp2_reconstruction",
    3: "exp3_pretrained_vision",
    4: "exp4_pretrained_text",
    5: "exp5_word_embeddings",
    6: "exp6_cross_lingual",
    7: "exp7_anchor_count",
}
LANES = ([1], [3, 2, 4, 5, 6])  # with --jobs 2; experiment 7 runs after both (it reads 1's and 3's work)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--jobs", type=int, choices=(1, 2), default=1)
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads per experiment (default: 1 with --jobs 2)"
    )
    p.add_argument("--only", default="", help="comma-separated experiment numbers")
    p.add_argument(
        "--stop-after", type=float, default=None, help="start no experiment after this many minutes"
    )
    args = p.parse_args()
    chosen = [int(n) for n in args.only.split(",") if n.strip()] or list(EXPERIMENTS)
    threads = args.threads or (1 if args.jobs == 2 else None)
    started = time.perf_counter()
    date = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    outcome: dict[int, tuple[str, float]] = {}

    def run_one(number: int, n_threads: int | None) -> None:
        if args.stop_after is not None and (time.perf_counter() - started) / 60 > args.stop_after:
            outcome[number] = ("not run (time budget)", 0.0)
            common.log(f"[run_all] experiment {number}: not started, past --stop-after {args.stop_after} min")
            return
        command = [sys.executable, str(common.ROOT / "experiments" / f"{EXPERIMENTS[number]}.py")]
        command += ["--quick"] * args.quick + (["--threads", str(n_threads)] if n_threads else [])
        common.log(f"[run_all] experiment {number}: {' '.join(command[1:])}")
        t0 = time.perf_counter()
        code = subprocess.call(command, cwd=common.ROOT)
        outcome[number] = ("done" if code == 0 else f"failed (exit {code})", time.perf_counter() - t0)
        common.log(
            f"[run_all] experiment {number}: {outcome[number][0]} in {outcome[number][1] / 60:.1f} min"
        )

    def lane(numbers: list[int], n_threads: int | None) -> None:
        for number in numbers:
            if number in chosen:
                run_one(number, n_threads)

    if args.jobs == 2:
        workers = [threading.Thread(target=lane, args=(numbers, threads)) for numbers in LANES]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        lane([7], args.threads or 2)
    else:
        lane(sorted(chosen), threads)
    total = time.perf_counter() - started
    rows = [
        [
            str(n),
            EXPERIMENTS[n],
            outcome.get(n, ("not selected", 0.0))[0],
            f"{outcome.get(n, ('', 0.0))[1] / 60:.1f}",
        ]
        for n in EXPERIMENTS
    ]
    flags = (" --quick" if args.quick else "") + (f" --jobs {args.jobs}" if args.jobs > 1 else "")
    block = f"""## The run

One full run of `experiments/run_all.py{flags}`, started {date} UTC on
{common.machine()} (torch {common.versions()["torch"]}); total wall time **{total / 60:.1f} min**{
        " (two experiments at a time, one thread each, then experiment 7)" if args.jobs == 2 else ""
    }.

{common.table(["#", "script", "outcome", "minutes"], rows)}"""
    common.log(f"[run_all] total {total / 60:.1f} min")
    if args.quick or args.only:  # a partial run must not replace the record of the last full one
        print(block)
    else:
        common.update_results_md("run", block)
    sys.exit(0 if all(o == "done" for o, _ in outcome.values()) else 1)


if __name__ == "__main__":
    main()

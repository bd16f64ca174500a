"""Shared helpers of the bench scripts: the machine's description, interleaved timing, one printed row.

Every ratio is measured in one process, candidate and baseline interleaved (A B A B ...), keeping the
best (smallest) time of each: on a shared, noisy machine the minimum is the least disturbed run.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a source tree (the GPU machine has no pip install of relstitch)
    sys.path.insert(0, str(REPO))

RESULTS: list[dict[str, Any]] = []


def configure_threads() -> int:
    """Torch CPU threads for a bench: ``BENCH_THREADS`` (default 1); also the allocator tuning the CLI
    applies.

    One thread by default: on a machine shared with other work, a descheduled OpenMP thread stalls
    every parallel op at its barrier, which swung our ratios by 5x between identical runs.
    """
    import torch

    from relstitch.runtime import tune_allocator

    tune_allocator()  # as the relstitch command does; both sides of every ratio run under it
    threads = int(os.environ.get("BENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    return threads


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(device: str = "cpu") -> str:
    """One line naming the machine the numbers come from."""
    import torch

    where = (
        f"{platform.machine()} {cpu_name()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({configure_threads()} threads)"
    )
    if device.startswith("cuda") and torch.cuda.is_available():
        where += f", GPU {torch.cuda.get_device_name()}"
    return where


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str = "cpu") -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved(
    candidate: Callable[[], Any],
    baseline: Callable[[], Any],
    *,
    repeats: int = 3,
    warmup: int = 1,
    device: str = "cpu",
) -> tuple[float, float]:
    """Best time of ``candidate`` and of ``baseline``, run alternately after ``warmup`` rounds."""
    for _ in range(warmup):
        candidate()
        baseline()
    best_c = best_b = float("inf")
    for _ in range(repeats):
        best_c = min(best_c, timed(candidate, device))
        best_b = min(best_b, timed(baseline, device))
    return best_c, best_b


def report(
    name: str,
    shapes: str,
    candidate_s: float,
    baseline_s: float,
    baseline: str,
    *,
    target: str = "",
    higher_is_better: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Print one ratio with its shapes and baseline; keep it for ``--json``.

    ``higher_is_better``: the ratio is baseline/candidate (a throughput ratio: 1.0 = as fast as the
    baseline); otherwise candidate/baseline (a time ratio).
    """
    ratio = baseline_s / candidate_s if higher_is_better else candidate_s / baseline_s
    row = {
        "name": name,
        "shapes": shapes,
        "candidate_s": round(candidate_s, 4),
        "baseline_s": round(baseline_s, 4),
        "baseline": baseline,
        "ratio": round(ratio, 3),
        "target": target,
        **(extra or {}),
    }
    RESULTS.append(row)
    print(
        f"{name}: ratio {ratio:.3f} (target {target or '-'}) | {shapes} | relstitch {candidate_s:.4f} s vs "
        f"baseline {baseline_s:.4f} s = {baseline}"
        + "".join(f" | {k} {v}" for k, v in (extra or {}).items()),
        flush=True,
    )
    return row


def finish(json_path: str | None, device: str = "cpu") -> None:
    """Print the machine line (and write the rows as JSON when asked)."""
    print(f"machine: {machine(device)}; shared with other work, so numbers are noisy", flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps({"machine": machine(device), "results": RESULTS}, indent=2))


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> float:
    """Reset this process's peak resident size (Linux ``clear_refs``) and return the current RSS in MB."""
    import gc

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS") / 1024


def peak_rss() -> float:
    """Peak resident size (MB) since the last :func:`reset_peak_rss`."""
    return _status_kb("VmHWM") / 1024


_MEASURE = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - t0
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)
sys.stderr.write(done.stderr[-2000:])
"""


def measured_matrix(command: list[str], out: Path, **env: str) -> dict[str, Any]:
    """One ``relstitch eval-matrix`` command writing ``--json out``, run in a fresh process with its own
    empty ``XDG_CACHE_HOME``: wall time, peak resident memory of its largest process, the report's
    matrix time, and the report."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as xdg:
        full = dict(os.environ, XDG_CACHE_HOME=xdg, PYTHONPATH=str(REPO), **env)
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, *command], env=full, capture_output=True, text=True, check=False
        )
    wall, rss_kb, code = done.stdout.split()
    if code != "0":
        raise SystemExit(f"eval-matrix failed: {done.stderr}")
    matrix = json.loads(out.read_text())
    return {
        "wall": float(wall),
        "matrix": float(matrix["run"]["timings"]["total_seconds"]),
        "peak_mb": int(rss_kb) / 1024,
        "report": matrix,
    }

"""Peer comparison: relstitch's cosine projection vs latentis 0.0.8's ``cosine_proj`` on the same tensors.

    .venv/bin/python bench/peer_latentis.py              # N = 1e5 and 1e6, d = 384, k = 300

latentis is installed by this script into its own venv, ``bench/.venv-latentis`` (gitignored):
``latentis==0.0.8`` and the packages it imports, all with ``--no-deps`` so pip cannot pull a second
torch; torch and numpy come from the main venv through a ``.pth`` file. Time: both functions in one
process (the latentis venv, relstitch from this source tree), interleaved, best of ``--repeats``.
Peak memory: one fresh process per (library, N), peak resident growth (VmHWM, reset once the inputs exist).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = HERE / ".venv-latentis"
# latentis 0.0.8 itself and what `import latentis.transform.projection` needs that the main venv lacks.
PACKAGES = [
    "latentis==0.0.8",
    "GitPython",
    "gitdb",
    "smmap",
    "python-dotenv",
    "backports.strenum",
    "scipy",
    "lightning",
    "lightning-utilities",
    "torchmetrics",
    "pandas",
    "python-dateutil",
    "pytz",
    "tzdata",
    "six",
    "faiss-cpu",
]
PROBE = "from latentis.transform.projection import cosine_proj"


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> str | None:
    """Create/complete the latentis venv; return None when it imports, else why it cannot."""
    env = dict(os.environ, PYTHONPATH="")
    if not venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        site = subprocess.run(
            [str(venv_python()), "-c", "import site; print(site.getsitepackages()[0])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        main_site = subprocess.run(
            [
                sys.executable,
                "-c",
                "import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        # Appended after the venv's own site-packages: torch and numpy from the main venv, nothing overridden.
        Path(site, "zz-main-venv.pth").write_text(main_site + "\n")
    probe = subprocess.run(
        [str(venv_python()), "-c", PROBE], capture_output=True, text=True, env=env, cwd="/"
    )
    if probe.returncode == 0:
        return None
    install = subprocess.run(
        [str(venv_python()), "-m", "pip", "install", "-q", "--no-deps", *PACKAGES],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        return "pip could not install latentis: " + install.stderr.strip().splitlines()[-1]
    probe = subprocess.run(
        [str(venv_python()), "-c", PROBE], capture_output=True, text=True, env=env, cwd="/"
    )
    return (
        None
        if probe.returncode == 0
        else "latentis does not import: " + probe.stderr.strip().splitlines()[-1]
    )


def inputs(n: int, d: int, k: int):
    import torch

    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=gen), torch.randn(k, d, generator=gen)


def functions():
    from latentis.transform.projection import cosine_proj

    from relstitch.projection import relative_projection

    return {
        "relstitch": lambda x, a: relative_projection(x, a),
        "latentis": lambda x, a: cosine_proj(x, anchors=a),
    }


def worker_time(n: int, d: int, k: int, repeats: int) -> dict:
    import torch
    from _common import configure_threads, interleaved

    configure_threads()
    x, a = inputs(n, d, k)
    fns = functions()
    with torch.inference_mode():
        ours, theirs = interleaved(
            lambda: fns["relstitch"](x, a), lambda: fns["latentis"](x, a), repeats=repeats
        )
        diff = float((fns["relstitch"](x[:1000], a) - fns["latentis"](x[:1000], a)).abs().max())
    return {"relstitch_s": ours, "latentis_s": theirs, "max_abs_diff": diff}


def worker_memory(library: str, n: int, d: int, k: int) -> dict:
    import torch
    from _common import peak_rss, reset_peak_rss

    x, a = inputs(n, d, k)
    fn = functions()[library]
    with torch.inference_mode():
        fn(x[:10], a)  # warm up kernels and allocators outside the measured peak
        base = reset_peak_rss()
        out = fn(x, a)
        growth = peak_rss() - base
    return {"peak_growth_mb": growth, "output_mb": out.numel() * out.element_size() / 1e6}


def in_venv(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{REPO}")
    run = subprocess.run(
        [str(venv_python()), str(Path(__file__)), *args], capture_output=True, text=True, env=env, cwd=REPO
    )
    if run.returncode != 0:
        raise SystemExit(f"worker failed: {run.stderr.strip()[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--k", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=["time", "memory"])
    parser.add_argument("--library")
    parser.add_argument("--n", type=int)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.worker == "time":
        print(json.dumps(worker_time(args.n, args.d, args.k, args.repeats)))
        return
    if args.worker == "memory":
        print(json.dumps(worker_memory(args.library, args.n, args.d, args.k)))
        return

    sys.path.insert(0, str(HERE))
    from _common import finish, report

    problem = ensure_venv()
    if problem:
        print(f"latentis peer comparison not run: {problem}")
        return
    for n in map(int, args.sizes.split(",")):
        common = ("--n", str(n), "--d", str(args.d), "--k", str(args.k))
        timing = in_venv(
            "--worker",
            "time",
            "--repeats",
            str(args.repeats if n < 10**6 else max(1, args.repeats - 1)),
            *common,
        )
        memory = {
            lib: in_venv("--worker", "memory", "--library", lib, *common) for lib in ("relstitch", "latentis")
        }
        report(
            "relstitch vs latentis cosine_proj",
            f"N={n} d={args.d} k={args.k} float32 cpu",
            timing["relstitch_s"],
            timing["latentis_s"],
            "latentis 0.0.8 cosine_proj (normalises a copy of x, then one matmul)",
            target="(peer)",
            extra={
                "peak growth MB relstitch": round(memory["relstitch"]["peak_growth_mb"]),
                "peak growth MB latentis": round(memory["latentis"]["peak_growth_mb"]),
                "output MB": round(memory["relstitch"]["output_mb"]),
                "max |difference|": f"{timing['max_abs_diff']:.1e}",
            },
        )
    finish(args.json)


if __name__ == "__main__":
    main()

"""eval-matrix at extreme shapes: N = 1,000,000 samples on k = 10,000 anchors, memory flat in N (issue #15).

    .venv/bin/python bench/extreme.py                            # N = 1e5 and 1e6, k = 1e4: minutes
    .venv/bin/python bench/extreme.py --n 20000 50000 --k 2000   # a quick look

One matrix at each N: two encoders given as precomputed embeddings files (``-e FILE.embeddings.safetensors``,
nothing to run: the shapes, not a model, are what is measured) × two relative heads, one fitted on each
encoder. Encoder B is encoder A rotated and rescaled (an orthogonal map times 3), so B's rows with A's head
are zero-shot stitched pairs; the latents are class-conditional Gaussians in ``--d`` dimensions, the
anchors ``--k`` draws of the same distribution.

At N x k = 10^6 x 10^4 the relative vectors alone are 40 GB: relstitch never holds them. Past the held
budget (``relstitch.runtime.held_budget``: ``RELSTITCH_MAX_HELD_MB``, set here by ``--held-mb``) each
decoder reads them batch by batch as they are projected (``ProjectedRows``), the latents are read from
their file slice by slice (``StoredRows``), and hits are counted per batch (``ClassificationCounts``).
What still grows with N is the labels and ids (16 bytes a sample).

Measured, each N a fresh ``relstitch eval-matrix`` command:

- peak resident memory of the command (``ru_maxrss``), at each N, and its growth per added sample next to
  what one encoder's latents, labels and ids take (``4 d + 16`` bytes) and what the relative vectors would
  take (``4 k``);
- the matrix's time (``run.timings.total_seconds``: reading both files and scoring the four pairs) against a
  bare loop in this process over the same files and heads: read the latents, then per batch of 1,024 rows
  the cosine to the anchors (two normalisations and a matrix product), the head, the argmax, the hits;
  the same batches and the same torch threads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import configure_threads, finish, measured_matrix, report

CLASSES = [f"class-{i}" for i in range(10)]


def latents(n: int, k: int, d: int, seed: int = 0) -> dict[str, Any]:
    """Encoder A's latents of n samples and k anchors, encoder B's (A rotated, times 3), the labels."""
    import torch

    g = torch.Generator().manual_seed(seed)
    means = torch.randn(len(CLASSES), d, generator=g) * 0.6
    labels = torch.randint(0, len(CLASSES), (n,), generator=g)
    anchor_labels = torch.randint(0, len(CLASSES), (k,), generator=g)
    a = means[labels] + torch.randn(n, d, generator=g)
    anchors_a = means[anchor_labels] + torch.randn(k, d, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    return {
        "labels": labels,
        "A": (a, anchors_a),
        "B": (a @ rotation * 3.0, anchors_a @ rotation * 3.0),
    }


def save_space(path: Path, name: str, absolute: Any, anchors: Any, labels: Any, anchor_hash: str) -> None:
    """An embeddings file of precomputed latents (no relative vectors: they follow from these)."""
    import hashlib

    import torch

    from relstitch.encoding import EncodedSpace, save_embeddings

    n = len(labels)
    data_hash = hashlib.sha256(labels.numpy().tobytes()).hexdigest()
    space = EncodedSpace(
        encoder_name=name,
        encoder_hash=hashlib.sha256(f"{name}|{n}".encode()).hexdigest(),
        absolute=absolute.contiguous(),
        anchor_absolute=anchors.contiguous(),
        labels=labels,
        ids=torch.arange(n),
        anchor_hash=anchor_hash,
        dataset={"name": f"synthetic[:{n}]", "size": n, "hash": data_hash, "classes": CLASSES},
    )
    save_embeddings(space, path, relative=False)


def prepare(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Embeddings files for every N (prefixes of one draw) and the two heads (fitted on 4,000 samples)."""
    import hashlib

    from relstitch.api import fit
    from relstitch.checkpoints import save_decoder
    from relstitch.encoding import load_embeddings

    started = time.perf_counter()
    drawn = latents(max(args.n), args.k, args.d)
    anchor_hash = hashlib.sha256(f"synthetic anchors k={args.k}".encode()).hexdigest()
    files: dict[int, list[Path]] = {}
    for n in args.n:
        files[n] = []
        for name in ("A", "B"):
            absolute, anchors = drawn[name]
            path = folder / f"{name}-{n}.embeddings.safetensors"
            save_space(path, f"enc-{name}", absolute[:n], anchors, drawn["labels"][:n], anchor_hash)
            files[n].append(path)
    heads = []
    fit_n = 4000
    for name in ("A", "B"):
        absolute, anchors = drawn[name]
        path = folder / f"fit-{name}.embeddings.safetensors"
        save_space(path, f"enc-{name}", absolute[-fit_n:], anchors, drawn["labels"][-fit_n:], anchor_hash)
        head = fit(load_embeddings(path), hidden=args.hidden, epochs=2, name=f"head-{name}")
        heads.append(save_decoder(head, folder / f"head-{name}.decoder.safetensors"))
    del drawn
    print(
        f"(prepared {len(args.n)} x 2 embeddings files and 2 heads in {time.perf_counter() - started:.0f} s)"
    )
    return {"files": files, "heads": heads}


def matrix_run(
    files: list[Path], heads: list[Path], out: Path, threads: int, held_mb: int | None
) -> dict[str, Any]:
    """One ``relstitch eval-matrix`` command in a fresh process, timed and its peak memory measured;
    ``held_mb``: its ``RELSTITCH_MAX_HELD_MB`` (None: relstitch's default budget)."""
    command = [sys.executable, "-m", "relstitch", "eval-matrix"]
    for path in files:
        command += ["-e", str(path)]
    for head in heads:
        command += ["-D", str(head)]
    command += ["--json", str(out), "--force"]
    budget = {} if held_mb is None else {"RELSTITCH_MAX_HELD_MB": str(held_mb)}
    return measured_matrix(command, out, OMP_NUM_THREADS=str(threads), **budget)


def bare_seconds(files: list[Path], heads: list[Path], batch: int = 1024) -> tuple[float, list[float]]:
    """The unavoidable work of the same matrix in a plain loop: read, project, head, count."""
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file

    from relstitch.checkpoints import load_decoder

    modules = [load_decoder(h).module.eval() for h in heads]
    started = time.perf_counter()
    accuracies = []
    with torch.inference_mode():
        for path in files:
            tensors = load_file(str(path))
            x, labels = tensors["absolute"], tensors["labels"]
            anchors = F.normalize(tensors["anchor_absolute"], dim=1)
            for module in modules:
                correct = 0
                for s in range(0, len(x), batch):
                    r = F.normalize(x[s : s + batch], dim=1) @ anchors.T
                    correct += int((module(r).argmax(1) == labels[s : s + batch]).sum())
                accuracies.append(correct / len(x))
            del tensors, x
    return time.perf_counter() - started, accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000], help="samples, each a run")
    parser.add_argument("--k", type=int, default=10_000, help="anchors")
    parser.add_argument("--d", type=int, default=64, help="latent size")
    parser.add_argument("--hidden", type=int, default=32, help="the heads' hidden width")
    parser.add_argument(
        "--held-mb",
        type=int,
        default=16,
        help="RELSTITCH_MAX_HELD_MB of the matrix: past it latents are read from their files slice by slice "
        "(default 16: below one encoder's latents at every N here, so the streamed path is the one measured)",
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    threads = configure_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        setup = prepare(folder, args)
        for n in args.n:
            run = matrix_run(setup["files"][n], setup["heads"], folder / f"m{n}.json", threads, args.held_mb)
            bare, accuracies = bare_seconds(setup["files"][n], setup["heads"])
            shown = [p["scores"]["accuracy"] for p in run["report"]["pairs"]]
            shapes = (
                f"N={n:,}, k={args.k:,}, d={args.d}, 2 encoders x 2 heads (hidden {args.hidden}), "
                f"RELSTITCH_MAX_HELD_MB={args.held_mb}"
            )
            report(
                f"extreme/N={n}",
                shapes,
                run["matrix"],
                bare,
                "bare loop: read, cosine, head, argmax (same batches)",
                higher_is_better=False,
                extra={
                    "peak_mb": round(run["peak_mb"]),
                    "wall_s": round(run["wall"], 1),
                    "accuracy": [round(a, 4) for a in shown],
                    "bare_accuracy": [round(a, 4) for a in accuracies],
                },
            )
            rows.append((n, run["peak_mb"]))
    for (n0, m0), (n1, m1) in zip(rows, rows[1:]):
        per_sample = (m1 - m0) * 1024**2 / (n1 - n0)
        print(
            f"peak memory {m0:,.0f} MB at N={n0:,} -> {m1:,.0f} MB at N={n1:,}: {per_sample:,.0f} bytes "
            f"per added sample; one encoder's latents take {4 * args.d} bytes a sample, labels and ids 16, "
            f"the relative vectors would take {4 * args.k:,} "
            f"({4 * args.k * n1 / 1024**3:,.1f} GB at N={n1:,})",
            flush=True,
        )
    print(f"(torch threads: {threads})")
    finish(args.json)


if __name__ == "__main__":
    main()

"""eval-matrix on a synthetic zoo of real-size encoders, in 1 and 2 processes (issue #15).

    .venv/bin/python bench/zoo.py                      # ~3 minutes on 2 cores: D=4 ResNet-18 at 64 px, N=300
    .venv/bin/python bench/zoo.py --encoders 8 --n 1000 --resize 96 --json zoo.json   # bigger

The zoo: ``--encoders`` D randomly initialised ``torchvision`` ResNet-18s (one seed each; nothing downloaded),
loaded the way a user loads them (``torchvision:resnet18#weights=FILE,resize=S,S``), and D relative heads,
one fitted on each encoder's embeddings of 200 training images (``relstitch.api.fit``). Each encoder reads
the ``--k`` anchors and the first ``--n`` images of ``--data`` (the built-in test set; ``builtin:train``
for N past its 1,000).

Measured, every run a fresh ``relstitch eval-matrix`` command (start-up included) with its own empty
``XDG_CACHE_HOME``, one torch thread per process, 1 and 2 processes alternated (A B A B, best of
``--repeats``):

- ``bare``: the unavoidable work, each encoder's forward passes over anchors and data in this process
  (``relstitch.encoding.embed``, the command's batch size), best of ``--repeats``; its sum, and the per-rank
  critical path for 2 processes (rank r runs encoders r, r+2, ...: the slower rank's sum);
- ``1 process`` / ``2 processes`` (``python -m torch.distributed.run --standalone --nproc-per-node 2``):
  wall time of the command, and ``run.timings.total_seconds`` of its report (the matrix itself, after
  start-up and loading the heads);
- the ratio of each to its bound, bare sum / processes (the goal: at most 1.15), and the speed-up of 2
  processes over 1 (the goal: at least 1.7 on two cores);
- peak memory: the largest resident size of any process of the run (for torchrun: the largest rank).

Results differ pair for pair nowhere: the script checks that the two reports' results are equal.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import configure_threads, finish, measured_matrix, report


def prepare(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Weights, anchors and heads in ``folder``; the encoder references and head files."""
    import torch
    import torchvision
    from safetensors.torch import save_file

    from relstitch.adapters import load_encoder_ref
    from relstitch.anchor_set import save_anchors
    from relstitch.anchors import select_anchors
    from relstitch.api import fit
    from relstitch.checkpoints import save_decoder
    from relstitch.data import load_dataset
    from relstitch.encoding import encode

    started = time.perf_counter()
    train = load_dataset("builtin:train")
    anchors = select_anchors(train, args.k, "stratified", seed=0)
    anchors_path = save_anchors(anchors, folder / "anchors.safetensors")
    fit_data = train.subset(torch.arange(1000, 1200), name="builtin:train[1000:1200]")
    refs, heads = [], []
    size = f"{args.resize},{args.resize}"
    for i in range(args.encoders):
        torch.manual_seed(i)
        weights = folder / f"r18-s{i}.safetensors"
        save_file(torchvision.models.resnet18(weights=None).state_dict(), str(weights))
        ref = f"torchvision:resnet18#weights={weights},resize={size},name=r18-s{i}"
        refs.append(ref)
        space = encode(load_encoder_ref(ref, allow_embeddings=False), anchors, fit_data)
        head = fit(space, epochs=2, name=f"head-s{i}")
        heads.append(save_decoder(head, folder / f"head-s{i}.decoder.safetensors"))
    print(
        f"(prepared {args.encoders} encoders and heads in {time.perf_counter() - started:.0f} s)", flush=True
    )
    return {"refs": refs, "heads": heads, "anchors": anchors_path}


def bare_seconds(setup: dict[str, Any], args: argparse.Namespace) -> list[float]:
    """Each encoder's forward passes over the anchors and the data (best of ``--repeats``)."""
    import torch

    from relstitch.adapters import load_encoder_ref
    from relstitch.anchor_set import load_anchors
    from relstitch.data import load_dataset
    from relstitch.encoding import embed, inputs_for

    anchors = load_anchors(setup["anchors"])
    data = load_dataset(args.data)
    data = data.subset(torch.arange(args.n), name=f"{args.data}[:{args.n}]")
    out = []
    for ref in setup["refs"]:
        encoder = load_encoder_ref(ref, allow_embeddings=False)
        xa, xd = inputs_for(encoder, anchors), inputs_for(encoder, data)
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            embed(encoder, xa, batch_size=256)
            embed(encoder, xd, batch_size=256)
            best = min(best, time.perf_counter() - t0)
        out.append(best)
    return out


def matrix_run(setup: dict[str, Any], args: argparse.Namespace, processes: int, out: Path) -> dict[str, Any]:
    """One ``relstitch eval-matrix`` command in a fresh process (or torchrun), timed from outside."""
    launcher = [sys.executable, "-m", "relstitch"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launcher += [f"--nproc-per-node={processes}", "-m", "relstitch"]
    command = [*launcher, "eval-matrix", "-a", str(setup["anchors"]), "--limit", str(args.n)]
    for ref in setup["refs"]:
        command += ["-e", ref]
    for head in setup["heads"]:
        command += ["-D", str(head)]
    command += ["--data", args.data, "--device", "cpu", "--json", str(out), "--force"]
    return measured_matrix(command, out, OMP_NUM_THREADS="1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", type=int, default=4, help="D: encoders, and as many heads")
    parser.add_argument("--n", type=int, default=300, help="images each encoder reads")
    parser.add_argument(
        "--data",
        default="builtin:test",
        help="builtin:test (1,000 images) or builtin:train (6,000) for larger N",
    )
    parser.add_argument("--k", type=int, default=64, help="anchors")
    parser.add_argument("--resize", type=int, default=64, help="image side the ResNets read")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    configure_threads()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        setup = prepare(folder, args)
        bare = bare_seconds(setup, args)
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for _ in range(args.repeats):  # alternated: A B A B
            for processes in (1, 2):
                runs[processes].append(matrix_run(setup, args, processes, folder / f"m{processes}.json"))
    best = {p: min(r, key=lambda x: x["wall"]) for p, r in runs.items()}
    same = [
        json.dumps({k: v for k, v in b["report"].items() if k != "run"}, sort_keys=True)
        for b in best.values()
    ]
    assert same[0] == same[1], "the 2-process report differs from the single-process one"
    shapes = (
        f"D={args.encoders} ResNet-18 @ {args.resize} px x {args.encoders} heads, N={args.n} of {args.data}, "
        f"k={args.k}"
    )
    total = sum(bare)
    critical = max(sum(bare[r::2]) for r in range(2))
    print(
        f"bare forward per encoder: {', '.join(f'{s:.2f}' for s in bare)} s (sum {total:.2f} s); "
        f"2-process critical path {critical:.2f} s",
        flush=True,
    )
    for processes, b in best.items():
        bound = total / processes
        extra = {"peak_mb_per_rank": round(b["peak_mb"]), "matrix_s": round(b["matrix"], 2)}
        report(
            f"zoo/{processes}p wall / bound",
            shapes,
            b["wall"],
            bound,
            f"sum of bare forward passes / {processes}",
            target="<= 1.15",
            higher_is_better=False,
            extra=extra,
        )
        report(
            f"zoo/{processes}p matrix / bound",
            shapes,
            b["matrix"],
            bound,
            f"sum of bare forward passes / {processes} (report's total_seconds: no start-up)",
            target="<= 1.15",
            higher_is_better=False,
        )
    report("zoo/2p speed-up (wall)", shapes, best[2]["wall"], best[1]["wall"], "1 process", target=">= 1.7")
    report(
        "zoo/2p speed-up (matrix)", shapes, best[2]["matrix"], best[1]["matrix"], "1 process", target=">= 1.7"
    )
    finish(args.json)


if __name__ == "__main__":
    main()

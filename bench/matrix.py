"""eval-matrix: total time vs the passes it cannot avoid, and vs a naive loop that re-encodes for every pair.

    .venv/bin/python bench/matrix.py    # the shipped zoo (8 encoders x 8 decoders), builtin:test (1,000)

Baseline 1, the floor: the sum of every encoder's forward passes over the anchors and the data, plus
every head's pass over the inputs it reads, each as a bare loop over the same batches (target: the
matrix takes <= 1.15 x that). Baseline 2, the naive loop: ``stitch`` for every (encoder, decoder) pair,
which encodes the data and the anchors again each time (target: >= D/2 times slower than the matrix).

The row gives the CPU seconds (all threads) of the matrix and of the floor beside the wall time. Both
sides run under ``tune_allocator()``, as the CLI does.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from _common import REPO, configure_threads, finish, interleaved, report, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="builtin:test")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()

    from relstitch.runtime import tune_allocator

    tuned = tune_allocator()  # before any tensor: both sides of the ratio run under it, as under the CLI

    import torch

    configure_threads()

    from relstitch.anchors import load_anchors
    from relstitch.checkpoints import load_decoder, load_encoder
    from relstitch.data import load_dataset
    from relstitch.encoding import encode
    from relstitch.errors import RelstitchError
    from relstitch.matrix import eval_matrix
    from relstitch.stitching import decoder_inputs, stitch

    zoo = REPO / "checkpoints"
    encoder_paths = sorted(zoo.glob("*.encoder.safetensors"))
    decoders = [load_decoder(p) for p in sorted(zoo.glob("*.decoder.safetensors"))]
    anchors, dataset = load_anchors(zoo / "anchors.safetensors"), load_dataset(args.data)
    _ = anchors.hash, dataset.hash
    encoders = [load_encoder(p) for p in encoder_paths]
    spaces = [encode(e, anchors, dataset, batch_size=args.batch_size) for e in encoders]
    B = args.batch_size

    @torch.inference_mode()
    def floor() -> None:
        for encoder in encoders:
            for x in (anchors.inputs, dataset.x):
                for s in range(0, len(x), B):
                    encoder.module(encoder.prepare(x[s : s + B]))
        for space in spaces:
            for decoder in decoders:
                try:
                    inputs = decoder_inputs(space, decoder)
                except RelstitchError:
                    continue  # a pair the matrix refuses costs no head pass either
                for s in range(0, len(inputs), 1024):
                    decoder.module(inputs[s : s + 1024])

    def matrix() -> None:
        eval_matrix(encoder_paths, decoders, anchors, dataset, batch_size=B)

    shapes = (
        f"{len(encoder_paths)} encoders x {len(decoders)} decoders, N={len(dataset)} ({args.data}), "
        f"k={len(anchors)}, batch {B}"
    )
    floor_is = "sum of bare encoder passes (anchors + data) and head passes over the same batches, one thread"
    ours, bare = interleaved(matrix, floor, repeats=args.repeats)
    extra = {
        "matrix_cpu_s": round(cpu_seconds(matrix, args.repeats), 4),
        "floor_cpu_s": round(cpu_seconds(floor, args.repeats), 4),
        "allocator_tuned": tuned,
    }
    report(
        "eval-matrix vs its passes",
        shapes,
        ours,
        bare,
        floor_is,
        target="<= 1.15",
        higher_is_better=False,
        extra=extra,
    )

    def naive() -> None:
        for path in encoder_paths:
            for decoder in decoders:
                try:
                    stitch(load_encoder(path), decoder, anchors, dataset, batch_size=B)
                except RelstitchError:
                    pass

    naive_s = timed(naive)  # one run: it is the slow side by construction
    report(
        "naive re-encode loop vs eval-matrix",
        shapes,
        ours,
        naive_s,
        "stitch() for every pair (re-encodes each time)",
        target=f">= D/2 = {len(decoders) / 2:g}",
    )
    started = time.perf_counter()
    result = eval_matrix(encoder_paths, decoders, anchors, dataset, batch_size=B)
    print(
        f"(one more matrix run: {time.perf_counter() - started:.2f} s, of which encoding "
        f"{result.timings['encode_seconds']:.2f} s)"
    )
    finish(args.json)


def cpu_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Best process CPU time (every thread) of ``fn`` over ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


if __name__ == "__main__":
    main()

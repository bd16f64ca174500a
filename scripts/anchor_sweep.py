"""Stitched accuracy as a function of anchor strategy, anchor count and projection, on the built-in data.

Frozen encoders: the shipped zoo's absolute-bottleneck CNNs (``cnn-abs-s0..s2``, trained without any
anchors, so no anchor set is favoured). For each anchor set, a relative head (``fit``) is trained on
seed 0's and on seed 1's relative vectors of the 6,000 built-in training images; each head is then
scored on the 1,000 test images through its own encoder (not stitched) and through the two other
seeds' encoders (stitched, zero-shot), plus the null baseline (the stitched encoder's anchors shuffled).
Every step is the library's public API (select_anchors, encode, fit, evaluate_pair).

``--end-to-end`` instead trains, for every strategy and count, two small CNNs (seeds 0 and 1) with a
relative bottleneck on those anchors (``train``), and stitches them both ways.

    python scripts/anchor_sweep.py [--epochs 4] [--json sweep.json]
    python scripts/anchor_sweep.py --end-to-end [--epochs 3]

Took 18 s on an idle 2-core x86_64 CPU (about a minute when the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from statistics import mean

import torch

from relstitch.anchors import select_anchors
from relstitch.checkpoints import load_encoder
from relstitch.controls import shuffled_anchor_space
from relstitch.data import load_dataset
from relstitch.encoding import EncodedSpace, embed, encode
from relstitch.projection import ProjectionConfig
from relstitch.stitching import evaluate_pair
from relstitch.training import FitConfig, TrainConfig, fit
from relstitch.training import train as train_models

ZOO = Path(__file__).resolve().parent.parent / "checkpoints"
SEEDS = (0, 1, 2)
HEAD_SEEDS = (0, 1)
STRATEGIES = ("uniform", "stratified", "farthest-point", "kmeans")
COUNTS = (10, 50, 100, 300, 500)
PROJECTIONS = {
    "cosine": ProjectionConfig(),
    "cosine, center": ProjectionConfig(centering="center"),
    "angular": ProjectionConfig(similarity="angular"),
    "euclidean, standard": ProjectionConfig(similarity="euclidean", normalization="standard"),
    "l1, standard": ProjectionConfig(similarity="l1", normalization="standard"),
    "cosine+euclidean+l1+linf, standard": ProjectionConfig(
        similarity="cosine,euclidean,l1,linf", normalization="standard"
    ),
    "cosine, top-30": ProjectionConfig(top_k=30),
}


def space_of(
    name: str,
    encoder_hash: str,
    absolute: torch.Tensor,
    anchor_absolute: torch.Tensor,
    labels: torch.Tensor,
    dataset: dict,
) -> EncodedSpace:
    return EncodedSpace(
        name, encoder_hash, absolute, anchor_absolute, labels, torch.arange(len(labels)), "sweep", dataset
    )


def run(anchors, encoders, latents, data, projection: ProjectionConfig, epochs: int) -> dict[str, float]:
    """Fit heads on the HEAD_SEEDS, score every encoder on each: mean accuracy per setting."""
    anchor_latents = {s: embed(encoders[s], anchors.inputs) for s in SEEDS}
    train, test = data
    own, stitched, null = [], [], []
    for h in HEAD_SEEDS:
        train_space = space_of(
            f"s{h}",
            encoders[h].hash,
            latents[h]["train"],
            anchor_latents[h],
            train.y,
            {"name": train.name, "classes": train.classes},
        )
        head = fit(
            train_space,
            FitConfig(epochs=epochs, batch_size=128, seed=0, val=0.0),
            projection=projection,
            name=f"head-s{h}",
        )
        for s in SEEDS:
            test_space = space_of(
                f"s{s}",
                encoders[s].hash,
                latents[s]["test"],
                anchor_latents[s],
                test.y,
                {"name": test.name, "classes": test.classes},
            )
            accuracy = evaluate_pair(test_space, head).scores["accuracy"]
            if s == h:
                own.append(accuracy)
            else:
                stitched.append(accuracy)
                null.append(evaluate_pair(shuffled_anchor_space(test_space), head).scores["accuracy"])
    return {
        "not_stitched": mean(own),
        "stitched": mean(stitched),
        "stitched_min": min(stitched),
        "null": mean(null),
    }


def end_to_end(train, test, epochs: int) -> list[dict]:
    """Two relative CNNs per anchor set, trained on it end to end, stitched both ways."""
    rows = []
    print("| strategy | anchors | not stitched | stitched (both ways) | null baseline |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for strategy in STRATEGIES:
        for count in COUNTS:
            anchors = select_anchors(train, count, strategy, seed=0)
            models = [
                train_models(train, anchors, TrainConfig(arch="cnn", epochs=epochs, seed=s), name=f"s{s}")
                for s in HEAD_SEEDS
            ]
            spaces = [encode(encoder, anchors, test) for encoder, _ in models]
            own = [evaluate_pair(spaces[i], models[i][1]).scores["accuracy"] for i in range(2)]
            stitched = [evaluate_pair(spaces[1 - i], models[i][1]).scores["accuracy"] for i in range(2)]
            null = [
                evaluate_pair(shuffled_anchor_space(spaces[1 - i]), models[i][1]).scores["accuracy"]
                for i in range(2)
            ]
            rows.append(
                {
                    "strategy": strategy,
                    "count": count,
                    "end_to_end": True,
                    "not_stitched": mean(own),
                    "stitched": mean(stitched),
                    "stitched_min": min(stitched),
                    "null": mean(null),
                }
            )
            print(
                f"| {strategy} | {count} | {mean(own):.3f} | {mean(stitched):.3f} ({min(stitched):.3f}) | "
                f"{mean(null):.3f} |",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)  # batch 128: 188 Adam steps per head
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--end-to-end", action="store_true", help="train relative CNN pairs per anchor set instead"
    )
    args = parser.parse_args()
    # Small matrices: one thread is faster, and on a shared 2-core machine many times faster.
    torch.set_num_threads(1)
    started = time.perf_counter()
    train, test = load_dataset("builtin:train"), load_dataset("builtin:test")
    if args.end_to_end:
        rows = end_to_end(train, test, args.epochs)
        print(
            f"\n{time.perf_counter() - started:.0f} s; 2 relative CNNs per anchor set (seeds {HEAD_SEEDS}, "
            f"{args.epochs} epochs on builtin:train), test = builtin:test (1,000 images)"
        )
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
        return
    encoders = {s: load_encoder(ZOO / f"cnn-abs-s{s}.encoder.safetensors") for s in SEEDS}
    latents = {s: {"train": embed(encoders[s], train.x), "test": embed(encoders[s], test.x)} for s in SEEDS}
    rows = []
    print("| strategy | anchors | not stitched | stitched (mean, min) | null baseline |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for strategy in STRATEGIES:
        for count in COUNTS:
            t0 = time.perf_counter()
            anchors = select_anchors(train, count, strategy, seed=0)
            scores = run(anchors, encoders, latents, (train, test), ProjectionConfig(), args.epochs)
            rows.append(
                {
                    "strategy": strategy,
                    "count": count,
                    "projection": "cosine",
                    **scores,
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(
                f"| {strategy} | {count} | {scores['not_stitched']:.3f} | {scores['stitched']:.3f} "
                f"({scores['stitched_min']:.3f}) | {scores['null']:.3f} |",
                flush=True,
            )
    print("\n| projection (300 uniform anchors) | not stitched | stitched (mean, min) | null baseline |")
    print("| --- | ---: | ---: | ---: |")
    anchors = select_anchors(train, 300, "uniform", seed=0)
    for label, projection in PROJECTIONS.items():
        scores = run(anchors, encoders, latents, (train, test), projection, args.epochs)
        rows.append({"strategy": "uniform", "count": 300, "projection": label, **scores})
        print(
            f"| {label} | {scores['not_stitched']:.3f} | "
            f"{scores['stitched']:.3f} ({scores['stitched_min']:.3f}) | "
            f"{scores['null']:.3f} |",
            flush=True,
        )
    print(
        f"\n{time.perf_counter() - started:.0f} s; encoders cnn-abs-s0..s2 frozen, heads fitted on seeds "
        f"{HEAD_SEEDS} ({args.epochs} epochs), 4 stitched pairs per cell, test = builtin:test (1,000 images)"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Experiment 7 — anchor count: stitched accuracy against the number of anchors (10 to 1,000).

For experiment 1's setting: the CNNs trained from scratch with an *absolute* bottleneck (experiment 1's
checkpoints, trained here if experiment 1 has not run), frozen, so that no anchor set is favoured by
training; for each count, uniform anchors from the training set (seed 0; a larger set contains the smaller
ones), a relative head fitted on each seed's relative vectors (``relstitch.training.fit``) and scored through
its own encoder and every other seed's (stitched). Retraining end to end once per count would cost six times
experiment 1.

For experiment 3's setting: the frozen EfficientNet-Lite0/Lite2 embeddings of experiment 3 (computed here if
it has not run); anchors are drawn from the same training pool, so their latents are rows of the pool's
embeddings (an encoder in eval mode embeds a sample the same way alone or in a batch).

    python experiments/exp7_anchor_count.py [--quick] [--threads N]
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import common
import exp1_seeds_architectures as exp1
import exp3_pretrained_vision as exp3

FULL = {
    "counts": [10, 30, 100, 300, 500, 1000],
    "cnn_seeds": [0, 1, 2],
    "head_train": 20000,
    "test": None,
    "epochs": 5,
    "hidden": 128,
    "batch_size": 256,
    "vision_head_seeds": [0, 1],
    "vision_epochs": 10,
    "vision_hidden": 256,
}
QUICK = {
    "counts": [10, 50],
    "cnn_seeds": [0, 1],
    "head_train": 1000,
    "test": 300,
    "epochs": 2,
    "hidden": 64,
    "batch_size": 128,
    "vision_head_seeds": [0],
    "vision_epochs": 2,
    "vision_hidden": 64,
}


def cnn_sweep(run: common.Run, config: dict, args) -> list[dict]:
    """Relative heads on frozen absolute-bottleneck CNNs of experiment 1, per anchor count."""
    from relstitch.anchors import select_anchors
    from relstitch.encoding import encode
    from relstitch.stitching import evaluate_pair
    from relstitch.training import FitConfig, fit

    exp1_config = exp1.QUICK if run.quick else exp1.FULL
    exp1_run = common.Run("exp1_seeds_architectures", _no_fresh(args), exp1_config)
    train_full = common.fashion_mnist("train")
    names = {f"cnn-abs-s{s}" for s in config["cnn_seeds"]}
    encoders = {
        n: enc for n, (enc, _) in exp1.train_all(exp1_run, exp1_config, train_full, None, only=names).items()
    }
    head_data = common.seeded_subset(train_full, config["head_train"], 1, "heads")
    test = common.seeded_subset(common.fashion_mnist("test"), config["test"], 0, "test")
    rows = []
    for count in config["counts"]:
        anchors = select_anchors(train_full, count, "uniform", seed=0)
        train_spaces = {n: encode(e, anchors, head_data) for n, e in encoders.items()}
        test_spaces = {n: encode(e, anchors, test) for n, e in encoders.items()}
        for head_enc in sorted(encoders):
            cfg = FitConfig(
                val=0.0,  # every sample trains, as when RESULTS.md was measured
                space="relative",
                head="vision-head",
                hidden=config["hidden"],
                epochs=config["epochs"],
                batch_size=config["batch_size"],
                seed=0,
            )
            label = f"cnn-k{count}-{head_enc}"
            fit_it = functools.partial(fit, train_spaces[head_enc], cfg, name=label)
            head = run.step(f"fit {label}", common.cached_decoder, run, label, fit_it)
            for enc in sorted(encoders):
                result = evaluate_pair(test_spaces[enc], head, test)
                rows.append(
                    {
                        "setting": "cnn",
                        "anchors": count,
                        "encoder": enc,
                        "head_encoder": head_enc,
                        "stitched": enc != head_enc,
                        **result.scores,
                    }
                )
    return rows


def _no_fresh(args):
    """Experiment 1's work is reused as it is: --fresh here concerns experiment 7's own files only."""
    import argparse

    return argparse.Namespace(**{**vars(args), "fresh": False})


def vision_sweep(run: common.Run, config: dict, args) -> list[dict]:
    """Relative heads on experiment 3's frozen EfficientNet-Lite embeddings, per anchor count."""
    import torch

    from relstitch.stitching import evaluate_pair
    from relstitch.training import FitConfig, fit

    exp3_config = exp3.QUICK if run.quick else exp3.FULL
    exp3_run = common.Run("exp3_pretrained_vision", _no_fresh(args), exp3_config)
    train_spaces, test_spaces, test, _ = exp3.spaces(exp3_run, exp3_config)
    pool = len(next(iter(train_spaces.values())).absolute)
    order = torch.randperm(pool, generator=torch.Generator().manual_seed(0))
    rows = []
    for count in config["counts"]:
        positions = order[: min(count, pool)]

        def with_anchors(space, positions=positions, count=count):  # anchors = rows of the training pool
            return dataclasses.replace(
                space,
                anchor_absolute=space.absolute[positions],
                anchor_hash=f"pool-uniform-s0-k{count}",
                _relative_cache={},
            )

        trains = {n: with_anchors(s) for n, s in train_spaces.items()}
        tests = {
            n: dataclasses.replace(
                s,
                anchor_absolute=trains[n].anchor_absolute,
                anchor_hash=trains[n].anchor_hash,
                _relative_cache={},
            )
            for n, s in test_spaces.items()
        }
        for head_enc, seed in itertools.product(exp3.ENCODERS, config["vision_head_seeds"]):
            cfg = FitConfig(
                val=0.0,  # every sample trains, as when RESULTS.md was measured
                space="relative",
                head="vision-head",
                hidden=config["vision_hidden"],
                epochs=config["vision_epochs"],
                batch_size=64,
                seed=seed,
            )
            label = f"effnet-k{count}-{head_enc}-s{seed}"
            fit_it = functools.partial(fit, trains[head_enc], cfg, name=label)
            head = run.step(f"fit {label}", common.cached_decoder, run, label, fit_it)
            for enc in exp3.ENCODERS:
                result = evaluate_pair(tests[enc], head, test)
                rows.append(
                    {
                        "setting": "efficientnet",
                        "anchors": count,
                        "encoder": enc,
                        "head_encoder": head_enc,
                        "head_seed": seed,
                        "stitched": enc != head_enc,
                        **result.scores,
                    }
                )
    return rows


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    config = QUICK if args.quick else FULL
    run = common.Run("exp7_anchor_count", args, config)
    rows = cnn_sweep(run, config, args) + vision_sweep(run, config, args)
    table_rows, summaries = [], []
    for count in config["counts"]:
        line = [f"{count:,}"]
        for setting, stitched in itertools.product(("cnn", "efficientnet"), (False, True)):
            values = [
                r["accuracy"]
                for r in rows
                if r["setting"] == setting and r["anchors"] == count and r["stitched"] == stitched
            ]
            summaries.append(
                {"setting": setting, "anchors": count, "stitched": stitched, **common.summary(values)}
            )
            line.append(common.mean_std(values))
        table_rows.append(line)
    test_size = "full 10,000-image" if config["test"] is None else f"{config['test']:,}-image"
    table = common.table(
        ["anchors", "CNN not stitched", "CNN stitched", "EfficientNet not stitched", "EfficientNet stitched"],
        table_rows,
    )
    md = f"""## 7. Anchor count (10 to 1,000)

Test accuracy (%) of relative heads, mean ± std over pairs, against the number of uniform anchors.
CNN: experiment 1's absolute-bottleneck CNNs (seeds {config["cnn_seeds"]}) frozen, \
one relative head per seed fitted on
{config["head_train"]:,} seeded training images ({config["epochs"]} epochs), \
scored on the {test_size} test set;
stitched = a head fed by another seed's encoder. EfficientNet: experiment 3's frozen Lite0/Lite2 embeddings
(same pool, resolution and test subset), heads over seeds {config["vision_head_seeds"]}; \
stitched = the other network.

{table}

Paper: anchor counts of 300 to 1,280 by setting (Moschella et al. 2023), \
and accuracy grows with the number of anchors
until it saturates (the paper's anchor-count ablation; no number for it in the paper). Here the heads are \
fitted
on frozen encoders rather than trained end to end per count (that would cost six times experiment 1)."""
    run.finish({"rows": rows, "summary": summaries}, md)


if __name__ == "__main__":
    main()

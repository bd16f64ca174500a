"""Experiment 2 — reconstruction: stitching convolutional autoencoders across seeds.

Fashion-MNIST, the convolutional autoencoder (``conv-ae`` encoder + ``conv-decoder``) trained end to end
with a relative bottleneck (500 uniform anchors, the paper's count for AEs) or an absolute one, several
seeds. Every encoder is paired with every decoder of its space: pixel MSE (images in [0, 1]) not stitched
(own decoder) vs stitched (another seed's decoder, zero-shot). A PNG grid shows test images: original,
not stitched, stitched relative, stitched absolute.

Scale (full run): the AE is the costliest small model here (two 4x4 convolutions at 14x14 and 7x7 plus
500 anchor images embedded at every step), so 5 seeds x 2 spaces are trained on a seeded subset of the
training set and scored on a seeded test subset; the sizes are in the table's note.

    python experiments/exp2_reconstruction.py [--quick] [--threads N]
"""

from __future__ import annotations

import functools
import itertools

import common

FULL = {
    "anchors": 500,
    "anchor_seed": 0,
    "latent_dim": 64,
    "batch_size": 256,
    "lr": 1e-3,
    "epochs": 3,
    "seeds": [0, 1, 2, 3, 4],
    "train": 20000,
    "test": 2000,
    "grid_images": 10,
}
QUICK = {
    "anchors": 64,
    "anchor_seed": 0,
    "latent_dim": 32,
    "batch_size": 128,
    "lr": 1e-3,
    "epochs": 1,
    "seeds": [0, 1],
    "train": 1000,
    "test": 200,
    "grid_images": 8,
}
SPACES = ("relative", "absolute")
PNG = common.ROOT / "docs" / "exp2_reconstructions.png"


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    config = QUICK if args.quick else FULL
    run = common.Run("exp2_reconstruction", args, config)
    import torch

    from relstitch.anchors import select_anchors
    from relstitch.encoding import encode
    from relstitch.stitching import decoder_inputs, evaluate_pair
    from relstitch.training import TrainConfig, train

    train_full = common.fashion_mnist("train")
    data = common.seeded_subset(train_full, config["train"], 0, "train")
    test = common.seeded_subset(common.fashion_mnist("test"), config["test"], 0, "test")
    anchors = select_anchors(train_full, config["anchors"], "uniform", seed=config["anchor_seed"])
    trained = {}
    for seed, space in itertools.product(config["seeds"], SPACES):
        name = f"ae-{space[:3]}-s{seed}"
        cfg = TrainConfig(
            arch="conv-ae",
            task="reconstruction",
            space=space,
            seed=seed,
            epochs=config["epochs"],
            latent_dim=config["latent_dim"],
            batch_size=config["batch_size"],
            lr=config["lr"],
        )
        train_it = functools.partial(train, data, anchors if space == "relative" else None, cfg, name=name)
        trained[name] = run.step(f"train {name}", common.cached_models, run, name, train_it)
    spaces = {
        name: run.step(
            f"encode {name}",
            common.cached_space,
            run,
            f"{name}.embeddings.safetensors",
            functools.partial(encode, enc, anchors, test),
        )
        for name, (enc, _) in trained.items()
    }

    pairs = []
    for space in SPACES:
        names = [n for n in trained if f"-{space[:3]}-" in n]
        for enc, dec in itertools.product(names, names):
            result = evaluate_pair(spaces[enc], trained[dec][1], test)
            pairs.append(
                {"encoder": enc, "decoder": dec, "space": space, "stitched": enc != dec, **result.scores}
            )
    rows, summaries = [], {}
    for space in SPACES:
        own = [p["mse"] for p in pairs if p["space"] == space and not p["stitched"]]
        other = [p["mse"] for p in pairs if p["space"] == space and p["stitched"]]
        summaries[space] = {"not_stitched": common.summary(own), "stitched": common.summary(other)}
        rows.append(
            [
                space,
                common.mean_std(own, 1.0, 4),
                common.mean_std(other, 1.0, 4),
                f"{summaries[space]['stitched']['mean'] / summaries[space]['not_stitched']['mean']:.1f}x",
            ]
        )

    # The picture: the first test images through seed 0's decoder, fed by seed 0 (own) and by seed 1
    # (stitched).
    from torchvision.utils import save_image

    n = config["grid_images"]
    s0, s1 = config["seeds"][0], config["seeds"][1]

    def decoded(enc: str, dec: str) -> torch.Tensor:
        decoder = trained[dec][1]
        with torch.inference_mode():
            return decoder.module(decoder_inputs(spaces[enc], decoder)[:n])

    grid = torch.cat(
        [
            test.x[:n].float() / 255.0,
            decoded(f"ae-rel-s{s0}", f"ae-rel-s{s0}"),
            decoded(f"ae-rel-s{s1}", f"ae-rel-s{s0}"),
            decoded(f"ae-abs-s{s1}", f"ae-abs-s{s0}"),
        ]
    )
    png = run.work / PNG.name if run.quick else PNG
    save_image(grid, png, nrow=n, padding=1, pad_value=1.0)
    md = f"""## 2. Reconstruction (Fashion-MNIST, convolutional autoencoders)

Test pixel MSE (images in [0, 1]; lower is better), mean ± std over encoder/decoder pairs of seeds
{config["seeds"]}: not stitched = own decoder, stitched = every other seed's decoder, zero-shot.

{common.table(["bottleneck", "MSE not stitched", "MSE stitched", "stitched / not stitched"], rows)}

![reconstructions](exp2_reconstructions.png)

Rows of the picture: original test images; relative AE seed {s0} (not stitched); encoder seed {s1} → relative
decoder seed {s0} (stitched); encoder seed {s1} → absolute decoder seed {s0} (stitched).

Scale: {config["train"]:,} seeded training images (of 60,000), {config["epochs"]} epochs, \
scored on {config["test"]:,} seeded
test images; {config["anchors"]} uniform anchors; latent {config["latent_dim"]}; Adam lr {config["lr"]}, batch
{config["batch_size"]}. The AE is trained on a subset to fit the 45-minute CPU budget of the whole suite.

Paper: stitched relative AEs reconstruct, stitched absolute AEs produce garbage (a figure only; \
Moschella et al. 2023
has no trusted MSE table to set beside ours)."""
    run.finish(
        {
            "pairs": pairs,
            "summary": summaries,
            "png": str(png.relative_to(common.ROOT)),
            "anchor_hash": anchors.hash,
        },
        md,
    )


if __name__ == "__main__":
    main()

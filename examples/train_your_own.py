"""Train your own model with relstitch's relative layer, save it, and stitch it zero-shot.

    python examples/train_your_own.py              # about a minute on a laptop CPU
    python examples/train_your_own.py --fast       # a few seconds: fewer samples and epochs

A user-defined CNN (``examples/my_models.py``, not from relstitch's registry) is trained in plain PyTorch
for two seeds with a :class:`relstitch.nn.RelativeProjection` bottleneck (the anchors embedded by the same
encoder at every step, without gradient) and one of the authors' heads (:class:`relstitch.nn.RelativeHead`).
Both are saved as relstitch checkpoints (``save_encoder`` with the factory that builds the CNN,
``save_decoder``), then ``relstitch eval-matrix --trust-code`` scores every encoder with every decoder:
the off-diagonal cells are zero-shot stitches of two independent trainings.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from my_models import build_encoder  # this folder is on sys.path when the script runs

from relstitch.anchors import Anchors, save_anchors, select_anchors
from relstitch.checkpoints import save_decoder, save_encoder
from relstitch.data import Dataset, default_image_spec, load_dataset, prepare_images
from relstitch.nn import RelativeHead, RelativeProjection

HERE = Path(__file__).resolve().parent
FACTORY = "my_models:build_encoder"


def train_one(
    seed: int,
    data: Dataset,
    anchors: Anchors,
    spec: dict[str, Any],
    *,
    latent_dim: int,
    epochs: int,
    out: Path,
) -> None:
    """Train encoder + relative head end to end for one seed and save both checkpoints."""
    torch.manual_seed(seed)
    encoder = build_encoder(latent_dim=latent_dim)
    # The relative layer: anchors embedded by this very encoder at each step (no gradient through them).
    layer = RelativeProjection(anchors, embed=lambda a: encoder(prepare_images(a, spec)))
    head = RelativeHead(layer, num_classes=len(data.classes))  # LayerNorm → Linear → Tanh → … (the authors')
    params = list(encoder.parameters()) + list(head.parameters())
    optimiser = torch.optim.Adam(params, lr=2e-3)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(data), generator=order).split(128):
            logits = head(encoder(prepare_images(data.x[idx], spec)))
            loss = F.cross_entropy(logits, data.y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    name = f"mycnn-s{seed}"
    encoder_file = save_encoder(
        encoder.eval(),
        out / f"{name}.encoder.safetensors",
        factory=FACTORY,
        factory_kwargs={"latent_dim": latent_dim},
        input_spec=spec,
        force=True,
    )
    save_decoder(
        head.eval(),
        out / f"{name}.decoder.safetensors",
        task={"type": "classification", "classes": list(data.classes)},
        encoder=encoder_file,  # so the matrix knows its diagonal
        force=True,
    )
    print(f"trained {name}: final batch loss {loss.item():.3f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("train-your-own"), help="folder for the checkpoints")
    parser.add_argument("--fast", action="store_true", help="fewer samples and epochs (for tests)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=None, help="[default: 4, or 2 with --fast]")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("builtin:train", limit=2000 if args.fast else None)
    anchors = select_anchors(data, 100, "uniform", seed=0)
    anchors_file = save_anchors(anchors, args.out / "anchors.safetensors", force=True)
    spec = default_image_spec(tuple(data.x.shape[1:]))  # scale to [0, 1], Fashion-MNIST mean/std
    epochs = args.epochs or (2 if args.fast else 4)
    for seed in args.seeds:
        train_one(seed, data, anchors, spec, latent_dim=64, epochs=epochs, out=args.out)
    print(f"trained {len(args.seeds)} models in {time.perf_counter() - started:.0f} s\n", flush=True)
    # The checkpoints name a factory (code): relstitch imports it only with --trust-code, from PYTHONPATH.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    command = [
        sys.executable, "-m", "relstitch", "eval-matrix",
        "-e", str(args.out / "*.encoder.safetensors"),
        "-D", str(args.out / "*.decoder.safetensors"),
        "--anchors", str(anchors_file),
        "--data", "builtin:test",
        "--method", "relative",
        "--json", str(args.out / "report.json"),
        "--trust-code", "--force",
    ]  # fmt: skip
    print("$ relstitch " + " ".join(command[3:]), flush=True)
    return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())

"""Make the built-in dataset: a stratified Fashion-MNIST subset shipped inside the package.

Reads the full IDX files of Debian's ``dataset-fashion-mnist`` (``apt-get install
dataset-fashion-mnist``; MIT licence) and keeps, per class, the first N_TRAIN/10 training and
N_TEST/10 test images of a seeded permutation. Rerunning it reproduces the file byte for byte.

    python scripts/make_builtin_data.py [--source /usr/share/datasets/fashion-mnist]
"""

from __future__ import annotations

import argparse
import json

import torch
from safetensors.torch import save

from relstitch.data import BUILTIN_FILE, load_dataset
from relstitch.io.atomic import atomic_write

N_TRAIN, N_TEST, SEED = 6000, 1000, 0


def stratified(y: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    picked = [order[y[order] == c][:per_class] for c in range(10)]
    return torch.cat(picked).sort().values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    tensors = {}
    for split, count in (("train", N_TRAIN), ("test", N_TEST)):
        full = load_dataset(f"idx:{args.source}:{split}")
        keep = stratified(full.y, count // 10, SEED)
        tensors[f"{split}_x"] = full.x[keep].contiguous()
        tensors[f"{split}_y"] = full.y[keep].to(torch.uint8)
        tensors[f"{split}_ids"] = keep.to(torch.int32)
    meta = {
        "source": "Fashion-MNIST (Zalando Research), Debian package dataset-fashion-mnist",
        "licence": "MIT",
        "selection": json.dumps({"per_class": {"train": N_TRAIN // 10, "test": N_TEST // 10}, "seed": SEED}),
    }
    BUILTIN_FILE.parent.mkdir(exist_ok=True)
    atomic_write(BUILTIN_FILE, save(tensors, metadata=meta), force=True)
    print(f"wrote {BUILTIN_FILE} ({BUILTIN_FILE.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

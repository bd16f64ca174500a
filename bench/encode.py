"""encode throughput: ``encode_to_file`` (anchors + data → projection → streamed file) vs a bare forward loop.

    .venv/bin/python bench/encode.py                                  # CPU: shipped CNN and a ResNet-18
    python bench/encode.py --models vit_b_16,bert-base --device cuda --dtype bfloat16 --n 4096  # bench/gpu.sh

Baseline: the same module over the same batches (the anchors' and the data's), inputs prepared the
same way, under inference_mode and the same autocast, results thrown away. relstitch also projects
every batch, writes both tensors into the embeddings file and fsyncs it. A second, informative
baseline does that unavoidable work bare (forward, one matmul, the same bytes written and fsync'ed),
so the ratio against it is relstitch's own overhead: checks, bookkeeping, the atomic rename. A second
part measures peak resident memory of a streamed encode against the in-memory
``save_embeddings(encode(...))`` at two N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, configure_threads, finish, interleaved, report


def build(name: str, n: int, k: int, seed: int = 0, data: str | None = None):
    """(encoder, anchors, dataset) for a model name; real shipped weights or a random init of a real
    architecture.

    ``data`` (shipped models only): a real dataset reference such as ``/usr/share/datasets/fashion-mnist``
    (all 60,000 training images) instead of the built-in set repeated up to ``n``.
    """
    import torch
    from torch import nn

    from relstitch.anchors import Anchors, load_anchors
    from relstitch.checkpoints import load_encoder
    from relstitch.components import Encoder
    from relstitch.data import Dataset, default_image_spec, load_dataset

    gen = torch.Generator().manual_seed(seed)
    if name in ("cnn", "mlp"):
        encoder = load_encoder(REPO / "checkpoints" / f"{name}-rel-s0.encoder.safetensors")
        if data:
            dataset = load_dataset(data)
        else:
            full = load_dataset("builtin:train")
            index = torch.arange(n) % len(full)  # repeat the real images when n is larger than the set
            dataset = Dataset(
                f"builtin:train x{n}", full.x[index], full.y[index], full.classes, torch.arange(n)
            )
        anchors = load_anchors(REPO / "checkpoints" / "anchors.safetensors")
        return encoder, anchors, dataset
    if name == "resnet18":
        from relstitch.architectures import create_encoder

        module = create_encoder("resnet18", in_channels=1, latent_dim=512)
        spec, shape, latent = default_image_spec([1, 28, 28]), (1, 28, 28), 512
    elif name == "vit_b_16":
        from torchvision.models import vit_b_16

        module = vit_b_16(weights=None)
        module.heads = nn.Identity()  # the 768-d class token is the latent
        spec, shape, latent = default_image_spec([3, 224, 224], mean=0.45, std=0.25), (3, 224, 224), 768
    elif name == "bert-base":
        from transformers import BertConfig, BertModel

        class ClsPooled(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = BertModel(BertConfig(), add_pooling_layer=False)

            def forward(self, ids: torch.Tensor) -> torch.Tensor:
                return self.bert(input_ids=ids).last_hidden_state[:, 0]

        class TokenEncoder(Encoder):
            def prepare(self, raw_batch):  # token ids go in as they are
                return raw_batch

        module, latent = ClsPooled(), 768
        tokens = torch.randint(1000, 30000, (n + k, 128), generator=gen)
        encoder = TokenEncoder(
            module.eval(),
            {"name": "bert-base (random init)"},
            {"modality": "tokens", "shape": [128]},
            latent,
            "bert-base",
        )
        dataset = Dataset(
            "random tokens", tokens[k:], torch.zeros(n, dtype=torch.int64), ["0"], modality="tokens"
        )
        anchors = Anchors(tokens[:k], torch.arange(k), torch.zeros(k, dtype=torch.int64))
        return encoder, anchors, dataset
    else:
        raise SystemExit(f"unknown model {name}")
    encoder = Encoder(module.eval(), {"name": name}, spec, latent, name)
    images = torch.randint(0, 256, (n + k, *shape), dtype=torch.uint8, generator=gen)
    dataset = Dataset(f"random {shape}", images[k:], torch.zeros(n, dtype=torch.int64), ["0"])
    anchors = Anchors(images[:k], torch.arange(k), torch.zeros(k, dtype=torch.int64))
    return encoder, anchors, dataset


def throughput(name: str, args: argparse.Namespace) -> None:
    import torch

    configure_threads()

    from relstitch.encoding import resolve_device
    from relstitch.streaming import encode_to_file

    device, dtype = resolve_device(args.device, args.dtype)
    encoder, anchors, dataset = build(name, args.n, args.k, data=args.data)
    encoder.module.to(device)
    _ = encoder.hash, anchors.hash, dataset.hash  # identities are computed once per object, not per run
    folder = Path(tempfile.mkdtemp(prefix="relstitch-bench-"))
    out = folder / "e.safetensors"
    batches = [anchors.inputs[s : s + args.batch_size] for s in range(0, len(anchors), args.batch_size)]
    batches += [dataset.x[s : s + args.batch_size] for s in range(0, len(dataset), args.batch_size)]

    def ours() -> None:
        encode_to_file(
            encoder, anchors, dataset, out, batch_size=args.batch_size, device=device, dtype=dtype, force=True
        )

    @torch.inference_mode()
    def bare() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            for batch in batches:
                encoder.module(encoder.prepare(batch.to(device)))

    anchor_hat = torch.nn.functional.normalize(
        encoder.module(encoder.prepare(anchors.inputs.to(device))).float(), dim=1
    )
    raw = folder / "raw.bin"

    @torch.inference_mode()
    def limit() -> None:
        """The work itself with nothing of relstitch's: forward, one matmul, the same bytes written and
        fsync'ed."""
        with open(raw, "wb") as f:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                for batch in batches:
                    z = encoder.module(encoder.prepare(batch.to(device))).float()
                    r = (z @ anchor_hat.T).div_(z.norm(dim=1, keepdim=True))
                    f.write(z.cpu().numpy().tobytes())
                    f.write(r.cpu().numpy().tobytes())
            f.flush()
            os.fsync(f.fileno())

    best_ours, best_bare = interleaved(ours, bare, repeats=args.repeats, device=args.device)
    shapes = (
        f"N={len(dataset)} ({dataset.name}) + k={len(anchors)} anchors, batch {args.batch_size}, "
        f"{args.dtype} {device.type}, file {out.stat().st_size / 1e6:.1f} MB"
    )
    images_per_s = {"relstitch samples/s": f"{(len(dataset) + len(anchors)) / best_ours:,.0f}"}
    report(
        f"encode vs bare forward ({name})",
        shapes,
        best_ours,
        best_bare,
        "module(prepare(batch)) over the same batches, no projection, no file",
        target=">= 0.9",
        extra=images_per_s,
    )
    best_ours, best_limit = interleaved(ours, limit, repeats=args.repeats, device=args.device)
    report(
        f"encode vs forward + matmul + raw write ({name})",
        shapes,
        best_ours,
        best_limit,
        "the same forward loop, one cosine matmul per batch, the same bytes written and fsync'ed "
        "(informative)",
    )
    raw.unlink()
    out.unlink()
    folder.rmdir()


MEMORY_WORKER = """
import sys, tempfile, json
sys.path[:0] = [{bench!r}, {repo!r}]
from _common import peak_rss, reset_peak_rss
from encode import build
from relstitch.encoding import encode, save_embeddings
from relstitch.streaming import encode_to_file
encoder, anchors, dataset = build({model!r}, {n}, {k})
_ = encoder.hash, anchors.hash, dataset.hash
out = tempfile.mkdtemp() + "/e.safetensors"
base = reset_peak_rss()
if {streamed}:
    encode_to_file(encoder, anchors, dataset, out, batch_size={batch})
else:
    save_embeddings(encode(encoder, anchors, dataset, batch_size={batch}), out)
print(json.dumps({{"peak_growth_mb": peak_rss() - base}}))
"""


def memory(args: argparse.Namespace) -> None:
    """Peak resident growth (VmHWM after a reset, once the inputs exist) of a streamed vs an in-memory
    encode, at two N."""
    model = "mlp"
    rows = {}
    for n in (args.memory_n // 5, args.memory_n):
        for streamed in (True, False):
            code = MEMORY_WORKER.format(
                bench=str(Path(__file__).parent),
                repo=str(REPO),
                model=model,
                n=n,
                k=300,
                streamed=streamed,
                batch=args.batch_size,
            )
            run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            rows[(n, streamed)] = json.loads(run.stdout.strip().splitlines()[-1])["peak_growth_mb"]
    small, large = args.memory_n // 5, args.memory_n
    output_mb = large * (64 + 300) * 4 / 1e6
    print(
        f"memory ({model}, k=300): peak resident growth streamed {rows[(small, True)]:.0f} MB at N={small}, "
        f"{rows[(large, True)]:.0f} MB at N={large}; "
        f"in memory {rows[(small, False)]:.0f} MB and {rows[(large, False)]:.0f} MB "
        f"(the output at N={large} is {output_mb:.0f} MB)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,resnet18")
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--k", type=int, default=300)
    parser.add_argument(
        "--data", help="a real dataset for the shipped models (cnn, mlp) instead of the built-in set repeated"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-n", type=int, default=100_000, help="0 skips the memory part")
    parser.add_argument("--json")
    args = parser.parse_args()
    for name in filter(None, args.models.split(",")):
        if name == "resnet18" and args.device == "cpu":  # ~0.5 GFLOP per 28x28 image: keep the CPU run short
            small = argparse.Namespace(**{**vars(args), "n": min(args.n, 1000)})
            throughput(name, small)
        else:
            throughput(name, args)
    if args.memory_n:
        memory(args)
    finish(args.json, args.device)


if __name__ == "__main__":
    main()

"""Projection throughput: relstitch's blocked cosine projection vs a bare matmul of pre-normalised tensors.

    .venv/bin/python bench/projection.py                      # N=1e5, d=768, k=1280 on the CPU
    python bench/projection.py --n 1000000 --device cuda       # the GPU case of bench/gpu.sh

Baseline: ``x_hat @ a_hat.T`` with both already unit-norm (the work a projection cannot avoid). relstitch
takes the raw latents, so it also computes the norms and scales the rows, in 256 MB blocks. A second
row forces anchor blocks (a small ``max_chunk_bytes`` and many anchors) to show what that costs.
"""

from __future__ import annotations

import argparse

from _common import finish, interleaved, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--k", type=int, default=1280)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()

    import torch

    from relstitch.projection import DEFAULT_MAX_CHUNK_BYTES, block_shape, relative_projection

    dtype = getattr(torch, args.dtype)
    gen = torch.Generator(device=args.device).manual_seed(0)
    x = torch.randn(args.n, args.d, generator=gen, device=args.device, dtype=dtype)
    anchors = torch.randn(args.k, args.d, generator=gen, device=args.device, dtype=dtype)
    x_hat = x / x.norm(dim=1, keepdim=True)
    a_hat = anchors / anchors.norm(dim=1, keepdim=True)

    with torch.inference_mode():
        rows, cols = block_shape(args.n, args.d, args.k, x.element_size(), DEFAULT_MAX_CHUNK_BYTES, None)
        ours, bare = interleaved(lambda: relative_projection(x, anchors, chunk_size=None), lambda: x_hat @ a_hat.T,
                                 repeats=args.repeats, device=args.device)
        report("projection vs bare matmul", f"N={args.n} d={args.d} k={args.k} {args.dtype} {args.device}, "
               f"blocks {rows}x{cols} (256 MB budget)", ours, bare, "x_hat @ a_hat.T of pre-normalised tensors",
               target=">= 0.9")

        # Anchor blocks: many anchors and a budget too small for 256 rows of them.
        n2, k2, budget = min(args.n, 5_000), 20_000, 8 * 1024**2
        x2, a2 = x[:n2], torch.randn(k2, args.d, generator=gen, device=args.device, dtype=dtype)
        a2_hat, x2_hat = a2 / a2.norm(dim=1, keepdim=True), x_hat[:n2]
        rows, cols = block_shape(n2, args.d, k2, x.element_size(), budget, None)
        ours, bare = interleaved(lambda: relative_projection(x2, a2, chunk_size=None, max_chunk_bytes=budget),
                                 lambda: x2_hat @ a2_hat.T, repeats=args.repeats, device=args.device)
        report("projection with anchor blocks vs bare matmul", f"N={n2} d={args.d} k={k2} {args.dtype} {args.device}, "
               f"blocks {rows}x{cols} (8 MB budget)", ours, bare, "x_hat @ a_hat.T of pre-normalised tensors",
               target="(informative)")
    finish(args.json, args.device)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# One prepared GPU check for issue #6, sized for under 5 minutes on one H100/H200-class card
# (an estimate: written without access to a GPU, never run there yet).
#
#   bash bench/gpu.sh            # from the repository root, on the GPU machine
#
# The GPU machine has no network and its own torch, torchvision, transformers, typer, rich and
# safetensors, so relstitch runs from this source tree (PYTHONPATH=.), not from a pip install.
# It prints, with the card's name:
#   1. projection throughput vs a bare matmul at N=1e6, d=768, k=1280 (float32 and bfloat16);
#   2. encode vs a bare forward loop, bf16 autocast, for a randomly initialised torchvision ViT-B/16
#      (224x224 images) and a BERT-base-sized transformers model built from its config (128 tokens);
#   3. CPU vs CUDA agreement of `relstitch encode` on a shipped checkpoint (float32, bfloat16, --batch-size auto);
#   4. the batch size `--batch-size auto` picks for the shipped CNN, ViT-B/16 and BERT-base at bf16.
# Results also go to $OUT (when set) as JSON and a log.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export BENCH_THREADS=${BENCH_THREADS:-8}  # the GPU machine is not shared: let the CPU side use several cores
PY=${PYTHON:-python3}
OUTDIR=${OUT:-$(mktemp -d)}
LOG="$OUTDIR/gpu-bench.log"
exec > >(tee "$LOG") 2>&1

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch, torchvision, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| torchvision', torchvision.__version__, '| transformers', transformers.__version__)"

echo "== 1. projection vs bare matmul (N=1e6, d=768, k=1280)"
timeout 90 $PY bench/projection.py --n 1000000 --d 768 --k 1280 --device cuda --repeats 5 --json "$OUTDIR/projection-f32.json"
timeout 60 $PY bench/projection.py --n 1000000 --d 768 --k 1280 --device cuda --dtype bfloat16 --repeats 5 --json "$OUTDIR/projection-bf16.json"

echo "== 2. encode vs bare forward (bf16 autocast, batch 512)"
timeout 150 $PY bench/encode.py --models vit_b_16,bert-base --device cuda --dtype bfloat16 --n 8192 --k 1280 \
    --batch-size 512 --repeats 3 --memory-n 0 --json "$OUTDIR/encode-bf16.json"

echo "== 3. CPU vs CUDA agreement of relstitch encode (cnn-rel-s0, builtin:test)"
T=$(mktemp -d)
for run in "cpu float32 256" "cuda float32 256" "cuda bfloat16 256" "cuda float32 auto"; do
    set -- $run
    timeout 60 $PY -m relstitch encode checkpoints/cnn-rel-s0.encoder.safetensors --device "$1" --dtype "$2" \
        --batch-size "$3" -o "$T/$1-$2-$3.safetensors" || echo "encode on $1 $2 batch $3 failed"
done
$PY - "$T" <<'PYEOF'
import sys
from relstitch.encoding import load_embeddings
folder = sys.argv[1]
cpu = load_embeddings(f"{folder}/cpu-float32-256.safetensors")
for name, tolerance in (("cuda-float32-256", 1e-4), ("cuda-bfloat16-256", 5e-2), ("cuda-float32-auto", 1e-4)):
    other = load_embeddings(f"{folder}/{name}.safetensors")
    diff = float((cpu.relative() - other.relative()).abs().max())
    agree = float((cpu.relative().argmax(1) == other.relative().argmax(1)).float().mean())
    verdict = "within" if diff <= tolerance else "OUTSIDE"
    print(f"{name} vs cpu-float32: max |relative difference| {diff:.2e} ({verdict} the stated {tolerance:g}); "
          f"nearest anchor agrees for {agree:.1%} of samples")
PYEOF
echo "== 4. --batch-size auto on this card (probed per model, bf16)"
timeout 90 $PY - <<'PYEOF'
import sys
sys.path.insert(0, "bench")
import torch
from encode import build
from relstitch.encoding import resolve_batch_size
for name in ("cnn", "vit_b_16", "bert-base"):
    encoder, anchors, dataset = build(name, 2048, 64)
    size = resolve_batch_size("auto", encoder, dataset.x, device=torch.device("cuda"), dtype=torch.bfloat16)
    print(f"{name}: auto batch {size} (the probe's own peak, 32 samples: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB; "
          f"card {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)")
PYEOF

echo "== done; results in $OUTDIR"

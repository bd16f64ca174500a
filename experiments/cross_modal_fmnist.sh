#!/usr/bin/env bash
# Zero-shot stitching ACROSS MODALITIES: the shipped CNNs (image encoders, trained by `relstitch train` on
# Fashion-MNIST) and two pretrained sentence encoders (all-MiniLM-L6-v2, paraphrase-MiniLM-L3-v2, hf:) reading
# captions of the same images. Each encoder embeds the same anchors in its own modality (anchor images for the
# CNNs, the anchors' captions for MiniLM); relative heads are fitted on each frozen encoder; eval-matrix feeds every
# head every encoder's relative vectors.
#
# WEAK SUPERVISION: the captions are made from the class names ("a photo of a Sneaker"), so a caption names its
# label. The text encoders therefore see the class; what this measures is whether the two modalities' relative
# spaces line up (same-class anchors most similar in both), not whether captions describe images.
# Needs scripts/fetch-assets.sh first (the MiniLM folders).
#   TRAIN=2000 TEST=1000 ANCHORS=300 TEMPLATE='a photo of a {}' experiments/cross_modal_fmnist.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ASSETS=${RELSTITCH_ASSETS:-assets}
OUT=${OUT:-experiments/results/cross-modal-fmnist}
TRAIN=${TRAIN:-2000} TEST=${TEST:-1000} ANCHORS=${ANCHORS:-300} EPOCHS=${EPOCHS:-20} TEMPLATE=${TEMPLATE:-a photo of a {\}}
RS=(${PYTHON:-.venv/bin/python} -m relstitch)
mkdir -p "$OUT"
train="builtin:train#captions=$TEMPLATE" test="builtin:test#captions=$TEMPLATE"
declare -A MODELS=(
  [cnn-rel]="checkpoints/cnn-rel-s0.encoder.safetensors" [cnn-abs]="checkpoints/cnn-abs-s0.encoder.safetensors"
  [l6]="hf:$ASSETS/all-MiniLM-L6-v2#name=all-MiniLM-L6-v2" [l3]="hf:$ASSETS/paraphrase-MiniLM-L3-v2#name=paraphrase-MiniLM-L3-v2"
)
SRC=(-O pooling=mean -O max_length=32)  # sentence-transformers models: mean pooling is their own; captions are short

"${RS[@]}" anchors "$OUT/anchors.safetensors" -d "$train" -k "$ANCHORS" --strategy stratified --seed 0 --force
for m in cnn-rel cnn-abs l6 l3; do
  "${RS[@]}" encode "${MODELS[$m]}" -a "$OUT/anchors.safetensors" -d "$train" --limit "$TRAIN" "${SRC[@]}" \
    -o "$OUT/$m-train.embeddings.safetensors" --force
  "${RS[@]}" fit "$OUT/$m-train.embeddings.safetensors" --space relative --epochs "$EPOCHS" --lr 1e-3 --batch-size 64 \
    -o "$OUT/$m-rel.decoder.safetensors" --force
done
"${RS[@]}" eval-matrix -e "${MODELS[cnn-rel]}" -e "${MODELS[cnn-abs]}" -e "${MODELS[l6]}" -e "${MODELS[l3]}" \
  -D "$OUT/*-rel.decoder.safetensors" -a "$OUT/anchors.safetensors" -d "$test" --limit "$TEST" "${SRC[@]}" \
  --null-baseline --json "$OUT/report.json" --markdown "$OUT/report.md" --force

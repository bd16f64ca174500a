#!/usr/bin/env bash
# eval-matrix across two real pretrained text encoders (all-MiniLM-L6-v2 and paraphrase-MiniLM-L3-v2, both hf:)
# on WordNet noun gloss -> supersense (26 classes), relative and absolute heads fitted on each encoder.
# Needs scripts/fetch-assets.sh first. Sizes are kept small so the run stays within a few CPU minutes:
#   TRAIN=1000 TEST=500 ANCHORS=256 experiments/text_minilm_wordnet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ASSETS=${RELSTITCH_ASSETS:-assets}
OUT=${OUT:-experiments/results/text-minilm}
TRAIN=${TRAIN:-1000} TEST=${TEST:-500} ANCHORS=${ANCHORS:-256} EPOCHS=${EPOCHS:-10}
RS=(${PYTHON:-.venv/bin/python} -m relstitch)
mkdir -p "$OUT"
train="jsonl:$ASSETS/wordnet/train.jsonl" test="jsonl:$ASSETS/wordnet/test.jsonl"
declare -A MODELS=([l6]="hf:$ASSETS/all-MiniLM-L6-v2#name=all-MiniLM-L6-v2" [l3]="hf:$ASSETS/paraphrase-MiniLM-L3-v2#name=paraphrase-MiniLM-L3-v2")
SRC=(-O pooling=mean -O max_length=128)  # both are sentence-transformers models: mean pooling is their own

"${RS[@]}" anchors "$OUT/anchors.safetensors" -d "$train" -k "$ANCHORS" --seed 0 --force
for m in l6 l3; do
  "${RS[@]}" encode "${MODELS[$m]}" -a "$OUT/anchors.safetensors" -d "$train" --limit "$TRAIN" "${SRC[@]}" \
    -o "$OUT/$m-train.embeddings.safetensors" --force
  for space in relative absolute; do
    "${RS[@]}" fit "$OUT/$m-train.embeddings.safetensors" --space "$space" --epochs "$EPOCHS" --lr 1e-3 --batch-size 32 \
      -o "$OUT/$m-${space:0:3}.decoder.safetensors" --force
  done
done
"${RS[@]}" eval-matrix -e "${MODELS[l6]}" -e "${MODELS[l3]}" -D "$OUT/*.decoder.safetensors" -a "$OUT/anchors.safetensors" \
  -d "$test" --limit "$TEST" "${SRC[@]}" --json "$OUT/report.json" --markdown "$OUT/report.md" --force

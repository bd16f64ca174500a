"""Experiment 4 — pretrained text: stitching heads across frozen all-MiniLM-L6-v2 and paraphrase-MiniLM-L3-v2.

Two real sentence encoders (``hf:`` source, local folders laid out by scripts/fetch-assets.sh; the L3 model
is converted from its ONNX release), frozen, mean pooling (their own pooling as sentence-transformers models).
Task: WordNet noun gloss → supersense (Debian wordnet-base), a balanced subset of the largest classes.
768 uniform anchors from the training set (the paper's count for text stitching); heads (the authors' text
head) fitted on relative and absolute vectors over 3 seeds; each scored through its own encoder and the
other one: relative, absolute, and the Procrustes translation baseline.

    python experiments/exp4_pretrained_text.py [--quick] [--threads N]
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import random
from collections import Counter

import common

FULL = {
    "classes": 6,
    "train_per_class": 500,
    "test_per_class": 150,
    "anchors": 768,
    "anchor_seed": 0,
    "head_seeds": [0, 1, 2],
    "epochs": 5,
    "hidden": 256,
    "lr": 1e-3,
    "batch_size": 32,
    "max_length": 64,
}
QUICK = {
    "classes": 4,
    "train_per_class": 40,
    "test_per_class": 20,
    "anchors": 32,
    "anchor_seed": 0,
    "head_seeds": [0, 1],
    "epochs": 2,
    "hidden": 32,
    "lr": 1e-3,
    "batch_size": 32,
    "max_length": 64,
}
ENCODERS = ("all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2")
DATA_NOUN = "/usr/share/wordnet/data.noun"


def read_glosses() -> list[dict]:
    """WordNet noun glosses with their supersense, read by scripts/make_wordnet_supersenses.py (#3's
    reader)."""
    spec = importlib.util.spec_from_file_location(
        "make_wordnet_supersenses", common.ROOT / "scripts" / "make_wordnet_supersenses.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_glosses(common.need(common.Path(DATA_NOUN), "WordNet (Debian wordnet-base)"))


def write_task(run: common.Run, config: dict) -> dict:
    """Balanced train/test JSONL files of the largest supersense classes (seeded), in the work folder."""
    paths = {split: run.work / f"wordnet-{split}.jsonl" for split in ("train", "test")}
    if all(p.exists() for p in paths.values()):
        return json.loads((run.work / "wordnet-classes.json").read_text())
    rows = read_glosses()
    largest = [label for label, _ in Counter(r["label"] for r in rows).most_common(config["classes"])]
    rng = random.Random(0)
    rng.shuffle(rows)
    split_rows = {"train": [], "test": []}
    for label in largest:
        members = [r for r in rows if r["label"] == label]
        n_train, n_test = config["train_per_class"], config["test_per_class"]
        split_rows["train"] += members[:n_train]
        split_rows["test"] += members[n_train : n_train + n_test]
    for split, path in paths.items():
        rng.shuffle(split_rows[split])
        path.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in split_rows[split]), encoding="utf-8"
        )
    info = {
        "classes": largest,
        "glosses": len(rows),
        "train": len(split_rows["train"]),
        "test": len(split_rows["test"]),
    }
    (run.work / "wordnet-classes.json").write_text(json.dumps(info))
    return info


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    config = QUICK if args.quick else FULL
    run = common.Run("exp4_pretrained_text", args, config)
    from relstitch.adapters import load_encoder_ref
    from relstitch.anchors import select_anchors
    from relstitch.data import load_dataset

    task = write_task(run, config)
    train = load_dataset(f"jsonl:{run.work / 'wordnet-train.jsonl'}")
    test = load_dataset(f"jsonl:{run.work / 'wordnet-test.jsonl'}")
    anchors = select_anchors(train, config["anchors"], "uniform", seed=config["anchor_seed"])
    train_spaces, test_spaces = {}, {}
    for name in ENCODERS:
        folder = common.need(common.ASSETS / name, name)
        ref = f"hf:{folder}#name={name},pooling=mean,max_length={config['max_length']}"
        load = common.lazy(functools.partial(load_encoder_ref, ref))
        train_spaces[name] = run.step(
            f"encode {name} train",
            common.cached_space,
            run,
            f"{name}.train.embeddings.safetensors",
            functools.partial(common.encode_lazily, load, anchors, train),
        )
        test_spaces[name] = run.step(
            f"encode {name} test",
            common.cached_space,
            run,
            f"{name}.test.embeddings.safetensors",
            functools.partial(common.encode_lazily, load, anchors, test),
        )
    pairs = common.heads_and_pairs(run, config, ENCODERS, train_spaces, test_spaces, test, "text-head")
    rows, summaries = [], []
    for method in ("relative", "absolute", "procrustes"):
        row = [method]
        for metric, stitched in itertools.product(("accuracy", "macro_f1"), (False, True)):
            values = [p[metric] for p in pairs if p["method"] == method and p["stitched"] == stitched]
            summaries.append(
                {"method": method, "metric": metric, "stitched": stitched, **common.summary(values)}
            )
            row.append(common.mean_std(values))
        rows.append(row)
    table = common.table(
        [
            "method",
            "accuracy not stitched",
            "accuracy stitched",
            "macro-F1 not stitched",
            "macro-F1 stitched",
        ],
        rows,
    )
    md = f"""## 4. Pretrained text (frozen all-MiniLM-L6-v2 / paraphrase-MiniLM-L3-v2, WordNet supersenses)

WordNet noun gloss → supersense, the {len(task["classes"])} largest classes ({", ".join(task["classes"])}), \
balanced:
{config["train_per_class"]} training and {config["test_per_class"]} test glosses per class
(seeded, of {task["glosses"]:,} noun glosses).
Mean ± std over heads (3 seeds x 2 head encoders), in %. Stitched = head fitted on one encoder, \
fed by the other.

{table}

Setup: mean pooling, at most {config["max_length"]} tokens; {config["anchors"]} uniform anchors from the \
training set;
heads LayerNorm → (Linear({config["hidden"]}) → SiLU → row norm) x2 → Linear; Adam lr {config["lr"]},
{config["epochs"]} epochs, batch {config["batch_size"]}. Procrustes: \
orthogonal map fitted on the anchors (both 384-d).

Paper (Moschella et al. 2023 and follow-ups, weighted F1 x 100 across five transformers, CLS token, \
768 anchors): absolute
not stitched / stitched — TREC 91.4 / 21.5, DBpedia 98.6 / 7.0, Amazon-en 59.2 / 19.4; relative — TREC
87.2 / 74.5, DBpedia 97.5 / 80.8, Amazon-en 55.9 / 44.3."""
    run.finish({"pairs": pairs, "summary": summaries, "task": task, "anchor_hash": anchors.hash}, md)


if __name__ == "__main__":
    main()

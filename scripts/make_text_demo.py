"""Make the text walkthrough's files (docs/text-walkthrough.md): a small labelled text set and two small
Hugging Face text encoders trained on it, reproducibly (seeded, CPU, one thread), in about half a minute.

What it writes into OUT (``checkpoints/text`` is the shipped copy):

- ``train.jsonl`` (1,200 sentences) and ``test.jsonl`` (400): ``{"text": ..., "label": ...}``, five
  balanced topics (food, money, music, sport, weather). The sentences are **synthetic**: a seeded grammar
  fills shared sentence frames (people, times, places, small talk) with topic words, and each topic word
  comes from another topic one time in four; some words belong to two topics ("record", "pitch", "note",
  "hot", "sharp"). So no single word gives the class away, and even a perfect reader of the words is
  wrong on some sentences.
- ``bert-l2/`` and ``bert-l4/``: ``transformers`` ``BertModel`` folders (``save_pretrained``: config,
  safetensors weights, tokenizer), hidden size 64 both (so absolute stitching is at least defined), 2
  layers x 2 heads and 4 layers x 4 heads, different seeds. Both read one WordPiece vocabulary made from
  the training split (every word, plus single characters as the fallback for unseen words). Each was
  trained from scratch for a few epochs on the training split to classify the topic from its mean-pooled
  tokens; the classifier layer is thrown away, only the encoder is saved.

Usage::

    .venv/bin/python scripts/make_text_demo.py checkpoints/text [--force]

Everything is built in a temporary folder beside OUT and renamed into place: OUT is whole or absent.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import string
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CLASSES = ("food", "money", "music", "sport", "weather")
TRAIN_SIZE, TEST_SIZE = 1200, 400
DATA_SEED = {"train": 0, "test": 1}
OFF_TOPIC = 0.25  # how often a topic slot takes a word of another topic

# Topic words (nouns N, past-tense verbs V, adjectives A; a few words sit in two topics on purpose), then
# the words every topic shares (people P, times T, places L, small talk C; phrases apart with "|"). A line
# that repeats its slot goes on with it.
TOPIC_WORDS = """
food     N soup bread kitchen recipe dinner cheese oven salad sauce chef dessert garlic menu course plate
food     V cooked baked tasted ate served fried seasoned chopped
food     A delicious salty spicy fresh crispy sweet hot sharp
money    N bank loan salary budget price market tax debt investor profit account coin rent note interest
money    V paid borrowed saved invested earned spent lent charged
money    A expensive cheap wealthy broke profitable costly risky generous
music    N song band guitar concert album melody drummer choir piano lyrics rhythm orchestra note record pitch
music    V sang recorded performed composed rehearsed strummed tuned hummed
music    A loud catchy acoustic melodic sharp live quiet soulful
sport    N match team goal coach stadium race league referee ball season player tournament pitch score record
sport    V won lost played trained scored kicked defended raced
sport    A fast tired unbeaten athletic competitive injured strong quick
weather  N rain storm wind forecast cloud snow sky thunder fog sunshine temperature frost flood breeze heat
weather  V poured froze cleared flooded blew melted drizzled warmed
weather  A cold cloudy humid freezing stormy sunny hot grey
"""
SHARED_WORDS = """
P my sister|a neighbour|the old man|our teacher|everyone|my friend|the family|a stranger
P the children|my uncle|she|he|we|they
T on sunday|last night|this morning|after lunch|yesterday|all week|before dawn|in the evening|again
T for hours
L in town|at home|near the river|downtown|in the village|at the station|outside
C talked about|remembered|complained about|wrote about|heard about|read about|laughed about|argued about
"""


def _topics(table: str) -> dict[str, dict[str, tuple[str, ...]]]:
    topics: dict[str, dict[str, tuple[str, ...]]] = {}
    for line in table.strip().splitlines():
        topic, slot, words = line.split(maxsplit=2)
        slots = topics.setdefault(topic, {})
        slots[slot] = slots.get(slot, ()) + tuple(words.split())
    return topics


def _shared(table: str) -> dict[str, tuple[str, ...]]:
    shared: dict[str, tuple[str, ...]] = {}
    for line in table.strip().splitlines():
        slot, phrases = line.split(maxsplit=1)
        shared[slot] = shared.get(slot, ()) + tuple(phrases.split("|"))
    return shared


TOPICS = _topics(TOPIC_WORDS)
SHARED = _shared(SHARED_WORDS)
# Sentence frames: {N}, {V}, {A} are topic slots; {P}, {T}, {L}, {C} are shared.
FRAMES = (
    "{P} {V} {L} {T}.",
    "{P} {C} the {A} {N} {T}.",
    "{T}, {P} said the {N} was {A}.",
    "the {N} {L} was {A}, and {P} {V} anyway.",
    "nobody expected the {N} to be so {A} {T}.",
    "{P} {V} after the {N} {L}.",
    "was the {N} really that {A}?",
    "{P} {C} the {N} and the {N} {T}.",
    "{T} {P} {V}, then {C} the {A} {N}.",
    "{L}, the {N} seemed {A} to {P}.",
)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_LENGTH = 32  # the longest sentence is about 20 tokens


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder to build: its folder name, its shape and its seed."""

    name: str
    layers: int
    heads: int
    intermediate: int
    seed: int
    epochs: int


HIDDEN = 64
ENCODERS = (
    EncoderSpec("bert-l2", layers=2, heads=2, intermediate=128, seed=11, epochs=6),
    EncoderSpec("bert-l4", layers=4, heads=4, intermediate=256, seed=22, epochs=6),
)


def sentence(label: str, rng: random.Random) -> str:
    """One sentence of topic ``label``: a frame whose topic slots are mostly, not always, on topic."""
    frame = rng.choice(FRAMES)
    others = [c for c in CLASSES if c != label]

    def fill(slot: str) -> str:
        if slot in SHARED:
            return rng.choice(SHARED[slot])
        topic = label if rng.random() >= OFF_TOPIC else rng.choice(others)
        return rng.choice(TOPICS[topic][slot])

    parts = []
    for literal, slot, _, _ in string.Formatter().parse(frame):
        parts.append(literal)
        if slot:
            parts.append(fill(slot))
    return "".join(parts)


def make_split(size: int, seed: int) -> list[dict[str, str]]:
    """``size`` labelled sentences, the classes balanced, in a seeded order."""
    rng = random.Random(seed)
    labels = [CLASSES[i % len(CLASSES)] for i in range(size)]
    rng.shuffle(labels)
    return [{"text": sentence(label, rng), "label": label} for label in labels]


def jsonl(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_vocab(texts: list[str], path: Path) -> None:
    """A WordPiece vocabulary: the special tokens, every word of ``texts`` as BERT's pre-tokenizer splits
    them (lower-cased, punctuation apart), then single characters and ``##`` continuations so that an
    unseen word is spelled out instead of becoming ``[UNK]``."""
    from tokenizers.pre_tokenizers import BertPreTokenizer

    split = BertPreTokenizer()
    words = sorted({word for text in texts for word, _ in split.pre_tokenize_str(text.lower())})
    characters = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = [*characters, *(f"##{c}" for c in string.ascii_lowercase + string.digits)]
    vocab = list(dict.fromkeys([*SPECIAL_TOKENS, *words, *pieces]))
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")


def train_encoder(
    spec: EncoderSpec, rows: list[dict[str, str]], folder: Path, tokenizer: PreTrainedTokenizerBase
) -> float:
    """Train ``spec``'s BertModel with a linear topic classifier on its mean-pooled tokens; save the
    encoder (no classifier) and the tokenizer into ``folder``. Returns the last epoch's training accuracy."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(spec.seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        intermediate_size=spec.intermediate,
        max_position_embeddings=MAX_LENGTH,
        type_vocab_size=1,
    )
    model = BertModel(config, add_pooling_layer=False)
    classifier = torch.nn.Linear(HIDDEN, len(CLASSES))
    batch = tokenizer(
        [row["text"] for row in rows],
        padding=True,
        truncation=True,
        max_length=MAX_LENGTH,
        return_tensors="pt",
    )
    ids, mask = batch["input_ids"], batch["attention_mask"]
    labels = torch.tensor([CLASSES.index(row["label"]) for row in rows])
    parameters = [*model.parameters(), *classifier.parameters()]
    optimiser = torch.optim.AdamW(parameters, lr=2e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(spec.seed)
    accuracy = 0.0
    model.train()
    for _ in range(spec.epochs):
        correct = 0
        for step in torch.randperm(len(rows), generator=generator).split(32):
            hidden = model(input_ids=ids[step], attention_mask=mask[step]).last_hidden_state
            weights = mask[step].unsqueeze(-1).float()
            pooled = (hidden * weights).sum(1) / weights.sum(1)  # mean over real tokens, as pooling=mean
            logits = classifier(pooled)
            loss = torch.nn.functional.cross_entropy(logits, labels[step])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            correct += int((logits.argmax(1) == labels[step]).sum())
        accuracy = correct / len(rows)
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return accuracy


def build(out: Path, *, force: bool = False, log: bool = True) -> None:
    """Write the data and both encoders into ``out`` (replaced only with ``force``); whole or not at all."""
    import torch
    from transformers import BertTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Writing model shards" for two small files
    if out.exists() and not force:
        raise SystemExit(f"error: {out} already exists — pass --force to rebuild it")
    # One thread: the same weights run after run whatever the core count, and no fight over a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.{os.getpid()}.tmp"  # beside OUT: one rename puts it in place
    work.mkdir()
    try:
        sizes = {"train": TRAIN_SIZE, "test": TEST_SIZE}
        splits = {split: make_split(size, DATA_SEED[split]) for split, size in sizes.items()}
        for split, rows in splits.items():
            (work / f"{split}.jsonl").write_text(jsonl(rows), encoding="utf-8")
        vocab = work / "vocab.txt"
        write_vocab([row["text"] for row in splits["train"]], vocab)
        tokenizer = BertTokenizer(str(vocab), do_lower_case=True, model_max_length=MAX_LENGTH)
        vocab.unlink()
        for spec in ENCODERS:
            started = time.perf_counter()
            accuracy = train_encoder(spec, splits["train"], work / spec.name, tokenizer)
            if log:
                print(
                    f"{spec.name}: {spec.layers} layers x {spec.heads} heads, hidden {HIDDEN}, "
                    f"training accuracy {accuracy:.3f} ({time.perf_counter() - started:.1f} s)"
                )
        if out.exists():  # --force: the old folder goes only once the new one is complete
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(work, out)
            shutil.rmtree(old)
        else:
            os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to create (checkpoints/text is the shipped copy)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args()
    started = time.perf_counter()
    build(args.out, force=args.force)
    print(f"wrote {args.out} ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()

"""Anchor strategies: deterministic for a seed, distinct anchors, each doing what its name says, and
recorded (with parameters) in the anchor file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from relstitch.anchors import STRATEGIES, load_anchors, parse_ids, save_anchors, select_anchors
from relstitch.checkpoints import load_encoder
from relstitch.data import Dataset, load_dataset
from relstitch.errors import RelstitchError

ZOO = Path(__file__).resolve().parent.parent / "checkpoints"


@pytest.fixture(scope="module")
def small(train_data: Dataset) -> Dataset:
    return train_data.subset(torch.arange(600), name="builtin:train[:600]")


@pytest.fixture(scope="module")
def blobs() -> Dataset:
    """Three well-separated groups of images (dark, mid-grey, bright), 40 + 30 + 20 samples with noise."""
    gen = torch.Generator().manual_seed(0)
    levels, sizes = (20, 128, 235), (40, 30, 20)
    x = torch.cat(
        [
            (level + torch.randint(-8, 9, (n, 1, 6, 6), generator=gen)).to(torch.uint8)
            for level, n in zip(levels, sizes, strict=True)
        ]
    )
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    return Dataset("blobs", x, y, ["dark", "grey", "bright"])


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_is_deterministic_and_returns_distinct_anchors(small, strategy):
    a, b = select_anchors(small, 40, strategy, seed=3), select_anchors(small, 40, strategy, seed=3)
    assert torch.equal(a.ids, b.ids) and a.hash == b.hash
    assert len(a) == 40 and len(set(a.ids.tolist())) == 40
    assert a.meta["strategy"] == strategy and a.meta["seed"] == 3 and a.meta["count"] == 40
    other = select_anchors(small, 40, strategy, seed=4)
    assert not torch.equal(other.ids, a.ids)  # the seed matters (first point, k-means++ draws, order)


@pytest.mark.parametrize("strategy", ["farthest-point", "kmeans"])
def test_distance_strategies_take_one_anchor_per_separated_group(blobs, strategy):
    chosen = select_anchors(blobs, 3, strategy, seed=1)
    assert sorted(chosen.labels.tolist()) == [0, 1, 2]
    uniform = [sorted(select_anchors(blobs, 3, "uniform", seed=s).labels.tolist()) for s in range(10)]
    assert any(u != [0, 1, 2] for u in uniform)  # not what chance gives every time


def test_farthest_point_spreads_anchors_further_than_uniform(small):
    def min_gap(inputs: torch.Tensor) -> float:
        x = inputs.reshape(len(inputs), -1).float() / 255
        return float((torch.cdist(x, x) + torch.eye(len(x)) * 1e9).min())

    fps = select_anchors(small, 30, "farthest-point", seed=0)
    uniform = select_anchors(small, 30, "uniform", seed=0)
    assert min_gap(fps.inputs) > 1.5 * min_gap(uniform.inputs)


def test_kmeans_anchors_are_the_samples_nearest_their_centroids(blobs):
    """With 3 clusters the centroids are the group means: each anchor is its group's nearest sample to it."""
    chosen = select_anchors(blobs, 3, "kmeans", seed=0)
    x = blobs.x.reshape(len(blobs), -1).float() / 255
    for anchor_id, label in zip(chosen.ids.tolist(), chosen.labels.tolist(), strict=True):
        members = x[blobs.y == label]
        nearest = int(((members - members.mean(0)) ** 2).sum(1).argmin())
        assert int(blobs.ids[blobs.y == label][nearest]) == anchor_id


def test_kmeans_can_work_in_an_encoders_latent_space_and_says_so(small, tmp_path):
    encoder = load_encoder(ZOO / "cnn-abs-s0.encoder.safetensors")
    chosen = select_anchors(small, 20, "kmeans", seed=0, space_encoder=encoder)
    pixels = select_anchors(small, 20, "kmeans", seed=0)
    assert chosen.meta["parameters"]["space"] == {"encoder": encoder.name, "encoder_hash": encoder.hash}
    assert pixels.meta["parameters"]["space"] == "input"
    assert not torch.equal(chosen.ids, pixels.ids)
    loaded = load_anchors(save_anchors(chosen, tmp_path / "a.safetensors"))
    assert loaded.meta["parameters"] == chosen.meta["parameters"]
    assert loaded.meta["parameters"]["init"] == "k-means++"


def test_user_given_ids_keep_their_order(small, tmp_path):
    positions = [17, 3, 250, 42]
    wanted = small.ids[positions].tolist()  # sample ids of the source split, not positions
    chosen = select_anchors(small, strategy="ids", ids=wanted)
    assert chosen.ids.tolist() == wanted and len(chosen) == 4 and chosen.meta["strategy"] == "ids"
    torch.testing.assert_close(chosen.inputs, small.x[torch.tensor(positions)])
    (tmp_path / "ids.txt").write_text(f"{wanted[0]}\n{wanted[1]}, {wanted[2]}\n{wanted[3]}\n")
    assert parse_ids(str(tmp_path / "ids.txt")) == wanted
    assert parse_ids(",".join(map(str, wanted))) == wanted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "ids", "ids": [3, 5, 5]}, "more than once"),
        ({"strategy": "ids", "ids": [3, 99999]}, "not in"),
        ({"strategy": "ids", "ids": [3, 5], "count": 3}, "disagrees"),
        ({"strategy": "ids"}, "needs the anchor ids"),
        ({"strategy": "uniform", "count": 5, "ids": [1]}, "--strategy ids"),
        ({"strategy": "nearest", "count": 5}, "unknown anchor strategy"),
        ({"strategy": "farthest-point", "count": 601}, "cannot pick 601"),
    ],
)
def test_strategy_mistakes_are_one_line_errors(small, kwargs, message):
    with pytest.raises(RelstitchError, match=message):
        select_anchors(small, **kwargs)


def test_bad_id_text_is_refused():
    with pytest.raises(RelstitchError, match="'x3' is not an integer"):
        parse_ids("1,x3")


def test_cli_writes_each_strategy_and_refuses_nonsense(cli, tmp_path):
    out = tmp_path / "k.safetensors"
    result = cli("anchors", out, "--strategy", "kmeans", "--count", "12", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert load_anchors(out).meta["parameters"]["space"] == "input"
    wanted = load_dataset("builtin:train").ids[[5, 6, 7]].tolist()
    result = cli("anchors", tmp_path / "ids.safetensors", "--ids", ",".join(map(str, wanted)))
    assert result.exit_code == 0, result.output
    assert load_anchors(tmp_path / "ids.safetensors").ids.tolist() == wanted
    result = cli(
        "anchors", tmp_path / "u.safetensors", "--space-encoder", ZOO / "cnn-abs-s0.encoder.safetensors"
    )
    assert result.exit_code == 1 and "uses no distances" in result.stderr
    assert not (tmp_path / "u.safetensors").exists()


def test_parallel_anchors_from_a_correspondence_file_stay_aligned(tmp_path):
    """A bilingual dictionary as JSON lines: anchor i in view en is the translation of anchor i in view fr."""
    pairs = [
        ("dog", "chien"),
        ("cat", "chat"),
        ("house", "maison"),
        ("water", "eau"),
        ("tree", "arbre"),
        ("bread", "pain"),
    ]
    source = tmp_path / "en-fr.jsonl"
    source.write_text("".join(f'{{"en": "{en}", "fr": "{fr}"}}\n' for en, fr in pairs), encoding="utf-8")
    dictionary = load_dataset(f"jsonl:{source}#text=en,fr,label=none")
    for chosen in (
        select_anchors(dictionary, 4, "uniform", seed=1),
        select_anchors(dictionary, strategy="ids", ids=[4, 0]),
    ):
        saved = load_anchors(save_anchors(chosen, tmp_path / f"{chosen.meta['strategy']}.safetensors"))
        got = list(zip(saved.inputs.view("en"), saved.inputs.view("fr"), strict=True))
        assert got == [pairs[i] for i in saved.ids.tolist()]
    assert select_anchors(dictionary, strategy="ids", ids=[4, 0]).inputs.view("fr") == ["arbre", "chien"]
    with pytest.raises(RelstitchError, match="no input space"):
        select_anchors(dictionary, 3, "kmeans")


def test_kmeans_on_parallel_text_measures_distances_in_a_text_encoders_space(cli, tmp_path):
    """A bilingual word list, k-means in a (tiny, locally built) BERT's space of the default view `en`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    pairs = [
        ("dog", "chien"),
        ("cat", "chat"),
        ("house", "maison"),
        ("water", "eau"),
        ("tree", "arbre"),
        ("bread", "pain"),
        ("sun", "soleil"),
        ("moon", "lune"),
        ("sea", "mer"),
        ("road", "route"),
    ]
    source = tmp_path / "en-fr.jsonl"
    source.write_text("".join(f'{{"en": "{en}", "fr": "{fr}"}}\n' for en, fr in pairs), encoding="utf-8")
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *(w for p in pairs for w in p)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
        )
    ).save_pretrained(tmp_path / "bert")
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    ).save_pretrained(tmp_path / "bert")
    out = tmp_path / "km.safetensors"
    args = (
        "anchors",
        out,
        "--data",
        f"jsonl:{source}#text=en,fr,label=none",
        "--count",
        "4",
        "--strategy",
        "kmeans",
    )
    result = cli(*args, "--space-encoder", f"hf:{tmp_path / 'bert'}")
    assert result.exit_code == 0, result.output
    chosen = load_anchors(out)
    assert chosen.meta["parameters"]["space"]["encoder_hash"] and len(set(chosen.ids.tolist())) == 4
    assert list(zip(chosen.inputs.view("en"), chosen.inputs.view("fr"), strict=True)) == [
        pairs[i] for i in chosen.ids.tolist()
    ]
    again = cli(*args, "--space-encoder", f"hf:{tmp_path / 'bert'}", "--force")
    assert again.exit_code == 0 and torch.equal(load_anchors(out).ids, chosen.ids)

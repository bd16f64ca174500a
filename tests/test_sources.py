"""Model and data sources: hf:, torchvision:, python:, embeddings:, text/ImageFolder/tensors data.

Everything is built here, on the CPU, with no network: two tiny BERT models (different seeds and widths)
with a word-level tokenizer made by the ``tokenizers`` package, a torchvision ResNet-18 with random
weights saved to a file, a Python factory defined in this module, and text data with parallel en/fr
columns written as JSONL and CSV.
"""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from relstitch.adapters import load_encoder_ref, parse_options
from relstitch.adapters.vision import LatentTap
from relstitch.anchors import load_anchors, save_anchors, select_anchors
from relstitch.checkpoints import load_decoder
from relstitch.components import Encoder
from relstitch.data import load_dataset, prepare_images
from relstitch.data.text import TextViews
from relstitch.encoding import encode, load_embeddings
from relstitch.errors import RelstitchError, UsageError


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared CPU: one torch thread avoids OpenMP contention (measured 0.5 vs 74 ms per head
    step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------ text data
TOPICS = {  # English word → French word, per topic (the label)
    "animal": {"cat": "chat", "dog": "chien", "bird": "oiseau", "fish": "poisson", "horse": "cheval"},
    "colour": {"red": "rouge", "blue": "bleu", "green": "vert", "yellow": "jaune", "black": "noir"},
    "food": {"bread": "pain", "apple": "pomme", "rice": "riz", "soup": "soupe", "cake": "gâteau"},
}
FILLER = {"the": "le", "and": "et", "a": "un", "with": "avec", "near": "près"}


def make_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Short parallel sentences whose topic words decide the label (deterministic)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = list(TOPICS)[i % len(TOPICS)]
        words = [rng.choice(list(TOPICS[topic])) for _ in range(3)] + [
            rng.choice(list(FILLER)) for _ in range(2)
        ]
        rng.shuffle(words)
        fr = [TOPICS[topic].get(w) or FILLER[w] for w in words]
        rows.append({"en": " ".join(words), "fr": " ".join(fr), "topic": topic})
    return rows


@pytest.fixture(scope="module")
def text_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("text")
    rows = make_rows(150, seed=0)
    jsonl = folder / "sentences.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with (folder / "sentences.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["en", "fr", "topic"])
        writer.writeheader()
        writer.writerows(rows)
    return {"jsonl": jsonl, "csv": folder / "sentences.csv"}


def save_tiny_bert(folder: Path, *, seed: int, hidden: int, words: list[str] | None = None) -> Path:
    """A randomly initialised BERT and a word-level tokenizer over the test vocabulary (or ``words``, lower
    case), saved with save_pretrained."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    if words is None:
        words = sorted(
            {w for t in TOPICS.values() for pair in t.items() for w in pair}
            | set(FILLER)
            | set(FILLER.values())
        )
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=32,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def berts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {
        "a": save_tiny_bert(root / "bert-a", seed=0, hidden=32),
        "b": save_tiny_bert(root / "bert-b", seed=1, hidden=48),
    }


def ok(result) -> None:
    assert result.exit_code == 0, (result.stdout, result.stderr)


def fails(result, code: int, *words: str) -> str:
    """The CLI failed as a user should see it: one line on stderr, the right code, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------ text: the verbs
def test_text_views_round_trip_through_an_anchor_file(tmp_path: Path, text_files: dict[str, Path]) -> None:
    data = load_dataset(f"jsonl:{text_files['jsonl']}#text=en,fr,label=topic")
    assert (
        data.modality == "text"
        and data.classes == ["animal", "colour", "food"]
        and data.x.names == ["en", "fr"]
    )
    chosen = select_anchors(data, 12, "stratified", seed=3)
    assert (
        len(chosen.inputs.view("fr")) == 12
        and chosen.inputs.view("en")[0] == data.x.view("en")[int(chosen.ids[0])]
    )
    path = save_anchors(chosen, tmp_path / "a.safetensors")
    back = load_anchors(path)
    assert (
        back.inputs == chosen.inputs and back.hash == chosen.hash and "gâteau" in " ".join(data.x.view("fr"))
    )
    # content based: the same texts under another file name hash alike; one changed word changes the hash
    other = TextViews(
        {"en": chosen.inputs.view("en"), "fr": [t.replace("le", "la") for t in chosen.inputs.view("fr")]}
    )
    assert type(chosen)(other, chosen.ids, chosen.labels).hash != chosen.hash
    # texts index like tensors: positions, masks and slices subset every view alike
    assert data.x[torch.tensor([2, 0])].view("fr") == [data.x.view("fr")[2], data.x.view("fr")[0]]
    assert data.x[data.y == 1].view("en") == [
        t for t, y in zip(data.x.view("en"), data.y.tolist(), strict=True) if y == 1
    ]
    assert data.x[3:5].view("fr") == data.x.view("fr")[3:5]
    # the CSV reader gives the same dataset; numeric labels sort as numbers
    assert load_dataset(f"csv:{text_files['csv']}#text=en,fr,label=topic").hash == data.hash
    numbers = tmp_path / "n.csv"
    numbers.write_text("text,label\na,10\nb,2\nc,10\n", encoding="utf-8")
    read = load_dataset(f"csv:{numbers}")
    assert read.classes == ["2", "10"] and read.y.tolist() == [1, 0, 1] and read.x.view() == ["a", "b", "c"]


def test_text_encoders_in_every_verb(
    tmp_path: Path, cli, text_files: dict[str, Path], berts: dict[str, Path]
) -> None:
    data = f"jsonl:{text_files['jsonl']}#text=en,fr,label=topic"
    anchors = tmp_path / "anchors.safetensors"
    ok(cli("anchors", anchors, "--data", data, "-k", "24", "--strategy", "stratified"))
    refs = {
        "a": f"hf:{berts['a']}",
        "b": f"hf:{berts['b']}#view=fr",
    }  # b reads the French view: parallel anchors
    for name, ref in refs.items():
        ok(
            cli(
                "encode",
                ref,
                "-a",
                anchors,
                "--data",
                data,
                "-o",
                tmp_path / f"{name}.emb.safetensors",
                "-O",
                "pooling=mean",
            )
        )
        for space in ("relative", "absolute"):
            ok(
                cli(
                    "fit",
                    tmp_path / f"{name}.emb.safetensors",
                    "-o",
                    tmp_path / f"{name}-{space[:3]}.decoder.safetensors",
                    "--space",
                    space,
                    "--epochs",
                    "30",
                    "--lr",
                    "3e-3",
                )
            )
    head = load_decoder(tmp_path / "a-rel.decoder.safetensors")
    assert head.architecture["name"] == "text-head" and head.task["classes"] == ["animal", "colour", "food"]
    # stitch: b's French encoder into a's relative head; and a's own pair (the diagonal)
    result = cli(
        "stitch",
        refs["b"],
        tmp_path / "a-rel.decoder.safetensors",
        "-a",
        anchors,
        "--data",
        data,
        "-O",
        "pooling=mean",
        "--json",
    )
    ok(result)
    stitched = json.loads(result.stdout)
    assert stitched["stitched"] is True and 0.0 <= stitched["scores"]["accuracy"] <= 1.0
    own = json.loads(
        cli(
            "stitch",
            refs["a"],
            tmp_path / "a-rel.decoder.safetensors",
            "-a",
            anchors,
            "--data",
            data,
            "-O",
            "pooling=mean",
            "--json",
        ).stdout
    )
    assert (
        own["stitched"] is False and own["scores"]["accuracy"] > 0.6
    )  # topic words are learnable from random BERT
    # eval-matrix across both models, plus a's precomputed embeddings as a third row
    report = tmp_path / "matrix.json"
    ok(
        cli(
            "eval-matrix",
            "-e",
            refs["a"],
            "-e",
            refs["b"],
            "-e",
            f"embeddings:{tmp_path / 'a.emb.safetensors'}#name=a-precomputed",
            "-D",
            str(tmp_path / "*.decoder.safetensors"),
            "-a",
            anchors,
            "--data",
            data,
            "-O",
            "pooling=mean",
            "--json",
            report,
            "--allow-failures",
        )
    )  # bert-b's 48-d latents cannot feed a's absolute head: recorded, and exit 0 all the same
    pairs = {(p["encoder"], p["decoder"], p["method"]): p for p in json.loads(report.read_text())["pairs"]}
    live, cached = pairs[("bert-a", "a-rel", "relative")], pairs[("a-precomputed", "a-rel", "relative")]
    assert live["stitched"] is False and cached["stitched"] is False  # the diagonal, found by content hash
    assert live["scores"] == cached["scores"]  # the same vectors, computed now or earlier
    assert pairs[("bert-b", "a-rel", "relative")]["stitched"] is True
    assert "48" in pairs[("bert-b", "a-abs", "absolute")]["error"]  # absolute stitching needs equal widths


def test_hf_hash_is_content_based(tmp_path: Path, berts: dict[str, Path]) -> None:
    moved = shutil.copytree(berts["a"], tmp_path / "elsewhere")
    first, second = load_encoder_ref(f"hf:{berts['a']}"), load_encoder_ref(f"hf:{moved}")
    assert isinstance(first, Encoder) and first.hash == second.hash and first.latent_dim == 32
    assert load_encoder_ref(f"hf:{moved}", pooling="mean").hash != first.hash  # pooling changes the latents
    half = load_encoder_ref(f"hf:{moved}#dtype=bfloat16,max_length=4")
    assert half.hash != first.hash and half.max_length == 4
    z = half.embed_batch(TextViews({"en": ["the red cat and the blue dog near a cake"]}))
    assert z.shape == (1, 32) and z.dtype == torch.bfloat16
    weights = moved / "model.safetensors"
    from safetensors.torch import load_file

    tensors = load_file(weights)
    tensors[next(iter(tensors))] += 1.0
    save_file(tensors, weights, metadata={"format": "pt"})
    assert load_encoder_ref(f"hf:{moved}").hash != first.hash


def test_hf_models_fall_into_report_groups_by_architecture(
    tmp_path: Path, cli, text_files: dict[str, Path], berts: dict[str, Path]
) -> None:
    data = f"jsonl:{text_files['jsonl']}#text=en,label=topic"
    anchors, embeddings = tmp_path / "anchors.safetensors", tmp_path / "a.emb.safetensors"
    ok(cli("anchors", anchors, "--data", data, "-k", "12", "--strategy", "stratified"))
    ok(cli("encode", f"hf:{berts['a']}", "-a", anchors, "--data", data, "-o", embeddings, "--limit", "60"))
    ok(cli("fit", embeddings, "-o", tmp_path / "a-rel.decoder.safetensors", "--epochs", "1"))
    seed_c = save_tiny_bert(tmp_path / "bert-c", seed=2, hidden=32)  # another seed of a's architecture

    def groups(*encoders: Path, extra: tuple[str, ...] = ()) -> dict[str, str]:
        report = tmp_path / "report.json"
        ok(
            cli(
                "eval-matrix",
                *(a for e in encoders for a in ("-e", f"hf:{e}")),
                "-D",
                tmp_path / "a-rel.decoder.safetensors",
                "-a",
                anchors,
                "--data",
                data,
                "--limit",
                "30",
                "--json",
                report,
                "--force",
                *extra,
            )
        )
        doc = json.loads(report.read_text())
        return {e["name"]: e["group"] for e in doc["encoders"] + doc["decoders"]}

    assert groups(berts["a"], berts["b"], seed_c) == {
        "bert-a": "hf:bert-L2-H32",
        "bert-c": "hf:bert-L2-H32",
        "bert-b": "hf:bert-L2-H48",
        "a-rel": "hf:bert-L2-H32",
    }
    # without its own encoder in the matrix, the head's group comes from the architecture its embeddings
    # recorded
    assert groups(berts["b"])["a-rel"] == "hf:bert-L2-H32"
    overridden = groups(
        berts["a"], berts["b"], extra=("--group", "bert-*=bert")
    )  # --group still wins; heads follow
    assert overridden == {"bert-a": "bert", "bert-b": "bert", "a-rel": "bert"}


def test_hf_bad_input(tmp_path: Path, cli, berts: dict[str, Path], tiny_anchor_file: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out.safetensors"
    args = ("-a", tiny_anchor_file, "--data", "builtin:test", "-o", out)
    fails(cli("encode", f"hf:{empty}", *args), 1, "no config.json")
    remote = shutil.copytree(berts["a"], tmp_path / "remote")
    config = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps(dict(config, auto_map={"AutoModel": "modeling.Custom"})))
    fails(cli("encode", f"hf:{remote}", *args), 1, "--trust-remote-code")
    fails(cli("encode", f"hf:{berts['a']}", *args, "-O", "pooling=median"), 2, "pooling")
    fails(cli("encode", f"hff:{berts['a']}", *args), 1, "did you mean 'hf'")
    fails(cli("encode", f"hf:{berts['a']}#trust_remote_code=1", *args), 2, "--trust-remote-code")
    fails(cli("encode", f"hf:{berts['a']}", *args), 1, "reads text but data builtin:test is image")
    assert not out.exists()


@pytest.fixture(scope="module")
def tiny_anchor_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = load_dataset("builtin:train", limit=200)
    return save_anchors(
        select_anchors(data, 16, "uniform", seed=0),
        tmp_path_factory.mktemp("anc") / "img.anchors.safetensors",
    )


def test_text_data_refused_by_image_encoders(
    cli, tmp_path: Path, text_files: dict[str, Path], tiny_anchor_file: Path
) -> None:
    out, text_ref = tmp_path / "e.safetensors", f"jsonl:{text_files['jsonl']}#text=en,label=topic"
    fails(
        cli("encode", f"python:{__name__}:tiny_cnn", "-a", tiny_anchor_file, "--data", text_ref, "-o", out),
        1,
        "reads image but data",
        "is text",
    )
    assert not out.exists()
    text = load_dataset(f"jsonl:{text_files['jsonl']}#text=en,label=topic")
    encoder = load_encoder_ref(f"python:{__name__}:tiny_cnn")
    with pytest.raises(RelstitchError, match="reads image but data .* is text"):
        encode(encoder, None, text)
    with pytest.raises(RelstitchError, match="image encoder was given text"):
        prepare_images(text.x, {"modality": "image"})


def test_text_files_bad_input(
    tmp_path: Path, cli, text_files: dict[str, Path], tiny_anchor_file: Path
) -> None:
    out = tmp_path / "a.safetensors"
    fails(
        cli("anchors", out, "--data", f"csv:{text_files['csv']}#text=english,label=topic"),
        1,
        "no column(s) 'english'",
        "'en'",
    )
    fails(
        cli("anchors", out, "--data", f"csv:{text_files['csv']}"), 1, "'text'"
    )  # default column names absent
    fails(cli("anchors", out, "--data", f"csv:{text_files['csv']}#txt=en"), 2, "unknown option")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{"text": oops}\n')
    fails(cli("anchors", out, "--data", f"jsonl:{bad}"), 1, "line 2 is not JSON")
    fails(cli("anchors", out, "--data", f"jsnl:{bad}"), 1, "did you mean 'jsonl'")
    assert not out.exists()


# ----------------------------------------------------------------------- images: torchvision, python
def tiny_cnn(width: int = 8, seed: int = 0, broken: bool = False) -> nn.Module:
    """The Python factory the tests name as python:<this module>:tiny_cnn (seeded, so its hash is stable)."""
    if broken:
        raise ValueError("broken on purpose")
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def not_a_module() -> int:
    return 3


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    state = resnet18(weights=None).state_dict()
    folder = tmp_path_factory.mktemp("tv")
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "r18.safetensors")
    torch.save(state, folder / "r18.pth")
    broken = dict(state)
    broken.pop("fc.bias")
    broken["extra.weight"] = torch.zeros(1)
    save_file({k: v.contiguous() for k, v in broken.items()}, folder / "broken.safetensors")
    return {
        "safetensors": folder / "r18.safetensors",
        "pth": folder / "r18.pth",
        "broken": folder / "broken.safetensors",
    }


def test_torchvision_encoder_feeds_grey_28px_data_to_an_rgb_network(
    resnet_weights: dict[str, Path], tiny_anchor_file: Path
) -> None:
    data = load_dataset("builtin:test", limit=40)
    ref = f"torchvision:resnet18#weights={resnet_weights['safetensors']},resize=32"
    encoder = load_encoder_ref(ref)
    assert encoder.input_spec["channels"] == 3 and encoder.input_spec["resize"] == [32, 32]
    space = encode(encoder, load_anchors(tiny_anchor_file), data, batch_size=16)
    assert space.absolute.shape == (40, 512) and encoder.latent_dim == 512  # pooled features before fc
    from_pth = load_encoder_ref(f"torchvision:resnet18#weights={resnet_weights['pth']},resize=32")
    assert from_pth.hash == encoder.hash  # same weights, same config: same encoder whatever the file format
    assert load_encoder_ref(ref + ",layer=layer3").hash != encoder.hash
    assert encode(load_encoder_ref(ref + ",layer=layer3"), None, data).absolute.shape == (40, 256)


def test_prepare_images_resizes_and_normalises_per_channel() -> None:
    white = torch.full((2, 1, 28, 28), 255, dtype=torch.uint8)
    spec = {
        "modality": "image",
        "resize": [224, 224],
        "channels": 3,
        "mean": [0.5, 0.25, 0.0],
        "std": [0.5, 0.25, 1.0],
    }
    out = prepare_images(white, spec)
    assert out.shape == (2, 3, 224, 224)
    assert torch.allclose(out[:, 0], torch.ones(1)) and torch.allclose(out[:, 1], torch.full((1,), 3.0))
    assert torch.allclose(out[:, 2], torch.ones(1))


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ({"channels": 7, "mean": [0.5, 0.5, 0.5]}, "mean gives 3 values but the images have 7 channel(s)"),
        ({"std": [0.5, 0.25]}, "std gives 2 values but the images have 1 channel(s)"),
    ],
)
def test_prepare_images_refuses_per_channel_values_of_another_count(spec, said) -> None:
    grey = torch.zeros((2, 1, 8, 8), dtype=torch.uint8)
    with pytest.raises(RelstitchError, match=re.escape(said)):
        prepare_images(grey, {"modality": "image", **spec})


def test_torchvision_bad_input(
    cli, resnet_weights: dict[str, Path], tiny_anchor_file: Path, tmp_path: Path
) -> None:
    args = ("-a", tiny_anchor_file, "--limit", "8", "-o", tmp_path / "out.safetensors")
    fails(
        cli("encode", f"torchvision:resnet19#weights={resnet_weights['safetensors']}", *args),
        1,
        "did you mean 'resnet18'",
    )
    message = fails(
        cli("encode", f"torchvision:resnet18#weights={resnet_weights['broken']}", *args), 1, "do not fit"
    )
    assert "missing 1: fc.bias" in message and "unexpected 1: extra.weight" in message
    fails(cli("encode", "torchvision:resnet18", *args), 2, "weights")
    fails(
        cli("encode", f"torchvision:resnet18#weights={resnet_weights['safetensors']},layer=layer9", *args),
        1,
        "no layer 'layer9'",
    )
    assert not (tmp_path / "out.safetensors").exists()


def test_python_factory_encoder_and_matrix_with_embeddings(
    tmp_path: Path, cli, tiny_anchor_file: Path, resnet_weights: dict[str, Path]
) -> None:
    ref = f"python:{__name__}:tiny_cnn(width=4)"
    assert load_encoder_ref(ref).hash == load_encoder_ref(ref).hash  # seeded factory: a stable identity
    assert load_encoder_ref(f"python:{__name__}:tiny_cnn(width=4, seed=1)").hash != load_encoder_ref(ref).hash
    emb = tmp_path / "py.emb.safetensors"
    ok(cli("encode", ref, "-a", tiny_anchor_file, "--limit", "300", "-o", emb))
    assert load_embeddings(emb).absolute.shape == (300, 8)
    ok(cli("fit", emb, "-o", tmp_path / "py-rel.decoder.safetensors", "--epochs", "5"))
    report = tmp_path / "m.json"
    tv = f"torchvision:resnet18#weights={resnet_weights['safetensors']},resize=32"
    ok(
        cli(
            "eval-matrix",
            "-e",
            ref,
            "-e",
            f"embeddings:{emb}#name=precomputed",
            "-e",
            tv,
            "-D",
            tmp_path / "py-rel.decoder.safetensors",
            "-a",
            tiny_anchor_file,
            "--limit",
            "300",
            "--json",
            report,
        )
    )
    pairs = {p["encoder"]: p for p in json.loads(report.read_text())["pairs"]}
    assert pairs["tiny_cnn"]["stitched"] is False and pairs["resnet18"]["stitched"] is True
    assert (
        pairs["precomputed"]["stitched"] is False
        and pairs["precomputed"]["scores"] == pairs["tiny_cnn"]["scores"]
    )
    # precomputed vectors of other data are refused, naming the fix
    fails(
        cli("stitch", f"embeddings:{emb}", tmp_path / "py-rel.decoder.safetensors", "--data", "builtin:test"),
        1,
        "--limit",
    )
    ok(cli("stitch", f"embeddings:{emb}", tmp_path / "py-rel.decoder.safetensors"))


def test_python_factory_bad_input(cli, tiny_anchor_file: Path, tmp_path: Path) -> None:
    args = ("-a", tiny_anchor_file, "--limit", "8", "-o", tmp_path / "out.safetensors")
    fails(
        cli("encode", "python:no_such_package.models:build", *args),
        1,
        "cannot import 'no_such_package.models'",
    )
    fails(cli("encode", f"python:{__name__}:no_such_function", *args), 1, "no function 'no_such_function'")
    fails(cli("encode", f"python:{__name__}:not_a_module", *args), 1, "returned int, not a torch.nn.Module")
    fails(cli("encode", f"python:{__name__}:tiny_cnn(broken=True)", *args), 1, "broken on purpose")
    fails(cli("encode", f"python:{__name__}:tiny_cnn(width=)", *args), 2, "arguments")
    fails(cli("encode", f"python:{__name__}:tiny_cnn#pooling=mean", *args), 2, "pooling")
    assert not (tmp_path / "out.safetensors").exists()


def test_latent_tap_input_of_a_layer() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.arange(8.0).view(2, 4)
    assert torch.equal(LatentTap(model, "3:input")(x), model[2](model[1](model[0](x))))
    assert torch.equal(LatentTap(model, "1")(x), model[1](model[0](x)))
    with pytest.raises(UsageError):
        LatentTap(model, "1:middle")


def test_source_options_parse_lists_and_refuse_unknown_keys() -> None:
    assert parse_options("pooling=mean,mean=0.5,0.25,0.1,resize=64") == {
        "pooling": "mean",
        "mean": [0.5, 0.25, 0.1],
        "resize": [64, 64],
    }
    with pytest.raises(UsageError, match="did you mean 'pooling'"):
        parse_options("poolng=mean")
    with pytest.raises(UsageError, match="bad value"):
        parse_options("max_length=long")


# ------------------------------------------------------------------------------- image data sources
def test_imagefolder_and_tensors_data(tmp_path: Path) -> None:
    from PIL import Image

    for label, colour in (("cats", 40), ("dogs", 200)):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (12, 10), colour + i).save(tmp_path / "imgs" / label / f"{i}.png")
    data = load_dataset(f"imagefolder:{tmp_path / 'imgs'}")
    assert (
        data.x.shape == (6, 1, 10, 12)
        and data.classes == ["cats", "dogs"]
        and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    )
    assert int(data.x[3, 0, 0, 0]) == 200
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "imgs" / "dogs" / "big.png")
    with pytest.raises(RelstitchError, match="differ in size"):
        load_dataset(f"imagefolder:{tmp_path / 'imgs'}")
    resized = load_dataset(f"imagefolder:{tmp_path / 'imgs'}#size=8")
    assert resized.x.shape == (7, 3, 8, 8)  # one RGB image makes every image RGB

    x = torch.randint(0, 255, (5, 6, 6), dtype=torch.uint8)
    save_file(
        {"x": x, "y": torch.tensor([0, 1, 0, 1, 2])},
        tmp_path / "t.safetensors",
        metadata={"classes": '["a", "b", "c"]'},
    )
    tensors = load_dataset(f"tensors:{tmp_path / 't.safetensors'}")
    assert (
        tensors.x.shape == (5, 1, 6, 6)
        and tensors.classes == ["a", "b", "c"]
        and torch.equal(tensors.x[:, 0], x)
    )
    save_file({"images": x}, tmp_path / "nolabels.safetensors")
    with pytest.raises(RelstitchError, match="no tensor 'x'"):
        load_dataset(f"tensors:{tmp_path / 'nolabels.safetensors'}")


def test_train_refuses_text_data(cli, tmp_path: Path, text_files: dict[str, Path]) -> None:
    fails(
        cli(
            "train",
            tmp_path / "m",
            "--space",
            "absolute",
            "--data",
            f"jsonl:{text_files['jsonl']}#text=en,label=topic",
        ),
        1,
        "is text",
        "fit",
    )
    assert not list(tmp_path.iterdir())


def test_hf_weights_without_pooler_load_with_a_stable_hash_and_missing_layers_are_refused(
    tmp_path: Path, berts: dict[str, Path]
) -> None:
    from safetensors.torch import load_file

    folder = shutil.copytree(berts["a"], tmp_path / "no-pooler")
    tensors = load_file(folder / "model.safetensors")
    save_file(
        {k: v for k, v in tensors.items() if not k.startswith("pooler.")},
        folder / "model.safetensors",
        metadata={"format": "pt"},
    )
    first, second = load_encoder_ref(f"hf:{folder}"), load_encoder_ref(f"hf:{folder}")
    assert first.hash == second.hash  # a randomly initialised pooler would change it at every load
    save_file(
        {k: v for k, v in tensors.items() if "layer.1." not in k},
        folder / "model.safetensors",
        metadata={"format": "pt"},
    )
    with pytest.raises(RelstitchError, match="would be random"):
        load_encoder_ref(f"hf:{folder}")

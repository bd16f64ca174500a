"""Models from where people keep them: the Hugging Face cache (``hf:ORG/NAME[@REV]``), sentence-transformers
folders, torchvision weights enums in torchvision's cache, timm (issue #13), and the tokenizer's identity
(issue #17).

Everything is built here, on the CPU, with no network (``HF_HUB_OFFLINE=1``, a temporary ``HF_HOME`` and
``TORCH_HOME``): tiny BERTs with a WordPiece vocabulary, put into a Hugging Face cache with
``huggingface_hub``'s own helpers (and checked with its ``scan_cache_dir``); tiny sentence-transformers
models saved by sentence-transformers; a tiny torchvision classifier registered with its own weights enum,
its file named by its sha256 as torchvision names them; timm's ``test_*`` models.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from relstitch.adapters import load_encoder_ref, parse_options
from relstitch.anchors import load_anchors, save_anchors, select_anchors
from relstitch.data import load_dataset
from relstitch.data.text import TextViews
from relstitch.encoding import encode, save_embeddings
from relstitch.errors import RelstitchError, UsageError
from relstitch.io.artifacts import read_header

# huggingface_hub's own cache layout, built by the project's one helper (which users run too)
_spec = importlib.util.spec_from_file_location(
    "hf_cache", Path(__file__).parents[1] / "scripts" / "hf_cache.py"
)
assert _spec is not None and _spec.loader is not None
_hf_cache = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_hf_cache)
put_in_hf_cache = _hf_cache.put_in_hf_cache

REPO = Path(__file__).resolve().parent.parent
WORDS = ["the", "red", "blue", "cat", "dog", "bird", "fish", "cake", "bread", "near", "with", "and", "a"]
WORDS += ["##s", "un", "##happy", "café", ",", "."]
TEXTS = [
    "the red cat and the blue dog",
    "A Bird near the CAKE, with bread.",
    "unhappy cats and dogs near a blue fish and the red bread cake",
    "café",
]


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No network and private caches: HF_HOME / HF_HUB_CACHE / TORCH_HOME under tmp_path.

    huggingface_hub reads HF_HUB_CACHE once, when it is imported (earlier in this process): its constant is
    set to what a fresh process started with these variables reads (test_env_variables_pick_the_cache runs
    one).
    """
    from huggingface_hub import constants

    cache = tmp_path / "hf-home" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


# ------------------------------------------------------------------------------------ builders
def save_bert(folder: Path, *, seed: int = 0, words: list[str] = WORDS, files: str = "both") -> Path:
    """A tiny BERT with a WordPiece tokenizer read from vocab.txt; ``files``: which tokenizer files stay
    (``vocab`` only vocab.txt, ``json`` only tokenizer.json, ``both``)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizer(str(vocab_file)).save_pretrained(folder)  # tokenizer.json + tokenizer_config.json
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    if files == "vocab":
        (folder / "tokenizer.json").unlink()
    elif files == "json":
        vocab_file.unlink()
    return folder


COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


@pytest.fixture()
def cached_bert(tmp_path: Path, offline: Path) -> dict[str, Any]:
    """tiny-org/tiny-bert in the cache: main → commit A, tag v2 → commit B (other weights)."""
    folder = save_bert(tmp_path / "bert-a")
    snapshot = put_in_hf_cache(folder, offline, "tiny-org/tiny-bert", COMMIT_A)
    put_in_hf_cache(save_bert(tmp_path / "bert-b", seed=1), offline, "tiny-org/tiny-bert", COMMIT_B, "v2")
    from huggingface_hub import scan_cache_dir

    (repo,) = scan_cache_dir(offline).repos  # the library reads the layout as its own
    assert repo.repo_id == "tiny-org/tiny-bert" and {r.commit_hash for r in repo.revisions} == {
        COMMIT_A,
        COMMIT_B,
    }
    return {"folder": folder, "snapshot": snapshot}


def fails(result: Any, code: int, *words: str) -> str:
    """The CLI failed as a user should see it: one line on stderr, the right code, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def text_data(tmp_path: Path) -> tuple[str, Path]:
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS * 6)]
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = f"jsonl:{path}"
    anchors = save_anchors(
        select_anchors(load_dataset(data), 6, "uniform", seed=0), tmp_path / "a.safetensors"
    )
    return data, anchors


# ---------------------------------------------------------------------- hf: from the HF cache
def test_a_hub_id_is_found_in_the_cache_and_is_the_same_encoder_as_its_folder(
    cached_bert: dict[str, Any], offline: Path
) -> None:
    by_id = load_encoder_ref("hf:tiny-org/tiny-bert")
    by_folder = load_encoder_ref(f"hf:{cached_bert['folder']}")
    assert by_id.hash == by_folder.hash  # content: the same snapshot is the same encoder
    assert by_id.name == "tiny-bert" and by_id.path == cached_bert["snapshot"]
    assert by_id.resolved == {
        "repo_id": "tiny-org/tiny-bert",
        "revision": COMMIT_A,
        "requested_revision": "main",
        "cache": str(offline),
        "folder": str(cached_bert["snapshot"]),
    }
    assert load_encoder_ref(f"hf:tiny-org/tiny-bert@{COMMIT_A}").hash == by_id.hash
    tagged = load_encoder_ref("hf:tiny-org/tiny-bert@v2")
    assert tagged.resolved["revision"] == COMMIT_B and tagged.hash != by_id.hash  # other weights
    z = by_id.embed_batch(TextViews({"en": TEXTS}))
    assert torch.equal(z, by_folder.embed_batch(TextViews({"en": TEXTS})))


def test_what_a_hub_id_resolved_to_is_recorded_in_the_embeddings_file(
    cached_bert: dict[str, Any], tmp_path: Path, cli: Any
) -> None:
    data, anchors = text_data(tmp_path)
    out = tmp_path / "e.safetensors"
    result = cli("encode", "hf:tiny-org/tiny-bert@v2", "-a", anchors, "-d", data, "-o", out)
    assert result.exit_code == 0, result.stderr
    resolved = read_header(out).metadata["encoder"]["resolved"]
    assert resolved["repo_id"] == "tiny-org/tiny-bert" and resolved["revision"] == COMMIT_B
    assert resolved["requested_revision"] == "v2"
    # the in-memory writer records the same
    space = encode(load_encoder_ref("hf:tiny-org/tiny-bert"), load_anchors(anchors), load_dataset(data))
    saved = save_embeddings(space, tmp_path / "m.safetensors")
    assert read_header(saved).metadata["encoder"]["resolved"]["revision"] == COMMIT_A
    from relstitch.adapters.precomputed import as_encoder

    precomputed = as_encoder(load_encoder_ref(f"embeddings:{saved}"))  # an eval-matrix row of the file
    assert precomputed.provenance()["resolved"]["revision"] == COMMIT_A
    # and in the matrix report, for each encoder row: the exact snapshot a score came from
    head = tmp_path / "h.decoder.safetensors"
    assert cli("fit", out, "--space", "relative", "--epochs", 1, "-o", head).exit_code == 0
    report = tmp_path / "r.json"
    run = cli(
        "eval-matrix",
        "-e",
        "hf:tiny-org/tiny-bert@v2",
        "-D",
        head,
        "-a",
        anchors,
        "-d",
        data,
        "--json",
        report,
    )
    assert run.exit_code == 0, run.stderr
    (row,) = json.loads(report.read_text())["encoders"]
    assert row["resolved"]["revision"] == COMMIT_B and row["resolved"]["requested_revision"] == "v2"


def test_hub_id_bad_input(
    cached_bert: dict[str, Any], offline: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, anchors = text_data(tmp_path)
    args = ("-a", anchors, "-d", data, "-o", tmp_path / "out.safetensors")
    line = fails(cli("encode", "hf:tiny-org/absent", *args), 1, "tiny-org/absent", str(offline))
    assert "not in the Hugging Face cache" in line and "hf download tiny-org/absent" in line
    line = fails(cli("encode", "hf:tiny-org/tiny-bert@v9", *args), 1, "'v9'", "not in the Hugging Face cache")
    assert f"main={COMMIT_A[:7]}" in line and f"v2={COMMIT_B[:7]}" in line  # what is cached instead
    assert "--revision v9" in line
    fails(cli("encode", "hf:no/such/folder", *args), 1, "no such model folder")
    fails(cli("encode", "hf:tiny-org/tiny-bert@", *args), 1, "no such model folder")
    storage = offline / "models--tiny-org--tiny-bert"
    try:  # an interrupted download: the commit's cached file listing names a file the snapshot lacks
        from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache
    except ImportError:  # huggingface_hub < 2 keeps no listing: it cannot tell a partial snapshot
        pass
    else:
        write_tree_cache(str(storage), COMMIT_B, {"gone.bin": TreeCacheEntry(1, "1" * 40)})
        fails(cli("encode", "hf:tiny-org/tiny-bert@v2", *args), 1, "holds only part of tiny-org/tiny-bert@v2")
    shutil.rmtree(storage / "snapshots" / COMMIT_A)  # the ref is left, its snapshot deleted
    fails(cli("encode", "hf:tiny-org/tiny-bert", *args), 1, "tiny-org/tiny-bert", "not in the Hugging Face")
    # a folder of that name wins over the cache
    monkeypatch.chdir(tmp_path)
    save_bert(tmp_path / "tiny-org" / "tiny-bert")
    local = load_encoder_ref("hf:tiny-org/tiny-bert")
    assert local.resolved == {"folder": str(tmp_path / "tiny-org" / "tiny-bert")}
    assert not (tmp_path / "out.safetensors").exists()


def test_a_hub_id_never_leads_outside_the_cache(
    cached_bert: dict[str, Any], offline: Path, tmp_path: Path, cli: Any
) -> None:
    data, anchors = text_data(tmp_path)
    args = ("-a", anchors, "-d", data, "-o", tmp_path / "out.safetensors")
    # a real model outside the cache, and a file in the cache naming it (what refs/../.. would read)
    outside = save_bert(tmp_path / "outside")
    snapshots = offline / "models--tiny-org--tiny-bert" / "snapshots"
    (offline / "evil").write_text(os.path.relpath(outside, snapshots))
    fails(cli("encode", "hf:tiny-org/tiny-bert@../../evil", *args), 2, "a revision is a branch, tag or")
    fails(cli("encode", "hf:tiny-org/tiny-bert@/etc", *args), 2, "not a path")
    # an edited ref (or a snapshot linked elsewhere) is refused too
    (offline / "models--tiny-org--tiny-bert" / "refs" / "main").write_text((offline / "evil").read_text())
    fails(cli("encode", "hf:tiny-org/tiny-bert", *args), 1, "leads outside the Hugging Face cache")
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.slow
def test_env_variables_pick_the_cache(cached_bert: dict[str, Any], offline: Path, tmp_path: Path) -> None:
    """A fresh process: HF_HUB_CACHE / HF_HOME as huggingface_hub reads them at start-up."""
    data, anchors = text_data(tmp_path)
    out = tmp_path / "env.safetensors"
    command = [str(REPO / ".venv/bin/relstitch"), "encode", "hf:tiny-org/tiny-bert"]
    command += ["-a", str(anchors), "-d", data, "-o", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_CACHE"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr  # HF_HOME/hub
    out.unlink()
    done = subprocess.run(  # HF_HUB_CACHE wins over HF_HOME
        command,
        env=dict(env, HF_HUB_CACHE=str(offline), HF_HOME="/nonexistent"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    out.unlink()
    empty = tmp_path / "empty-home"
    done = subprocess.run(command, env=dict(env, HF_HOME=str(empty)), capture_output=True, text=True)
    assert done.returncode == 1 and str(empty / "hub") in done.stderr, done.stderr
    assert not out.exists()


# -------------------------------------------------------------------- tokenizer identity (#17)
def test_the_tokenizer_counts_by_behaviour_not_by_files(tmp_path: Path) -> None:
    vocab_only = load_encoder_ref(f"hf:{save_bert(tmp_path / 'v', files='vocab')}")
    json_only = load_encoder_ref(f"hf:{save_bert(tmp_path / 'j', files='json')}")
    assert not (tmp_path / "v" / "tokenizer.json").exists() and not (tmp_path / "j" / "vocab.txt").exists()
    assert vocab_only.hash == json_only.hash  # same weights, same tokenizer behaviour: one encoder
    other_vocab = [*WORDS[:-1], "!"]  # one token differs, same size: the weights still fit
    assert load_encoder_ref(f"hf:{save_bert(tmp_path / 'o', words=other_vocab)}").hash != json_only.hash
    cased = tmp_path / "cased"
    shutil.copytree(tmp_path / "v", cased)
    config = json.loads((cased / "tokenizer_config.json").read_text())
    (cased / "tokenizer_config.json").write_text(json.dumps(dict(config, do_lower_case=False)))
    assert load_encoder_ref(f"hf:{cased}").hash != vocab_only.hash  # "The" and "the" now differ


# ------------------------------------------------------------------------ sentence-transformers
def save_sentence_model(folder: Path, bert: Path, pooling: Any, normalize: bool, max_length: int) -> Path:
    pytest.importorskip("sentence_transformers", reason="sentence-transformers (test extra) is not installed")
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.base.modules import Normalize, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer  # type: ignore[no-redef]

    transformer = Transformer(str(bert), max_seq_length=max_length)
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)]
    SentenceTransformer(modules=[*modules, *([Normalize()] if normalize else [])]).save(str(folder))
    return folder


def sentence_vectors(folder: Path) -> torch.Tensor:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    return model.encode(TEXTS, convert_to_tensor=True, batch_size=2).float()


@pytest.mark.parametrize(
    ("pooling", "normalize"),
    [
        ("mean", True),
        ("cls", False),
        ("max", True),
        ("mean_sqrt_len_tokens", False),
        ("weightedmean", False),
        ("lasttoken", False),
        (("cls", "mean"), True),
    ],
)
def test_sentence_transformers_folders_give_sentence_transformers_vectors(
    tmp_path: Path, pooling: Any, normalize: bool
) -> None:
    folder = save_sentence_model(tmp_path / "st", save_bert(tmp_path / "bert"), pooling, normalize, 7)
    encoder = load_encoder_ref(f"hf:{folder}")
    with torch.inference_mode():
        ours = encoder.embed_batch(TextViews({"en": TEXTS}))
    expected = sentence_vectors(folder)
    assert ours.shape == expected.shape and (ours - expected).abs().max() < 1e-5
    assert encoder.max_length == 7 and encoder.architecture["normalize"] is normalize
    assert encoder.resolved["sentence_transformers"][:2] == ["Transformer", "Pooling"]
    if pooling == "mean":  # identity is content: the bare transformer, fed and pooled alike, is the same
        bare = load_encoder_ref(f"hf:{tmp_path / 'bert'}#pooling=mean,normalize=true,max_length=7")
        assert bare.hash == encoder.hash


def test_old_sentence_transformers_folders_and_overrides(tmp_path: Path) -> None:
    """The layout of sentence-transformers < 6 (all-MiniLM-L6-v2's): 0_Transformer, pooling_mode_* flags,
    max_seq_length and do_lower_case in sentence_bert_config.json, an empty 2_Normalize."""
    pytest.importorskip("sentence_transformers", reason="sentence-transformers (test extra) is not installed")
    folder = tmp_path / "old"
    bert = save_bert(folder / "0_Transformer")
    config = json.loads((bert / "tokenizer_config.json").read_text())
    (bert / "tokenizer_config.json").write_text(json.dumps(dict(config, do_lower_case=False)))
    (bert / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 6, "do_lower_case": True}))
    (folder / "1_Pooling").mkdir()
    flags = {
        "word_embedding_dimension": 32,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
    }
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(flags))
    (folder / "2_Normalize").mkdir()
    kinds = ["Transformer", "Pooling", "Normalize"]
    paths = ["0_Transformer", "1_Pooling", "2_Normalize"]
    modules = [
        {"idx": i, "name": str(i), "path": p, "type": f"sentence_transformers.models.{k}"}
        for i, (k, p) in enumerate(zip(kinds, paths))
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    encoder = load_encoder_ref(f"hf:{folder}")
    assert encoder.pooling == ("mean",) and encoder.normalize and encoder.max_length == 6
    with torch.inference_mode():
        ours = encoder.embed_batch(TextViews({"en": TEXTS}))
    assert (ours - sentence_vectors(folder)).abs().max() < 1e-5  # lower-cased, truncated at 6, unit norm
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(TEXTS)))
    # options override the folder; each override is another encoder
    plain = load_encoder_ref(f"hf:{folder}#normalize=false")
    assert plain.hash != encoder.hash and not plain.normalize
    assert load_encoder_ref(f"hf:{folder}", pooling="cls").hash != encoder.hash
    assert load_encoder_ref(f"hf:{folder}#max_length=5").max_length == 5
    # the bare transformer with the same options does not lower-case (do_lower_case is the folder's)
    assert load_encoder_ref(f"hf:{bert}#pooling=mean,normalize=true,max_length=6").hash != encoder.hash


def test_sentence_transformers_bad_input(tmp_path: Path, cli: Any) -> None:
    pytest.importorskip("sentence_transformers", reason="sentence-transformers (test extra) is not installed")
    good = save_sentence_model(tmp_path / "st", save_bert(tmp_path / "bert"), "mean", True, 8)
    data, anchors = text_data(tmp_path)
    args = ("-a", anchors, "-d", data, "-o", tmp_path / "out.safetensors")

    def broken(name: str, change: Any) -> Path:
        folder = shutil.copytree(good, tmp_path / name)
        change(folder)
        return folder

    def modules_with(extra: dict[str, Any] | None = None, path: str | None = None) -> Any:
        def change(folder: Path) -> None:
            modules = json.loads((folder / "modules.json").read_text())
            if path is not None:
                modules[1]["path"] = path
            (folder / "modules.json").write_text(json.dumps(modules + ([extra] if extra else [])))

        return change

    def write(relative: str, text: str) -> Any:
        return lambda folder: (folder / relative).write_text(text)

    dense = {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    cases = {
        "not-json": (write("modules.json", "{not json"), "cannot read sentence-transformers modules.json"),
        "not-a-list": (write("modules.json", '{"a": 1}'), "not a list of"),
        "dense": (modules_with(dense), "sentence_transformers.models.Dense"),
        "escape": (modules_with(path="../elsewhere"), "leaves the model folder"),
        "no-pooling": (lambda f: (f / "1_Pooling" / "config.json").unlink(), "Pooling module's config.json"),
        "bad-mode": (write("1_Pooling/config.json", '{"pooling_mode": "median"}'), "'median'"),
        "bad-length": (write("sentence_bert_config.json", '{"max_seq_length": "long"}'), "max_seq_length"),
        "prompt": (
            write(
                "config_sentence_transformers.json",
                '{"prompts": {"query": "query: "}, "default_prompt_name": "query"}',
            ),
            "default prompt 'query'",
        ),
    }
    for name, (change, words) in cases.items():
        fails(cli("encode", f"hf:{broken(name, change)}", *args), 1, words)
    unreadable = broken("unreadable", lambda f: None)
    (unreadable / "1_Pooling" / "config.json").unlink()
    (unreadable / "1_Pooling" / "config.json").mkdir()  # not a file: cannot be read as one
    fails(cli("encode", f"hf:{unreadable}", *args), 1, "1_Pooling/config.json", "not a regular file")
    fails(cli("encode", f"hf:{good}#normalize=maybe", *args), 2, "normalize")
    fails(cli("encode", f"hf:{good}#pooling=median", *args), 2, "pooling", "weightedmean")
    assert not (tmp_path / "out.safetensors").exists()


# --------------------------------------------------------------------------- torchvision enums
class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


@pytest.fixture()
def tiny_torchvision(tmp_path: Path, offline: Path) -> Any:
    """``torchvision:relstitch_tinynet`` with a weights enum (DEFAULT = TINY_V1) whose file sits in
    $TORCH_HOME/hub/checkpoints under the name torchvision gives its files: NAME-<sha256 prefix>.pth."""
    from torchvision.models._api import BUILTIN_MODELS, Weights, WeightsEnum, register_model
    from torchvision.transforms._presets import ImageClassification

    torch.manual_seed(3)
    state = TinyNet(num_classes=5).state_dict()
    staged = tmp_path / "staged.pth"
    torch.save(state, staged)
    prefix = hashlib.sha256(staged.read_bytes()).hexdigest()[:8]
    checkpoints = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.move(staged, checkpoints / f"relstitch_tinynet-{prefix}.pth")
    weights = Weights(
        url=f"https://download.invalid/models/relstitch_tinynet-{prefix}.pth",
        transforms=partial(ImageClassification, crop_size=24, resize_size=30),
        meta={"categories": ["a", "b", "c", "d", "e"]},
    )
    enum = WeightsEnum("TinyNet_Weights", [("TINY_V1", weights), ("DEFAULT", weights)])

    def relstitch_tinynet(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> TinyNet:
        weights = enum.verify(weights)
        if weights is not None:
            kwargs["num_classes"] = len(weights.meta["categories"])  # as torchvision's builders do
        model = TinyNet(**kwargs)
        if weights is not None:
            model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
        return model

    relstitch_tinynet.__annotations__["weights"] = enum | None  # get_model_weights reads the annotation
    register_model()(relstitch_tinynet)
    yield {"enum": enum, "state": state, "file": checkpoints / f"relstitch_tinynet-{prefix}.pth"}
    BUILTIN_MODELS.pop("relstitch_tinynet")


def test_a_torchvision_enum_loads_from_torchvisions_cache_with_its_preprocessing(
    tiny_torchvision: dict[str, Any], tmp_path: Path
) -> None:
    encoder = load_encoder_ref("torchvision:relstitch_tinynet#weights=DEFAULT")
    assert encoder.input_spec == {
        "modality": "image",
        "scale": 255.0,
        "resize_shorter": 30,
        "crop": [24, 24],
        "interpolation": "bilinear",
        "channels": 3,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    module = encoder.module.model
    assert all(torch.equal(module.state_dict()[k], v) for k, v in tiny_torchvision["state"].items())
    assert module.fc.out_features == 5  # the enum's categories decided the classifier, as in torchvision
    assert encoder.resolved["weights"] == str(tiny_torchvision["file"].resolve())
    assert encoder.resolved["enum"] == "TinyNet_Weights.TINY_V1"
    images = load_dataset("builtin:test", limit=6).x
    # the enum's own transform, on the same images as floats (torchvision rounds uint8 resizes)
    reference = tiny_torchvision["enum"].DEFAULT.transforms()(images.float().div(255).expand(-1, 3, -1, -1))
    assert torch.allclose(encoder.prepare(images), reference, atol=1e-5)
    with torch.inference_mode():
        z = encoder.embed_batch(images)
    assert z.shape == (6, 8)  # the classifier's input: pooled features
    assert (
        load_encoder_ref("torchvision:relstitch_tinynet#weights=TinyNet_Weights.TINY_V1").hash == encoder.hash
    )
    # overrides: a resize of the user's replaces resize and crop; crop= crops again
    resized = load_encoder_ref("torchvision:relstitch_tinynet#weights=DEFAULT,resize=32")
    assert resized.input_spec["resize"] == [32, 32] and "crop" not in resized.input_spec
    assert resized.hash != encoder.hash
    cropped = load_encoder_ref(
        "torchvision:relstitch_tinynet#weights=DEFAULT,resize=32,crop=20,mean=0.5,std=0.5"
    )
    assert cropped.prepare(images).shape == (6, 3, 20, 20) and cropped.input_spec["mean"] == 0.5
    data = load_dataset("builtin:test", limit=12)
    space = encode(encoder, select_anchors(data, 4, "uniform", seed=0), data)
    meta = read_header(save_embeddings(space, tmp_path / "e.safetensors")).metadata["encoder"]["resolved"]
    assert meta["enum"] == "TinyNet_Weights.TINY_V1" and meta["preprocessing"]["crop"] == [24, 24]
    # a weights file path keeps working, and an existing file wins over an enum-like name
    weights_file = tmp_path / "DEFAULT"
    shutil.copy(tiny_torchvision["file"], weights_file)
    with pytest.raises(RelstitchError, match="unknown weights format"):  # read as the file it is
        load_encoder_ref(f"torchvision:relstitch_tinynet(num_classes=5)#weights={weights_file}")


def test_torchvision_enum_bad_input(tiny_torchvision: dict[str, Any], tmp_path: Path, cli: Any) -> None:
    from torchvision.models import resnet18

    args = ("-d", "builtin:test", "--limit", "4", "-o", tmp_path / "out.safetensors")
    checkpoints = tiny_torchvision["file"].parent
    line = fails(
        cli("encode", "torchvision:resnet18#weights=IMAGENET1K_V1", *args), 1, "resnet18-f37072fd.pth"
    )
    assert str(checkpoints) in line and "never downloads" in line
    torch.save(resnet18().state_dict(), checkpoints / "resnet18-f37072fd.pth")  # not the published file
    fails(cli("encode", "torchvision:resnet18#weights=DEFAULT", *args), 1, "f37072fd", "sha256")
    fails(cli("encode", "torchvision:resnet18#weights=IMAGENET9K_V1", *args), 2, "IMAGENET1K_V1")
    fails(cli("encode", "torchvision:resnet18#weights=Wrong_Weights.IMAGENET1K_V1", *args), 2, "ResNet18")
    tiny_torchvision["file"].write_bytes(b"truncated")
    fails(cli("encode", "torchvision:relstitch_tinynet#weights=DEFAULT", *args), 1, "sha256")
    tiny_torchvision["file"].unlink()
    tiny_torchvision["file"].mkdir()  # not a file
    fails(cli("encode", "torchvision:relstitch_tinynet#weights=DEFAULT", *args), 1, "not in torchvision's")
    assert not (tmp_path / "out.safetensors").exists()


# ------------------------------------------------------------------------------------------- timm
@pytest.fixture()
def timm_vit(tmp_path: Path, offline: Path) -> dict[str, Any]:
    """timm's tiny test_vit, its weights in the cache as the Hub repository timm names for it."""
    timm = pytest.importorskip("timm", reason="the timm extra is not installed")
    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False)
    folder = tmp_path / "vit"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"architecture": "test_vit"}))
    put_in_hf_cache(folder, offline, model.pretrained_cfg["hf_hub_id"], COMMIT_A)
    return {
        "model": model.eval(),
        "file": folder / "model.safetensors",
        "repo": model.pretrained_cfg["hf_hub_id"],
    }


def test_timm_models_load_weights_from_the_cache_with_their_own_preprocessing(
    timm_vit: dict[str, Any], tmp_path: Path
) -> None:
    import timm.data

    encoder = load_encoder_ref("timm:test_vit")
    assert encoder.resolved["repo_id"] == timm_vit["repo"] and encoder.resolved["revision"] == COMMIT_A
    assert encoder.resolved["pretrained_cfg"] == "test_vit.r160_in1k"
    assert encoder.input_spec["resize_shorter"] == 168 and encoder.input_spec["crop"] == [
        160,
        160,
    ]  # 160/0.95
    assert encoder.input_spec["interpolation"] == "bicubic"
    images = load_dataset("builtin:test", limit=4).x
    config = timm.data.resolve_model_data_config(timm_vit["model"])
    transform = timm.data.create_transform(**config)  # timm's own evaluation transform, on float images
    pixels = torch.stack([transform(img.float().div(255).expand(3, -1, -1)) for img in images])
    assert torch.allclose(encoder.prepare(images), pixels, atol=1e-4)
    model = timm_vit["model"]
    with torch.inference_mode():
        z = encoder.embed_batch(images)
        expected = model.forward_head(model.forward_features(pixels), pre_logits=True)
    assert z.shape == expected.shape and torch.allclose(z, expected, atol=1e-4)  # pooled, before the head
    from_file = load_encoder_ref(f"timm:test_vit#weights={timm_vit['file']}")
    assert from_file.hash == encoder.hash  # the same weights and preprocessing, wherever they were found
    assert load_encoder_ref("timm:test_vit#layer=blocks.0").hash != encoder.hash


def test_timm_bad_input(
    timm_vit: dict[str, Any], offline: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("-d", "builtin:test", "--limit", "4", "-o", tmp_path / "out.safetensors")
    fails(cli("encode", "timm:test_vitt", *args), 1, "did you mean 'test_vit'")
    line = fails(
        cli("encode", "timm:test_resnet", *args), 1, "timm/test_resnet", "not in the Hugging Face cache"
    )
    assert str(offline) in line and "hf download" in line
    fails(cli("encode", f"timm:test_resnet#weights={timm_vit['file']}", *args), 1, "do not fit")
    fails(cli("encode", "timm:test_vit(depth='x')", *args), 1, "cannot build timm:test_vit")
    snapshot = offline / "models--timm--test_vit.r160_in1k" / "snapshots" / COMMIT_A
    (snapshot / "model.safetensors").unlink()
    fails(cli("encode", "timm:test_vit", *args), 1, "holds no weights")
    monkeypatch.setitem(sys.modules, "timm", None)  # as if the extra were not installed
    fails(cli("encode", "timm:test_vit", *args), 1, "pip install -e '.[timm]'")
    assert not (tmp_path / "out.safetensors").exists()


def test_new_options_parse() -> None:
    assert parse_options("normalize=false,crop=20") == {"normalize": False, "crop": [20, 20]}
    assert parse_options("normalize=Yes")["normalize"] is True
    with pytest.raises(UsageError, match="normalize"):
        parse_options("normalize=sometimes")


# ------------------------------------------------------- weights files become the model's tensors (#15)
class _NonPersistent(nn.Module):
    """A buffer no weights file holds: the model cannot be built on meta and given the file's tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("scale", torch.full((3,), 2.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale


class _NeedsRealTensors(nn.Module):
    """A builder that computes with a tensor it makes (``.item()`` cannot run on the meta device)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, int(torch.tensor(3.0).item()))


def test_torchvision_weights_become_the_models_tensors_with_the_values_a_copy_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A float16 weights file for a float32 torchvision model: no tensor left on meta, every weight the
    float32 value load_state_dict's copy gives, the same latents and the same hash as a model built for
    real and loaded (the hash keys the cache: it must not depend on how the model was built)."""
    import torchvision

    from relstitch.adapters.vision import built_with_weights

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=10).eval()
    weights = tmp_path / "r18.safetensors"
    save_file(
        {k: v.half() for k, v in reference.state_dict().items() if v.is_floating_point()}
        | {k: v for k, v in reference.state_dict().items() if not v.is_floating_point()},
        str(weights),
    )
    reference.load_state_dict(
        {k: v.half().float() if v.is_floating_point() else v for k, v in reference.state_dict().items()}
    )
    drawn: list[torch.Tensor] = []  # random inits drawn on real tensors while loading: none
    kaiming = nn.init.kaiming_normal_
    monkeypatch.setattr(nn.init, "kaiming_normal_", lambda t, *a, **k: drawn.append(t) or kaiming(t, *a, **k))
    encoder = load_encoder_ref(f"torchvision:resnet18(num_classes=10)#weights={weights},resize=32,32")
    assert not [t for t in drawn if not t.is_meta] and drawn  # the builder ran, on meta only
    monkeypatch.undo()
    model = encoder.module.model
    tensors = dict(model.state_dict())
    assert not any(t.is_meta for t in tensors.values())
    assert {k: t.dtype for k, t in tensors.items()} == {k: t.dtype for k, t in reference.state_dict().items()}
    for name, expected in reference.state_dict().items():
        assert torch.equal(tensors[name], expected), name

    def real_only() -> nn.Module:  # the same model, built for real: meta_build cannot run it
        if torch.empty(0).is_meta:
            raise RuntimeError("not on meta")
        return torchvision.models.resnet18(num_classes=10)

    copied = built_with_weights(real_only, weights, "torchvision:resnet18").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model(x), copied(x))
        assert torch.equal(model(x), reference(x))
    again = load_encoder_ref(f"torchvision:resnet18(num_classes=10)#weights={weights},resize=32,32")
    assert encoder.hash == again.hash


@pytest.mark.parametrize("model_class", [_NonPersistent, _NeedsRealTensors])
def test_models_that_cannot_take_the_files_tensors_are_built_for_real(
    model_class: type[nn.Module], tmp_path: Path
) -> None:
    from relstitch.adapters.vision import built_with_weights

    torch.manual_seed(1)
    source = model_class()
    weights = tmp_path / "w.safetensors"
    save_file(source.state_dict(), str(weights))
    built = built_with_weights(model_class, weights, "a model")
    assert not any(t.is_meta for t in [*built.parameters(), *built.buffers()])
    for name, tensor in source.state_dict().items():
        assert torch.equal(built.state_dict()[name], tensor), name
    if isinstance(built, _NonPersistent):
        assert torch.equal(built.scale, torch.full((3,), 2.0))  # the builder's value, not a meta tensor
    broken = tmp_path / "broken.safetensors"  # the checks still run on this path
    save_file(
        {**source.state_dict(), "fc.weight": torch.full_like(source.fc.weight, float("nan"))}, str(broken)
    )
    with pytest.raises(RelstitchError, match="NaN"):
        built_with_weights(model_class, broken, "a model")

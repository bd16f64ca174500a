"""``hf:`` models whose architecture is custom code shipped in their folder (``--trust-remote-code``).

The model is built here: a ``configuration_tinymix.py`` and ``modeling_tinymix.py`` (a token-mixing
encoder transformers does not know, whose forward takes no ``token_type_ids``) are written to a folder,
imported as a package, registered for the auto classes and saved with ``save_pretrained``, so the model
folder holds the code, ``config.json`` with its ``auto_map`` and safetensors weights, as a Hub repository
with custom code does. The tokenizer is test_sources.py's tiny BERT one. Every test runs with the network
refused at the socket and transformers' dynamic-module cache in a temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_checks import one_line_error
from test_sources import make_rows, save_tiny_bert

from relstitch.adapters import load_encoder_ref
from relstitch.anchors import load_anchors
from relstitch.checkpoints import load_decoder
from relstitch.data import load_dataset
from relstitch.data.text import TextViews
from relstitch.encoding import load_embeddings
from relstitch.errors import RelstitchError
from relstitch.projection import ProjectionConfig, relative_projection

CONFIG_CODE = '''"""A token-mixing encoder that transformers does not know: its configuration."""

from transformers import PretrainedConfig


class TinyMixConfig(PretrainedConfig):
    model_type = "tinymix"

    def __init__(
        self, vocab_size=64, hidden_size=24, num_hidden_layers=2, max_position_embeddings=32, **kwargs
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)
'''

MODEL_CODE = '''"""A token-mixing encoder: each block mixes in the masked mean of the tokens."""

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from .configuration_tinymix import TinyMixConfig


class MixBlock(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.up = nn.Linear(2 * hidden, 2 * hidden)
        self.down = nn.Linear(2 * hidden, hidden)

    def forward(self, h, mask):
        context = (h * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
        mixed = torch.cat([self.norm(h), context.expand_as(h)], -1)
        return h + self.down(torch.nn.functional.gelu(self.up(mixed)))


class TinyMixModel(PreTrainedModel):
    config_class = TinyMixConfig
    base_model_prefix = "tinymix"

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.blocks = nn.ModuleList(MixBlock(config.hidden_size) for _ in range(config.num_hidden_layers))
        self.post_init()

    def forward(self, input_ids, attention_mask=None):
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        mask = mask.unsqueeze(-1).float()
        h = self.embed(input_ids) + self.position(torch.arange(input_ids.shape[1], device=input_ids.device))
        for block in self.blocks:
            h = block(h, mask)
        return BaseModelOutput(last_hidden_state=h)
'''


@pytest.fixture(autouse=True, scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """No network (any socket connect is refused and recorded) and transformers' dynamic modules in a tmp
    folder."""
    import transformers.dynamic_module_utils as dynamic

    cache = tmp_path_factory.mktemp("hf-modules")
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError(f"test_remote_code: network refused ({address})")

    saved_path, saved_modules = (
        list(sys.path),
        {k for k in sys.modules if k.startswith("transformers_modules")},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_MODULES_CACHE", str(cache))
        # transformers reads HF_MODULES_CACHE once, at import (perhaps already done by another test module).
        patch.setattr(dynamic, "HF_MODULES_CACHE", str(cache))
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        for (
            name
        ) in saved_modules:  # a transformers_modules package imported from elsewhere would shadow the tmp one
            patch.delitem(sys.modules, name)
        yield {"cache": cache, "attempts": attempts}
    sys.path[:] = saved_path
    for name in [k for k in sys.modules if k.startswith("transformers_modules") and k not in saved_modules]:
        del sys.modules[name]
    assert attempts == [], f"something tried the network: {attempts}"


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The custom-code model folder, the model object it was saved from, its tokenizer, and text data."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("remote")
    source = root / "tinymix_src"
    source.mkdir()
    (source / "__init__.py").write_text("")
    (source / "configuration_tinymix.py").write_text(CONFIG_CODE)
    (source / "modeling_tinymix.py").write_text(MODEL_CODE)
    spec = importlib.util.spec_from_file_location(
        "tinymix_src", source / "__init__.py", submodule_search_locations=[str(source)]
    )
    assert spec is not None and spec.loader is not None
    tokenizer = AutoTokenizer.from_pretrained(save_tiny_bert(root / "bert", seed=0, hidden=16))
    folder = root / "tinymix"
    sys.modules["tinymix_src"] = package = importlib.util.module_from_spec(spec)
    try:  # the package stays importable while save_pretrained copies its files, and not after
        spec.loader.exec_module(package)
        from tinymix_src.configuration_tinymix import TinyMixConfig  # type: ignore[import-not-found]
        from tinymix_src.modeling_tinymix import TinyMixModel  # type: ignore[import-not-found]

        TinyMixConfig.register_for_auto_class()
        TinyMixModel.register_for_auto_class(
            "AutoModel"
        )  # save_pretrained copies the code and writes auto_map
        torch.manual_seed(0)
        model = TinyMixModel(TinyMixConfig(vocab_size=len(tokenizer), hidden_size=20)).eval()
        model.save_pretrained(folder)
    finally:
        for name in [k for k in sys.modules if k.startswith("tinymix_src")]:
            del sys.modules[name]
    tokenizer.save_pretrained(folder)

    data = root / "sentences.jsonl"
    data.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in make_rows(90, seed=0)), encoding="utf-8"
    )
    return {
        "folder": folder,
        "model": model,
        "tokenizer": tokenizer,
        "data": f"jsonl:{data}#text=en,label=topic",
        "bert": root / "bert",
    }


@pytest.fixture(scope="module")
def text_anchors(tmp_path_factory: pytest.TempPathFactory, custom: dict[str, Any]) -> Path:
    from typer.testing import CliRunner

    from relstitch.cli import app

    path = tmp_path_factory.mktemp("remote-anchors") / "anchors.safetensors"
    result = CliRunner().invoke(
        app, ["anchors", str(path), "--data", custom["data"], "-k", "12", "--strategy", "stratified"]
    )
    assert result.exit_code == 0, result.stderr
    return path


def test_the_folder_is_a_custom_code_model(custom: dict[str, Any]) -> None:
    folder = custom["folder"]
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["model_type"] == "tinymix"
        and config["auto_map"]["AutoModel"] == "modeling_tinymix.TinyMixModel"
    )
    assert {"modeling_tinymix.py", "configuration_tinymix.py", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()
    }
    from transformers import CONFIG_MAPPING

    assert "tinymix" not in CONFIG_MAPPING  # transformers cannot build it without running the folder's code


def test_without_the_flag_every_verb_refuses_in_one_line(
    cli, tmp_path: Path, custom: dict[str, Any], text_anchors: Path, sandbox: dict[str, Any], tiny_zoo
) -> None:
    folder, data = custom["folder"], custom["data"]
    ref = f"hf:{folder}"
    out, report, preds = tmp_path / "e.safetensors", tmp_path / "m.json", tmp_path / "p.csv"
    head = tiny_zoo.decoder("cnn-rel-s0")  # any decoder: the encoder is refused before it is used
    failing = (
        ("encode", ref, "-a", text_anchors, "--data", data, "-o", out),
        ("stitch", ref, head, "-a", text_anchors, "--data", data, "--predictions", preds),
        (
            "eval-matrix",
            "-e",
            ref,
            "-D",
            head,
            "-a",
            text_anchors,
            "--data",
            data,
            "--json",
            report,
            "--fail-fast",
        ),
        ("eval-matrix", "-e", ref, "-D", head, "-a", text_anchors, "--data", data),
    )
    for args in failing:
        line = one_line_error(cli(*args), code=1)
        assert "--trust-remote-code" in line and str(folder) in line and "modeling_tinymix.py" in line, line
        assert "hf.co" not in line and "huggingface" not in line.lower(), line
    assert list(tmp_path.iterdir()) == []
    # Without --fail-fast a matrix records each failed row in its report, as for any pair error (exit 1 when
    # all failed).
    one_line_error(cli(*failing[3], "--json", report), code=1)
    pairs = json.loads(report.read_text())["pairs"]
    assert (
        len(pairs) == 1
        and "--trust-remote-code" in pairs[0]["error"]
        and pairs[0].get("scores") in (None, {})
    )
    # Refused before transformers saw the folder: none of its code was copied to be imported.
    assert not list(sandbox["cache"].rglob("modeling_tinymix.py"))
    assert not any(k.startswith("transformers_modules") for k in sys.modules)

    # A custom *tokenizer* (auto_map in tokenizer_config.json) is remote code too.
    bert = shutil.copytree(custom["bert"], tmp_path / "bert-custom-tokenizer")
    tokenizer_config = json.loads((bert / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": [None, "tokenization_mine.MineTokenizerFast"]}
    (bert / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    line = one_line_error(cli("encode", f"hf:{bert}", "-a", text_anchors, "--data", data, "-o", out), code=1)
    assert "tokenization_mine.py" in line and "--trust-remote-code" in line and not out.exists()
    # ... and the option string cannot switch it on
    one_line_error(
        cli("encode", f"{ref}#trust_remote_code=1", "-a", text_anchors, "--data", data, "-o", out), code=2
    )
    with pytest.raises(RelstitchError, match="trust-remote-code"):
        load_encoder_ref(ref)


def test_with_the_flag_it_encodes_offline_as_the_model_computes(
    cli, tmp_path: Path, custom: dict[str, Any], text_anchors: Path, sandbox: dict[str, Any]
) -> None:
    folder, data = custom["folder"], custom["data"]
    ref = f"hf:{folder}"
    out = tmp_path / "tinymix.emb.safetensors"
    result = cli(
        "encode",
        ref,
        "-a",
        text_anchors,
        "--data",
        data,
        "-o",
        out,
        "--trust-remote-code",
        "-O",
        "pooling=mean",
    )
    assert result.exit_code == 0, result.stderr
    assert "20-d" in result.stdout
    # transformers imported the folder's code from the tmp dynamic-module cache
    assert list(sandbox["cache"].rglob("modeling_tinymix.py"))

    # The vectors are what the custom model object computes on the same texts, mean-pooled over the real
    # tokens.
    def direct(texts: list[str]) -> torch.Tensor:
        tokens = custom["tokenizer"](texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        with torch.no_grad():
            hidden = custom["model"](tokens["input_ids"], tokens["attention_mask"]).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1)

    space = load_embeddings(out)
    assert space.absolute.shape == (90, 20)
    samples, anchor_latents = (
        direct(load_dataset(data).x.view("en")),
        direct(load_anchors(text_anchors).inputs.view("en")),
    )
    torch.testing.assert_close(space.absolute, samples, rtol=0, atol=1e-6)
    torch.testing.assert_close(space.anchor_absolute, anchor_latents, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        space.relative(), relative_projection(samples, anchor_latents, ProjectionConfig()), rtol=0, atol=1e-6
    )

    # stitch and eval-matrix load it with the flag too; the head fitted on it finds its own encoder (the
    # diagonal)
    head = tmp_path / "tinymix.decoder.safetensors"
    assert cli("fit", out, "-o", head, "--epochs", "20", "--lr", "3e-3").exit_code == 0
    result = cli(
        "stitch",
        ref,
        head,
        "-a",
        text_anchors,
        "--data",
        data,
        "--json",
        "--trust-remote-code",
        "-O",
        "pooling=mean",
    )
    assert result.exit_code == 0, result.stderr
    own = json.loads(result.stdout)
    assert own["stitched"] is False and own["scores"]["accuracy"] > 0.5  # 3 topics: chance 1/3
    report = tmp_path / "m.json"
    bert = f"hf:{custom['bert']}"
    result = cli(
        "eval-matrix",
        "-e",
        ref,
        "-e",
        bert,
        "-D",
        head,
        "-a",
        text_anchors,
        "--data",
        data,
        "--json",
        report,
        "--trust-remote-code",
        "-O",
        "pooling=mean",
    )
    assert result.exit_code == 0, result.stderr
    pairs = {p["encoder"]: p for p in json.loads(report.read_text())["pairs"] if p["method"] == "relative"}
    assert pairs["tinymix"]["scores"] == own["scores"] and pairs["tinymix"]["stitched"] is False
    assert pairs["bert"]["stitched"] is True and pairs["bert"].get("error") is None
    assert (
        load_decoder(head).encoder_hash == load_encoder_ref(ref, trust_remote_code=True, pooling="mean").hash
    )


def test_the_code_is_part_of_the_encoders_identity(tmp_path: Path, custom: dict[str, Any]) -> None:
    folder = shutil.copytree(custom["folder"], tmp_path / "tinymix")
    texts = TextViews({"en": ["the red cat and the blue dog", "bread and soup near a horse"]})
    first = load_encoder_ref(f"hf:{folder}", trust_remote_code=True)
    assert (
        first.hash == load_encoder_ref(f"hf:{custom['folder']}", trust_remote_code=True).hash
    )  # moved: same encoder
    with torch.no_grad():
        before = first.embed_batch(texts)
    modeling = folder / "modeling_tinymix.py"
    modeling.write_text(modeling.read_text().replace("return h + self.down(", "return h - self.down("))
    second = load_encoder_ref(f"hf:{folder}", trust_remote_code=True)
    assert second.hash != first.hash  # the same weights under other code are another encoder
    with torch.no_grad():
        after = second.embed_batch(texts)
    assert after.shape == before.shape and (after - before).abs().max() > 1e-4

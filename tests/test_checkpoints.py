"""relstitch.checkpoints: users' own modules saved with their factory, and loaded only with trust_code."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch

from relstitch.anchors import Anchors, save_anchors, select_anchors
from relstitch.checkpoints import load_decoder, load_encoder, save_decoder, save_encoder
from relstitch.data import Dataset, default_image_spec
from relstitch.errors import RelstitchError, RelstitchWarning, UsageError
from relstitch.io.artifacts import load_artifact, save_artifact
from relstitch.nn import RelativeHead, RelativeProjection

MODELS = """
from torch import nn


def build_encoder(latent_dim=16, width=8):
    return nn.Sequential(
        nn.Conv2d(1, width, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(4 * width, latent_dim),
    )


def build_head(in_dim=16, classes=10):
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, classes))
"""
SPEC = default_image_spec([1, 28, 28])
TRUST = "--trust-code"


@pytest.fixture()
def user_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A user's own module file, importable as ``user_models_f1`` (a real import, as a user's would be)."""
    (tmp_path / "user_models_f1.py").write_text(textwrap.dedent(MODELS))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("user_models_f1")
    yield module
    import sys

    sys.modules.pop("user_models_f1", None)


def _classes(train_data: Dataset) -> dict[str, object]:
    return {"type": "classification", "classes": list(train_data.classes)}


def test_a_users_encoder_round_trips_only_with_trust_code(tmp_path: Path, user_models, train_data) -> None:
    torch.manual_seed(0)
    module = user_models.build_encoder(latent_dim=12)
    path = save_encoder(
        module,
        tmp_path / "mine.encoder.safetensors",
        factory="user_models_f1:build_encoder",
        factory_kwargs={"latent_dim": 12},
        input_spec=SPEC,
    )
    with pytest.raises(RelstitchError) as caught:
        load_encoder(path)
    message = str(caught.value)
    assert "'user_models_f1:build_encoder'" in message and "--trust-code" in message and "\n" not in message
    loaded = load_encoder(path, trust_code=True)
    assert loaded.latent_dim == 12  # measured on one input of the spec's shape
    assert loaded.architecture == {
        "name": "python:user_models_f1:build_encoder",
        "factory": "user_models_f1:build_encoder",
        "args": {"latent_dim": 12},
    }
    batch = train_data.x[:5]
    with torch.no_grad():
        assert torch.equal(loaded.embed_batch(batch), module.eval()(loaded.prepare(batch)))


def test_saving_refuses_what_could_not_load(tmp_path: Path, user_models) -> None:
    module = user_models.build_encoder(latent_dim=12)
    out = tmp_path / "x.encoder.safetensors"
    cases = [
        ({"factory": "user_models_f1:build_encoder"}, RelstitchError, "wrong shape"),  # default latent 16
        ({"factory": "__main__:build"}, UsageError, "script being run"),
        ({"factory": "not a factory"}, UsageError, "package.module:function"),
        ({"factory": "user_models_f1:missing"}, RelstitchError, "no function 'missing'"),
        ({"factory": "no_such_module_f1:f"}, RelstitchError, "cannot import"),
        (
            {"factory": "user_models_f1:build_encoder", "factory_kwargs": {"latent_dim": object()}},
            UsageError,
            "JSON values",
        ),
        ({}, UsageError, "factory="),
    ]
    for options, error, words in cases:
        with pytest.raises(error, match=words):
            save_encoder(module, out, input_spec=SPEC, **options)  # type: ignore[arg-type]
        assert not out.exists()  # nothing half-written


def test_a_relative_head_needs_no_factory_and_records_its_contract(
    tmp_path: Path, user_models, train_data: Dataset, anchors: Anchors
) -> None:
    module = user_models.build_encoder(latent_dim=16)
    encoder_path = save_encoder(
        module,
        tmp_path / "mine.encoder.safetensors",
        factory="user_models_f1:build_encoder",
        input_spec=SPEC,
    )
    encoder = load_encoder(encoder_path, trust_code=True)
    layer = RelativeProjection(anchors, embed=lambda a: module(encoder.prepare(a)))
    head = RelativeHead(layer, num_classes=len(train_data.classes), hidden=32)
    path = save_decoder(
        head, tmp_path / "mine.decoder.safetensors", task=_classes(train_data), encoder=encoder_path
    )
    decoder = load_decoder(path)  # a registry head: no code to import, no trust needed
    assert decoder.space == "relative" and decoder.projection == layer.config
    assert decoder.anchor_hash == anchors.hash and decoder.encoder_hash == encoder.hash
    assert decoder.input_dim == len(anchors) and decoder.architecture["name"] == "vision-head"
    z = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(decoder.module(layer(z)), head.eval()(z))
    # a module holding the layer is not a decoder relstitch can feed (it projects the latents itself)
    with pytest.raises(UsageError, match="RelativeProjection"):
        save_decoder(
            torch.nn.Sequential(layer, torch.nn.Linear(len(anchors), 10)),
            tmp_path / "bad.decoder.safetensors",
            task=_classes(train_data),
            factory="user_models_f1:build_head",
            space="relative",
        )


def test_a_users_head_with_a_factory(
    tmp_path: Path, user_models, train_data: Dataset, anchors: Anchors
) -> None:
    encoder_path = save_encoder(
        user_models.build_encoder(),
        tmp_path / "e.encoder.safetensors",
        factory="user_models_f1:build_encoder",
        input_spec=SPEC,
    )
    head = user_models.build_head(in_dim=16)
    absolute = save_decoder(
        head,
        tmp_path / "abs.decoder.safetensors",
        task=_classes(train_data),
        factory="user_models_f1:build_head",
        space="absolute",
        encoder=encoder_path,  # its latent size is the head's input size
    )
    with pytest.raises(RelstitchError, match="'user_models_f1:build_head'.*--trust-code"):
        load_decoder(absolute)
    loaded = load_decoder(absolute, trust_code=True)
    assert loaded.space == "absolute" and loaded.input_dim == 16 and loaded.anchor_hash is None
    relative = user_models.build_head(in_dim=len(anchors))
    path = save_decoder(
        relative,
        tmp_path / "rel.decoder.safetensors",
        task=_classes(train_data),
        factory="user_models_f1:build_head",
        factory_kwargs={"in_dim": len(anchors)},
        space="relative",
        anchors=anchors,
    )
    assert load_decoder(path, trust_code=True).anchor_hash == anchors.hash
    # the head cannot read its own contract, or has the wrong number of outputs: refused before writing
    with pytest.raises(RelstitchError, match="decoder on a \\[1, 7\\] input raised"):
        save_decoder(
            relative,
            tmp_path / "x.decoder.safetensors",
            task=_classes(train_data),
            factory="user_models_f1:build_head",
            factory_kwargs={"in_dim": len(anchors)},
            space="absolute",
            input_dim=7,
        )
    with pytest.raises(RelstitchError, match="10 outputs per sample for 3 classes"):
        save_decoder(
            head,
            tmp_path / "x.decoder.safetensors",
            task={"type": "classification", "classes": ["a", "b", "c"]},
            factory="user_models_f1:build_head",
            space="absolute",
            input_dim=16,
        )
    assert not (tmp_path / "x.decoder.safetensors").exists()


def test_a_factory_that_is_not_a_name_is_refused_as_corrupt(tmp_path: Path, user_models) -> None:
    path = save_encoder(
        user_models.build_encoder(),
        tmp_path / "e.encoder.safetensors",
        factory="user_models_f1:build_encoder",
        input_spec=SPEC,
    )
    art = load_artifact(path, "encoder")
    meta = {k: v for k, v in art.meta.items() if k not in ("kind", "version")}
    meta["architecture"] = dict(meta["architecture"], factory="os:system('rm -rf ~')")
    bad = save_artifact(tmp_path / "bad.encoder.safetensors", "encoder", art.tensors, meta)
    with pytest.raises(RelstitchError, match="corrupt encoder file: relstitch.architecture.factory"):
        load_encoder(bad, trust_code=True)


def test_cli_inspect_needs_no_trust_and_eval_matrix_needs_it(
    tmp_path: Path, user_models, train_data: Dataset, cli
) -> None:
    chosen = select_anchors(train_data, 16, "uniform", seed=0)
    anchors_path = save_anchors(chosen, tmp_path / "anchors.safetensors")
    module = user_models.build_encoder()
    encoder_path = save_encoder(
        module, tmp_path / "u.encoder.safetensors", factory="user_models_f1:build_encoder", input_spec=SPEC
    )
    encoder = load_encoder(encoder_path, trust_code=True)
    head = RelativeHead(
        RelativeProjection(chosen, embed=lambda a: module(encoder.prepare(a))), num_classes=10
    )
    decoder_path = save_decoder(
        head, tmp_path / "u.decoder.safetensors", task=_classes(train_data), encoder=encoder_path
    )
    shown = cli("inspect", encoder_path)
    assert shown.exit_code == 0 and "user_models_f1:build_encoder" in shown.stdout
    args = ["eval-matrix", "-e", encoder_path, "-D", decoder_path, "--anchors", anchors_path]
    args += ["--data", "builtin:test", "--limit", "60", "--method", "relative"]
    refused = cli(*args)
    assert refused.exit_code == 1 and "--trust-code" in refused.stdout + refused.stderr
    done = cli(*args, TRUST)
    assert done.exit_code == 0, done.stderr
    stitched = cli("stitch", encoder_path, decoder_path, "--anchors", anchors_path, "--limit", "60", TRUST)
    assert stitched.exit_code == 0, stitched.stderr
    assert "not stitched" in stitched.stdout
    refused = cli("encode", encoder_path, "--anchors", anchors_path, "--limit", "10", "-o", tmp_path / "e.st")
    assert refused.exit_code == 1 and "'user_models_f1:build_encoder'" in refused.stderr
    sneaked = cli(
        "encode", encoder_path, "--anchors", anchors_path, "-O", "trust_code=true", "-o", tmp_path / "x"
    )
    assert (
        sneaked.exit_code == 2 and "only by the --trust-code flag" in sneaked.stderr
    )  # a flag, never an option


def test_saving_refuses_an_input_spec_no_loader_would_take(tmp_path: Path, user_models) -> None:
    out = tmp_path / "x.encoder.safetensors"
    for bad, words in (
        ({"std": 0}, "input spec: std is 0"),
        ({"resize": [224000, 9]}, "resize[0] is 224000"),
    ):
        with pytest.raises(UsageError, match=re.escape(words)):
            save_encoder(
                user_models.build_encoder(),
                out,
                factory="user_models_f1:build_encoder",
                input_spec={**SPEC, **bad},
            )
        assert not out.exists()


LOUD_MODELS = 'import sys\nsys.stderr.write("importing loud_models_f1\\n")\n' + MODELS
"""A user's module that says when it is imported: the trust line must come first."""


def test_trust_code_names_each_factory_and_its_file_before_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_zoo, cli
) -> None:
    (tmp_path / "loud_models_f1.py").write_text(LOUD_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    import sys

    module = importlib.import_module("loud_models_f1")
    paths = [
        save_encoder(
            module.build_encoder(),
            tmp_path / f"{name}.encoder.safetensors",
            factory="loud_models_f1:build_encoder",
            input_spec=SPEC,
        )
        for name in ("a", "b")
    ]
    lines = [f"warning: trusting factory loud_models_f1:build_encoder (from {p})" for p in paths]
    with pytest.warns(RelstitchWarning, match=re.escape(lines[0].removeprefix("warning: "))):
        load_encoder(paths[0], trust_code=True)
    args = [
        "eval-matrix",
        "-e",
        str(tmp_path / "*.encoder.safetensors"),
        "-D",
        tiny_zoo.decoder("cnn-rel-s0"),
    ]
    args += [
        "--anchors",
        tiny_zoo.anchors_path,
        "--data",
        "builtin:test",
        "--limit",
        "60",
        "--method",
        "relative",
    ]
    refused = cli(*args)
    assert refused.exit_code == 1 and "trusting" not in refused.stderr  # nothing trusted, nothing said
    monkeypatch.delitem(
        sys.modules, "loud_models_f1"
    )  # imported afresh by the run below, as in a new process
    done = cli(*args, TRUST)
    assert done.exit_code == 0, done.stderr
    said = done.stderr.splitlines()
    assert all(line in said for line in lines), done.stderr  # one line per file the glob matched
    assert said.index(lines[0]) < said.index("importing loud_models_f1")  # said before the code ran
    plain = cli(
        "encode",
        tiny_zoo.encoder("cnn-rel-s0"),
        "-a",
        tiny_zoo.anchors_path,
        "--limit",
        10,
        "-o",
        tmp_path / "e.safetensors",
        TRUST,
    )
    assert plain.exit_code == 0 and "trusting" not in plain.stderr  # no factory: nothing to trust

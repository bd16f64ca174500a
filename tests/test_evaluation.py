"""Defaults that follow the user's data, and stitch scoring every pair exactly as eval-matrix does.

Real parts only, built here on the CPU: text data written as JSONL, two tiny BERT models (different seeds)
with a word-level tokenizer, their embeddings files and heads fitted on them through the CLI, and the
session's tiny trained CNN zoo on the built-in data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_checks import one_line_error
from test_sources import make_rows, one_thread, save_tiny_bert  # noqa: F401  (one_thread: autouse, module scope)

from relstitch.errors import UsageError
from relstitch.evaluation import evaluate

METHODS = ["relative", "absolute", "procrustes", "lstsq", "lstsq-ortho", "affine"]


def ok(result) -> None:
    assert result.exit_code == 0, (result.stdout, result.stderr)


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Text data, its anchor file, two tiny BERTs read with mean pooling, their embeddings files, and an
    absolute and a relative head fitted on each (``a-abs``, ``a-rel``, ``b-abs``, ``b-rel``)."""
    from typer.testing import CliRunner

    from relstitch.cli import app

    def cli(*args):
        return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)

    root = tmp_path_factory.mktemp("text")
    rows = make_rows(150, seed=0)
    (root / "s.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    data = f"jsonl:{root / 's.jsonl'}#text=en,fr,label=topic"
    anchors = root / "anchors.safetensors"
    ok(cli("anchors", anchors, "--data", data, "-k", "24", "--strategy", "stratified"))
    models, embeddings = {}, {}
    for name, seed in (("a", 0), ("b", 1)):
        models[name] = f"hf:{save_tiny_bert(root / f'bert-{name}', seed=seed, hidden=32)}"
        embeddings[name] = root / f"{name}.emb.safetensors"
        ok(
            cli(
                "encode",
                models[name],
                "-a",
                anchors,
                "-d",
                data,
                "-o",
                embeddings[name],
                "-O",
                "pooling=mean",
            )
        )
        for space in ("absolute", "relative"):
            head = root / f"{name}-{space[:3]}.decoder.safetensors"
            ok(cli("fit", embeddings[name], "-o", head, "--space", space, "--epochs", "20", "--lr", "3e-3"))
    return {"root": root, "data": data, "anchors": anchors, "models": models, "embeddings": embeddings}


def heads(text: dict) -> list[Path]:
    return sorted(text["root"].glob("*.decoder.safetensors"))


def pairs_of(report: Path) -> dict[tuple[str, str, str], dict]:
    return {(p["encoder"], p["decoder"], p["method"]): p for p in json.loads(report.read_text())["pairs"]}


# ------------------------------------------------------------------- precomputed embeddings alone
def test_eval_matrix_on_embeddings_alone_reads_their_data_and_anchors(cli, tmp_path, text):
    """No --data, no --anchors: the files know both (as stitch already read them), not the built-in set."""
    alone, named = tmp_path / "alone.json", tmp_path / "named.json"
    emb = [f"embeddings:{text['embeddings'][n]}" for n in ("a", "b")]
    decoders = [x for h in heads(text) for x in ("-D", h)]
    ok(
        cli(
            "eval-matrix",
            "-e",
            emb[0],
            "-e",
            emb[1],
            *decoders,
            "--method",
            "relative,absolute,procrustes",
            "--json",
            alone,
        )
    )
    ok(
        cli(
            "eval-matrix",
            "-e",
            emb[0],
            "-e",
            emb[1],
            *decoders,
            "--method",
            "relative,absolute,procrustes",
            "-a",
            text["anchors"],
            "-d",
            text["data"],
            "--json",
            named,
        )
    )
    report = json.loads(alone.read_text())
    assert not report["failed_pairs"] and len(report["pairs"]) == 2 * 2 + 2 * 2 + 2 * 2
    assert report["dataset"]["hash"] == json.loads(named.read_text())["dataset"]["hash"]
    assert report["dataset"]["name"].startswith("jsonl:") and report["config"]["anchors"] is None
    named_pairs = pairs_of(named)
    for key, pair in pairs_of(alone).items():
        assert pair["scores"] == named_pairs[key]["scores"], key


def test_embeddings_that_disagree_are_refused_in_one_line_and_nothing_is_written(cli, tmp_path, text):
    fewer = tmp_path / "b100.emb.safetensors"
    ok(
        cli(
            "encode",
            text["models"]["b"],
            "-a",
            text["anchors"],
            "-d",
            text["data"],
            "--limit",
            100,
            "-o",
            fewer,
            "-O",
            "pooling=mean",
        )
    )
    report = tmp_path / "r.json"
    a, decoders = f"embeddings:{text['embeddings']['a']}", [x for h in heads(text) for x in ("-D", h)]
    line = one_line_error(
        cli("eval-matrix", "-e", a, "-e", f"embeddings:{fewer}", *decoders, "--json", report)
    )
    assert "computed on different data" in line and "a.emb.safetensors" in line and "b100" in line
    # the data named is not theirs: once, before any work, not once per pair
    line = one_line_error(cli("eval-matrix", "-e", a, *decoders, "-d", "builtin:test", "--json", report))
    assert "computed on data 'jsonl:" in line and "not on builtin:test" in line and "--data" in line
    # other anchors than theirs
    other = tmp_path / "other.anchors.safetensors"
    ok(cli("anchors", other, "--data", text["data"], "-k", "24", "--seed", "3"))
    line = one_line_error(cli("eval-matrix", "-e", a, *decoders, "-a", other, "--json", report))
    assert "computed with anchors" in line and "other.anchors.safetensors" in line
    line = one_line_error(cli("stitch", a, heads(text)[0], "-a", other))
    assert "computed with anchors" in line
    assert not report.exists()


def test_the_library_takes_the_embeddings_own_data_and_anchors_too(text):
    done = evaluate([f"embeddings:{text['embeddings']['a']}"], [heads(text)[1]], None, None)
    (pair,) = done.result.pairs
    assert pair.error is None and pair.stitched is False and pair.scores["accuracy"] > 0.6
    with pytest.raises(UsageError, match="only precomputed embeddings know their own anchors and data"):
        evaluate([text["models"]["a"]], [heads(text)[1]], None, None)


# --------------------------------------------------------------- the zoo's defaults only together
def test_own_data_without_anchors_says_how_to_make_an_anchor_file(cli, tmp_path, text):
    """Not the misleading 'anchors are image with no text views': the data needs an anchor file of its own."""
    model, data, head = text["models"]["a"], text["data"], heads(text)[1]
    attempts = {
        "encode": ["encode", model, "-d", data, "-o", tmp_path / "x.safetensors", "-O", "pooling=mean"],
        "stitch": ["stitch", model, head, "-d", data, "-O", "pooling=mean"],
        "eval-matrix": ["eval-matrix", "-e", model, "-D", head, "-d", data, "-O", "pooling=mean"],
        "compare": ["compare", model, text["models"]["b"], "-d", data, "-O", "pooling=mean"],
    }
    for verb, args in attempts.items():
        line = one_line_error(cli(*args), 2)
        assert "needs an anchor file of its own" in line, (verb, line)
        assert "relstitch anchors anchors.safetensors --data 'jsonl:" in line and "--anchors" in line, line
    assert not (tmp_path / "x.safetensors").exists()


def test_a_mix_of_own_inputs_and_zoo_defaults_names_the_missing_option(cli, tmp_path, text, tiny_zoo):
    encoder, decoder = tiny_zoo.encoder("cnn-rel-s0"), tiny_zoo.decoder("cnn-rel-s1")
    report = tmp_path / "r.json"
    cases = [
        (["eval-matrix", "-e", encoder], "--decoders"),
        (["eval-matrix", "-D", decoder], "--encoders"),
        (["eval-matrix", "-a", tiny_zoo.anchors_path], "--encoders"),  # the zoo's models, other anchors
        # anchors picked from text data: the built-in test split is no default for them
        (["eval-matrix", "-e", text["models"]["a"], "-D", heads(text)[1], "-a", text["anchors"]], "--data"),
        (["stitch", text["models"]["a"], heads(text)[1], "-a", text["anchors"]], "--data"),
        (["encode", text["models"]["a"], "-a", text["anchors"], "-o", tmp_path / "x.safetensors"], "--data"),
        (["compare", text["models"]["a"], f"embeddings:{text['embeddings']['b']}"], "--data"),
    ]
    for args, option in cases:
        line = one_line_error(cli(*args, "--json", report) if args[0] == "eval-matrix" else cli(*args), 2)
        assert option in line, (args, line)
    assert not report.exists() and not (tmp_path / "x.safetensors").exists()


def test_anchors_picked_from_the_built_in_set_keep_the_built_in_test_data_as_default(cli, tmp_path, tiny_zoo):
    """Own checkpoints and anchors, all of the built-in set: the README's workflow, no --data needed."""
    report = tmp_path / "r.json"
    enc, dec = tiny_zoo.encoder("cnn-rel-s0"), tiny_zoo.decoder("cnn-rel-s1")
    ok(cli("eval-matrix", "-e", enc, "-D", dec, "-a", tiny_zoo.anchors_path, "--limit", 50, "--json", report))
    assert json.loads(report.read_text())["config"]["data"] == "builtin:test"


# ---------------------------------------------------------- stitch scores what eval-matrix scores
def _scenarios(text: dict, tiny_zoo) -> dict:
    """Per scenario: the eval-matrix arguments, the encoder reference behind each row name and each
    decoder's own encoder, and the stitch arguments shared by every pair."""
    zoo_refs = {name: str(tiny_zoo.encoder(name)) for name in tiny_zoo.names}
    zoo_common = ["-a", tiny_zoo.anchors_path, "-d", "builtin:test", "--limit", 120]
    hf = {f"bert-{n}": text["models"][n] for n in ("a", "b")}
    precomputed = {f"bert-{n}": f"embeddings:{text['embeddings'][n]}" for n in ("a", "b")}
    text_common = ["-a", text["anchors"], "-d", text["data"], "-O", "pooling=mean"]
    text_heads = {h.name.removesuffix(".decoder.safetensors"): h for h in heads(text)}
    return {
        "zoo checkpoints": (
            zoo_refs,
            {name: tiny_zoo.decoder(name) for name in tiny_zoo.names},
            {name: zoo_refs[name] for name in tiny_zoo.names},
            zoo_common,
        ),
        "hf models and -O": (hf, text_heads, {h: hf[f"bert-{h[0]}"] for h in text_heads}, text_common),
        "embeddings alone": (
            precomputed,
            text_heads,
            {h: precomputed[f"bert-{h[0]}"] for h in text_heads},
            [],
        ),
    }


@pytest.mark.parametrize("scenario", ["zoo checkpoints", "hf models and -O", "embeddings alone"])
def test_stitch_scores_every_pair_of_every_method_as_eval_matrix_does(
    cli, tmp_path, text, tiny_zoo, scenario
):
    encoders, decoders, own_encoder, common = _scenarios(text, tiny_zoo)[scenario]
    report = tmp_path / "r.json"
    args = [x for ref in encoders.values() for x in ("-e", ref)] + [
        x for d in decoders.values() for x in ("-D", d)
    ]
    ok(
        cli(
            "eval-matrix", *args, *common, "--method", ",".join(METHODS), "--json", report, "--allow-failures"
        )
    )
    scored = [p for p in pairs_of(report).values() if p["error"] is None]
    assert {p["method"] for p in scored} == set(METHODS)
    assert len(scored) >= len(encoders) * len(decoders)  # every cell of the decoders' own methods, at least
    for pair in scored:
        method, decoder = pair["method"], decoders[pair["decoder"]]
        target = (
            ["--target-encoder", own_encoder[pair["decoder"]]]
            if method not in ("relative", "absolute")
            else []
        )
        result = cli(
            "stitch", encoders[pair["encoder"]], decoder, *common, "--method", method, *target, "--json"
        )
        ok(result)
        single = json.loads(result.stdout)
        assert (single["scores"], single["stitched"]) == (pair["scores"], pair["stitched"]), (pair, single)


def test_a_translation_names_the_target_encoder_option_when_none_is_beside_the_decoder(cli, text):
    line = one_line_error(
        cli(
            "stitch",
            f"embeddings:{text['embeddings']['b']}",
            text["root"] / "a-abs.decoder.safetensors",
            "--method",
            "procrustes",
        ),
        2,
    )
    assert "--target-encoder" in line and "a-abs.encoder.safetensors" in line
    # a wrong target is told by hash; a model reference is read as one, with the command's -O
    line = one_line_error(
        cli(
            "stitch",
            f"embeddings:{text['embeddings']['b']}",
            text["root"] / "a-abs.decoder.safetensors",
            "--method",
            "lstsq",
            "--target-encoder",
            text["models"]["b"],
            "-O",
            "pooling=mean",
            "-a",
            text["anchors"],
        ),
    )
    assert "was trained on encoder" in line and "bert-b" in line


# ------------------------------------------------------------------ -O wherever a model is taken
def test_source_options_reach_anchors_space_encoder_and_compare(cli, tmp_path, text):
    from relstitch.anchors import load_anchors
    from relstitch.encoding import load_embeddings

    chosen = tmp_path / "kmeans.anchors.safetensors"
    ok(
        cli(
            "anchors",
            chosen,
            "-d",
            text["data"],
            "-k",
            6,
            "--strategy",
            "kmeans",
            "--space-encoder",
            text["models"]["a"],
            "-O",
            "pooling=mean",
        )
    )
    measured_in = load_anchors(chosen).meta["parameters"]["space"]["encoder_hash"]
    assert measured_in == load_embeddings(text["embeddings"]["a"]).encoder_hash  # encoded with pooling=mean
    live, files = tmp_path / "live.json", tmp_path / "files.json"
    ok(
        cli(
            "compare",
            text["models"]["a"],
            text["models"]["b"],
            "-a",
            text["anchors"],
            "-d",
            text["data"],
            "-O",
            "pooling=mean",
            "--json",
            live,
        )
    )
    ok(cli("compare", text["embeddings"]["a"], text["embeddings"]["b"], "--json", files))
    assert json.loads(live.read_text())["pairs"] == json.loads(files.read_text())["pairs"]

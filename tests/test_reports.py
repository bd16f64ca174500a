"""Reports: the versioned JSON (schema, determinism, migration), CSV, Markdown, terminal heatmap, HTML in a
browser."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from statistics import mean, stdev

import pytest
import torch
from rich.console import Console

from relstitch.data import Dataset, load_dataset
from relstitch.io.artifacts import describe
from relstitch.matrix import MatrixResult
from relstitch.reports import (
    SCHEMA_VERSION,
    build_report,
    load_report,
    matrix_table,
    print_report,
    report_json,
    report_schema,
    schema_errors,
    to_csv,
    to_html,
    to_markdown,
)
from relstitch.reports.common import CONTROL_NOTE
from relstitch.reports.document import label_baselines
from relstitch.reports.schema import SCHEMA_RESOURCE
from relstitch.results import PairResult

REPO = Path(__file__).resolve().parent.parent
V1_REPORT = Path(__file__).resolve().parent / "data" / "report_v1.json"
V2_REPORT = Path(__file__).resolve().parent / "data" / "report_v2.json"  # written by relstitch 0.1.0's code
LIMIT = "200"


def assert_valid(document: dict) -> None:
    errors = schema_errors(document)
    assert errors == [], errors[:5]


@pytest.fixture(scope="module")
def run(tiny_zoo, tmp_path_factory, cli):
    """One eval-matrix run over the tiny zoo plus a broken encoder file, writing every form."""
    out = tmp_path_factory.mktemp("report")
    broken = out / "broken.encoder.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    encoders = [str(tiny_zoo.encoder(n)) for n in tiny_zoo.names] + [str(broken)]
    args = [a for e in encoders for a in ("-e", e)] + [
        a for n in tiny_zoo.names for a in ("-D", str(tiny_zoo.decoder(n)))
    ]
    result = cli(
        "eval-matrix",
        *args,
        "-a",
        tiny_zoo.anchors_path,
        "--limit",
        LIMIT,
        "--allow-failures",
        "--json",
        out / "r.json",
        "--csv",
        out / "r.csv",
        "--markdown",
        out / "r.md",
        "--html",
        out / "r.html",
    )
    assert result.exit_code == 0, result.output
    return {
        "dir": out,
        "args": args,
        "stdout": result.stdout,
        "report": json.loads((out / "r.json").read_text()),
    }


@pytest.fixture(scope="module")
def cli():
    """conftest's ``cli``, module-scoped so that the one eval-matrix run serves every test here."""
    from typer.testing import CliRunner

    from relstitch.cli import app

    runner = CliRunner()
    return lambda *args, **kw: runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kw)


# ------------------------------------------------------------------------------------------- JSON
def test_every_report_form_validates_against_the_shipped_schema(run, cli):
    assert_valid(run["report"])
    again = cli("report", run["dir"] / "r.json", "--format", "json")
    assert again.exit_code == 0
    assert_valid(json.loads(again.stdout))
    assert_valid(load_report(V1_REPORT))  # migrated


def test_schema_is_package_data_and_the_validator_catches_what_it_should(run):
    package_data = re.search(r"^relstitch = \[(.*)\]$", (REPO / "pyproject.toml").read_text(), flags=re.M)
    assert package_data and f'"{SCHEMA_RESOURCE[0]}/*.json"' in package_data.group(1)  # shipped in the wheel
    assert report_schema()["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    broken = copy.deepcopy(run["report"])
    del broken["main_score"]
    broken["pairs"][0]["stitched"] = "yes"
    broken["pairs"][1]["scores"]["accuracy"] = "high"
    broken["encoders"][0]["hash"] = "abc"
    broken["metrics"]["accuracy"]["direction"] = "up"
    broken["surprise"] = 1
    errors = schema_errors(broken)
    expected = [
        "$: missing required field 'main_score'",
        "$: unexpected field 'surprise'",
        "$.pairs[0].stitched: expected boolean, got str",
        "$.encoders[0].hash: 'abc' does not match",
        "$.pairs[1].scores.accuracy: 'high' does not match",
        "$.metrics.accuracy.direction: 'up' is not one of",
    ]
    for message in expected:
        assert any(e.startswith(message) for e in errors), (message, errors)
    assert len(errors) == len(expected)


def test_report_records_provenance_hashes_and_scores(run, tiny_zoo, anchors):
    report = run["report"]
    assert report["schema"] == "relstitch-report" and report["schema_version"] == SCHEMA_VERSION
    assert report["task"] == "classification" and report["main_metric"] == "accuracy"
    assert report["metrics"] == {"accuracy": {"direction": "higher"}, "macro_f1": {"direction": "higher"}}
    assert report["anchors"]["hash"] == anchors.hash and report["anchors"]["count"] == 64
    assert report["anchors"]["strategy"] == "uniform" and report["anchors"]["seed"] == 0
    assert report["dataset"]["hash"] == load_dataset("builtin:test", limit=int(LIMIT)).hash
    for kind, items in (("encoder", report["encoders"][:4]), ("decoder", report["decoders"])):
        for item, name in zip(items, tiny_zoo.names, strict=True):
            meta = describe(getattr(tiny_zoo, kind)(name))["metadata"]
            assert (
                item["hash"] == meta["hash"]
                and item["seed"] == meta["training"]["seed"]
                and item["group"] == "cnn"
            )
    assert report["encoders"][4]["name"] == "broken" and "error" in report["encoders"][4]
    config = report["config"]
    assert config["limit"] == 200 and config["device"] == "cpu" and config["dtype"] == "float32"
    assert config["projections"] == [report["decoders"][0]["projection"]] and config["methods"] == [
        "relative",
        "absolute",
    ]
    assert set(report["environment"]["packages"]) >= {"torch", "transformers"}
    assert report["environment"]["packages"]["torch"] == torch.__version__.split("+")[
        0
    ] or torch.__version__.startswith(report["environment"]["packages"]["torch"])
    # 5 encoders × 4 decoders; the broken encoder fails with each decoder and only there
    assert len(report["pairs"]) == 20
    failed = report["failed_pairs"]
    assert [(f["encoder"], f["decoder"]) for f in failed] == [("broken", n) for n in tiny_zoo.names]
    assert all(f["error"] for f in failed)
    assert {p["method"] for p in report["pairs"]} == {"relative", "absolute"}
    diagonal = [(p["encoder"], p["decoder"]) for p in report["pairs"] if not p["stitched"]]
    assert diagonal == [(n, n) for n in tiny_zoo.names]
    # timings live under run only
    assert len(report["run"]["pair_seconds"]) == 20 and "seconds" not in report["pairs"][0]


def test_matrices_main_score_and_aggregate_follow_the_pairs(run):
    report = run["report"]
    ok = [p for p in report["pairs"] if not p["error"]]
    rel = report["matrices"]["relative"]
    assert rel["rows"] == [e["name"] for e in report["encoders"]]
    assert rel["columns"] == ["cnn-rel-s0", "cnn-rel-s1"]
    for i, e in enumerate(rel["rows"]):
        for j, d in enumerate(rel["columns"]):
            pair = next(p for p in report["pairs"] if (p["encoder"], p["decoder"]) == (e, d))
            assert rel["values"]["accuracy"][i][j] == (None if pair["error"] else pair["scores"]["accuracy"])
    stitched = [
        p["scores"]["accuracy"]
        for p in ok
        if p["method"] == "relative" and p["stitched"] and not p["cross_space"]
    ]
    assert len(stitched) == 2  # rel-s0 ↔ rel-s1
    assert report["main_score"]["value"] == pytest.approx(mean(stitched)) and report["main_score"]["n"] == 2
    # the paper's claim holds even on the tiny zoo: absolute stitching collapses, relative does not
    abs_stitched = [
        p["scores"]["accuracy"]
        for p in ok
        if p["method"] == "absolute" and p["stitched"] and not p["cross_space"]
    ]
    assert max(abs_stitched) < 0.5 < min(stitched)
    row = next(
        r
        for r in report["aggregate"]
        if (r["method"], r["setting"], r["encoder_group"], r["metric"])
        == ("absolute", "stitched", "all", "accuracy")
    )
    assert (
        row["n"] == 2
        and row["mean"] == pytest.approx(mean(abs_stitched))
        and row["std"] == pytest.approx(stdev(abs_stitched))
    )
    cross = [p for p in ok if p["cross_space"]]
    assert len(cross) == 8 and all(p["encoder_space"] != p["space"] for p in cross)


def test_everything_outside_run_is_byte_deterministic(run, cli, tiny_zoo):
    second = run["dir"] / "again.json"
    result = cli(
        "eval-matrix",
        *run["args"],
        "-a",
        tiny_zoo.anchors_path,
        "--limit",
        LIMIT,
        "--allow-failures",
        "--json",
        second,
    )
    assert result.exit_code == 0
    first, again = copy.deepcopy(run["report"]), json.loads(second.read_text())
    assert_valid(again)
    first.pop("run"), again.pop("run")
    assert report_json(first) == report_json(again)


def test_old_report_is_migrated_and_a_newer_one_refused(tmp_path, cli):
    old = json.loads(V1_REPORT.read_text())
    assert old["schema_version"] == 1 and "matrices" not in old
    report = load_report(V1_REPORT)
    assert report["schema_version"] == SCHEMA_VERSION and report["methods"] == ["relative", "absolute"]
    assert report["matrices"]["absolute"]["columns"] == ["cnn-abs-s1"]
    # the v1 matrix held the same numbers, all methods mixed in one grid
    v1 = old["matrix"]
    for i, e in enumerate(v1["rows"]):
        for j, d in enumerate(v1["columns"]):
            method = next(x["space"] for x in old["decoders"] if x["name"] == d)
            m = report["matrices"][method]
            assert (
                m["values"]["accuracy"][m["rows"].index(e)][m["columns"].index(d)]
                == v1["values"]["accuracy"][i][j]
            )
    assert report["run"]["pair_seconds"][0]["seconds"] == old["run"]["pair_seconds"]["cnn-rel-s0|cnn-rel-s0"]
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(dict(old, schema_version=SCHEMA_VERSION + 1)))
    result = cli("report", newer)
    assert result.exit_code == 1 and "newer than this relstitch reads" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    ragged = load_report(V1_REPORT)
    ragged["matrices"]["relative"]["values"]["accuracy"][0].pop()
    for text, message in (
        ("{", "not valid JSON"),
        ("[]", "not a relstitch report"),
        (json.dumps({"schema_version": 2, "task": "x"}), "does not match schema"),
        (json.dumps(ragged), "$.matrices.relative.values.accuracy is not 2 × 2"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        result = cli("report", bad)
        assert result.exit_code == 1 and message in result.stderr, result.stderr


def test_inspect_summarises_a_report_and_refuses_other_json(run, cli, tmp_path):
    """``inspect`` of a JSON report: kind, schema version, the main score and what was scored (an old one
    migrated)."""
    report = run["report"]
    shown = cli("inspect", run["dir"] / "r.json", "--json")
    assert shown.exit_code == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["kind"] == "report" and info["version"] == SCHEMA_VERSION and info["tensors"] == {}
    summary = info["metadata"]
    assert summary["pairs"] == len(report["pairs"]) and summary["failed_pairs"] == len(report["failed_pairs"])
    assert (
        summary["encoders"] == [e["name"] for e in report["encoders"]]
        and summary["dataset"]["hash"] == report["dataset"]["hash"]
    )
    assert summary["main_score"].startswith(f"{report['main_metric']} {report['main_score']['value']:.4f}")
    table = cli("inspect", run["dir"] / "r.json")
    assert table.exit_code == 0 and f"relstitch report file, format {SCHEMA_VERSION}" in " ".join(
        table.stdout.split()
    )
    assert (
        json.loads(cli("inspect", V1_REPORT, "--json").stdout)["version"] == SCHEMA_VERSION
    )  # migrated on read
    other = tmp_path / "other.json"
    other.write_text('  {"a": 1}')
    refused = cli("inspect", other)
    assert (
        refused.exit_code == 1
        and "not a relstitch report" in refused.stderr
        and refused.stderr.count("\n") == 1
    )


# ------------------------------------------------------------------------------------- CSV and MD
def test_csv_is_long_form_with_one_row_per_pair_and_metric(run):
    text = (run["dir"] / "r.csv").read_text()
    assert text == to_csv(load_report(run["dir"] / "r.json"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0])[:5] == ["encoder", "decoder", "method", "metric", "value"]
    report = run["report"]
    assert len(rows) == 16 * 2 + 4  # 16 pairs × 2 metrics, and one row per failed pair
    for pair in report["pairs"]:
        mine = [r for r in rows if (r["encoder"], r["decoder"]) == (pair["encoder"], pair["decoder"])]
        if pair["error"]:
            assert len(mine) == 1 and mine[0]["error"] == pair["error"] and mine[0]["value"] == ""
            continue
        assert {r["metric"]: float(r["value"]) for r in mine} == pair["scores"]
        assert {r["method"] for r in mine} == {pair["method"]} and {r["stitched"] for r in mine} == {
            str(pair["stitched"])
        }
        assert {r["encoder_group"] for r in mine} == {"cnn"}


def test_markdown_has_a_matrix_per_method_the_aggregate_failures_and_provenance(run):
    text = (run["dir"] / "r.md").read_text()
    report = run["report"]
    assert text == to_markdown(load_report(run["dir"] / "r.json"))
    assert "## relative · accuracy ↑" in text and "## absolute · accuracy ↑" in text
    diag = next(p for p in report["pairs"] if p["encoder"] == "cnn-rel-s0" and p["decoder"] == "cnn-rel-s0")
    off = next(p for p in report["pairs"] if p["encoder"] == "cnn-rel-s0" and p["decoder"] == "cnn-rel-s1")
    assert (
        f"| cnn-rel-s0 | **{diag['scores']['accuracy']:.3f}**\\* | {off['scores']['accuracy']:.3f} |" in text
    )
    assert "| broken | ✗ | ✗ |" in text and "## Failed pairs" in text
    assert "| method | setting | all |" in text
    stitched = next(
        r
        for r in report["aggregate"]
        if (r["method"], r["setting"], r["encoder_group"], r["metric"])
        == ("relative", "stitched", "all", "accuracy")
    )
    assert f"| relative | stitched | {stitched['mean']:.3f} ± {stitched['std']:.3f} (n=2) |" in text
    assert report["anchors"]["hash"][:16] in text and report["dataset"]["hash"][:16] in text
    assert report["decoders"][0]["hash"][:12] in text
    # the tables are well-formed: every table row has as many cells as its header
    for block in re.findall(r"((?:^\|.*\|\n)+)", text, flags=re.M):
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in block.splitlines()}
        assert len(widths) == 1, block


# ---------------------------------------------------------------------------------------- terminal
def toy_report(first_score: float = 0.9, data: Dataset | None = None) -> dict:
    """A hand-made run: two encoders with their relative decoders, one encoder that failed to load;
    ``data``, when given, is the data it scored (the report then has its baselines)."""
    h = {n: c * 64 for n, c in (("alpha", "a"), ("beta", "b"), ("da", "c"), ("db", "d"))}
    enc = [
        {
            "name": "alpha",
            "path": "alpha.e",
            "hash": h["alpha"],
            "latent_dim": 8,
            "trained_space": "relative",
            "architecture": "cnn",
            "seed": 0,
            "encode_seconds": 0.1,
        },
        {
            "name": "beta-long-encoder-name",
            "path": "beta.e",
            "hash": h["beta"],
            "latent_dim": 8,
            "trained_space": "relative",
            "architecture": "mlp",
            "seed": 1,
            "encode_seconds": 0.1,
        },
        {"name": "gamma", "path": "gamma.e", "error": "gamma.e: not a safetensors file"},
    ]
    proj = {"similarity": "cosine", "centering": False}
    dec = [
        {
            "name": "alpha",
            "path": "alpha.d",
            "hash": h["da"],
            "space": "relative",
            "input_dim": 4,
            "encoder_hash": h["alpha"],
            "anchor_hash": "e" * 64,
            "projection": proj,
            "architecture": "vision-head",
            "seed": 0,
            "encoder_architecture": "cnn",
        },
        {
            "name": "beta-long-decoder-name",
            "path": "beta.d",
            "hash": h["db"],
            "space": "relative",
            "input_dim": 4,
            "encoder_hash": h["beta"],
            "anchor_hash": "e" * 64,
            "projection": proj,
            "architecture": "vision-head",
            "seed": 1,
            "encoder_architecture": "mlp",
        },
    ]
    scores = {
        ("alpha", "alpha"): first_score,
        ("alpha", "beta-long-decoder-name"): 0.625,
        ("beta-long-encoder-name", "alpha"): 0.5,
        ("beta-long-encoder-name", "beta-long-decoder-name"): 0.875,
    }
    pairs = [
        PairResult(
            e,
            d,
            "relative",
            e.split("-")[0] != d.split("-")[0],
            {"accuracy": v, "macro_f1": v - 0.1},
            seconds=0.01,
            encoder_space="relative",
        )
        for (e, d), v in scores.items()
    ]
    pairs += [
        PairResult("gamma", d["name"], "relative", True, error="gamma.e: not a safetensors file") for d in dec
    ]
    result = MatrixResult(
        enc,
        dec,
        pairs,
        "classification",
        "accuracy",
        {"path": "a.st", "hash": "e" * 64, "count": 4, "strategy": "uniform", "seed": 0},
        data.describe()
        if data is not None
        else {"name": "toy", "size": 8, "shape": [1, 2, 2], "hash": "f" * 64},
        {"total_seconds": 1.0},
    )
    return build_report(
        result,
        config={"data": "toy", "limit": None, "batch_size": 8},
        command=["relstitch", "eval-matrix"],
        dataset=data,
    )


def render(report: dict, width: int, *, by_group: bool = False) -> str:
    """What a ``width``-column terminal without colour shows (rich pads lines to the table width:
    stripped)."""
    console = Console(file=io.StringIO(), width=width, color_system=None)
    print_report(console, report, by_group=by_group)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines()) + "\n"


EXPECTED_WIDE = """\
relative · accuracy ↑
┏━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ encoder \\ decoder      ┃  alpha ┃ beta-long-decoder-name ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━┩
│ alpha                  │ 0.900* │                  0.625 │
│ beta-long-encoder-name │  0.500 │                 0.875* │
│ gamma                  │     ✗1 │                     ✗1 │
└────────────────────────┴────────┴────────────────────────┘
✗1 row gamma (2 cells): gamma.e: not a safetensors file
rows: encoders, columns: decoders · * = not stitched (the decoder's own encoder)
accuracy ↑: mean ± std (n) over pairs · per group pair: --by-group
┏━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━┓
┃ method   ┃        not stitched ┃            stitched ┃
┡━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━┩
│ relative │ 0.887 ± 0.018 (n=2) │ 0.562 ± 0.088 (n=2) │
└──────────┴─────────────────────┴─────────────────────┘
main score: accuracy ↑ 0.562 — mean over 2 stitched relative pairs
"""

EXPECTED_NARROW = """\
relative · accuracy ↑
┏━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━┓
┃ enc \\ dec ┃     D1 ┃     D2 ┃
┡━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━┩
│ E1        │ 0.900* │  0.625 │
│ E2        │  0.500 │ 0.875* │
│ E3        │     ✗1 │     ✗1 │
└───────────┴────────┴────────┘
E1 = alpha (cnn, seed 0)
E2 = beta-long-encoder-name (mlp, seed 1)
E3 = gamma (unknown)
D1 = alpha (cnn, seed 0)
D2 = beta-long-decoder-name (mlp, seed 1)
✗1 row gamma (2 cells): gamma.e: not a safetensors file
rows: encoders, columns: decoders · * =
not stitched (the decoder's own encoder)
accuracy ↑: mean ± std (n) over pairs ·
per group pair: --by-group
relative
  not stitched: 0.887 ± 0.018 (n=2)
  stitched: 0.562 ± 0.088 (n=2)
main score: accuracy ↑ 0.562 — mean over
2 stitched relative pairs
"""

EXPECTED_BY_GROUP = """\
accuracy ↑: mean ± std (n) by encoder group → decoder group
┏━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━┓
┃ method   ┃ setting      ┃ groups  ┃      mean ± std (n) ┃
┡━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━┩
│ relative │ not stitched │ all     │ 0.887 ± 0.018 (n=2) │
│ relative │ not stitched │ cnn→cnn │         0.900 (n=1) │
│ relative │ not stitched │ mlp→mlp │         0.875 (n=1) │
│ relative │ stitched     │ all     │ 0.562 ± 0.088 (n=2) │
│ relative │ stitched     │ cnn→mlp │         0.625 (n=1) │
│ relative │ stitched     │ mlp→cnn │         0.500 (n=1) │
└──────────┴──────────────┴─────────┴─────────────────────┘
main score: accuracy ↑ 0.562 — mean over 2 stitched relative pairs
"""


def test_terminal_heatmap_in_a_fixed_width_console_without_colour():
    report = toy_report()
    assert_valid(report)
    wide = render(report, 80)
    assert wide == EXPECTED_WIDE, wide
    narrow = render(report, 40)
    assert narrow == EXPECTED_NARROW, narrow
    # the group pairs only on request (--by-group): after the summary, with its hint gone from the summary's
    # title
    by_group = render(report, 80, by_group=True)
    assert by_group.endswith(EXPECTED_BY_GROUP), by_group
    assert "--by-group" not in by_group and "cnn→mlp" not in wide and "mlp→cnn" not in wide
    assert by_group.startswith(EXPECTED_WIDE.split("accuracy ↑: mean")[0])  # the heatmap is the same
    # --metric picks another metric; the arrow follows its direction
    table, _ = matrix_table(report, "relative", "macro_f1")
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(table)
    assert "relative · macro_f1 ↑" in console.file.getvalue() and "0.800*" in console.file.getvalue()


def test_terminal_colours_follow_the_value_and_the_metric_direction():
    report = toy_report()
    colour = Console(file=io.StringIO(), width=100, color_system="truecolor", force_terminal=True)
    print_report(colour, report)
    text = colour.file.getvalue()
    best, worst = "48;2;26;152;80", "48;2;215;48;39"  # background of the best (0.9) and worst (0.5) cells
    assert re.search(rf"{best}m[^\x1b]*0\.900\*", text) and re.search(rf"{worst}m[^\x1b]*0\.500", text)
    # lower is better for mse: the same numbers, reversed colours
    flipped = copy.deepcopy(report)
    flipped["metrics"]["accuracy"]["direction"] = "lower"
    colour = Console(file=io.StringIO(), width=100, color_system="truecolor", force_terminal=True)
    print_report(colour, flipped)
    text = colour.file.getvalue()
    assert re.search(rf"{worst}m[^\x1b]*0\.900\*", text) and re.search(rf"{best}m[^\x1b]*0\.500", text)
    assert "accuracy ↓" in text
    # NO_COLOR: no colour codes at all, the markers still there
    plain = Console(file=io.StringIO(), width=100, force_terminal=True, no_color=True)
    print_report(plain, report)
    assert "48;2;" not in plain.file.getvalue() and "38;2;" not in plain.file.getvalue()
    assert "0.900*" in plain.file.getvalue() and "✗1" in plain.file.getvalue()


def test_report_command_renders_every_format_and_refuses_bad_options(run, cli, tmp_path):
    path = run["dir"] / "r.json"
    for fmt, name in (("md", "r.md"), ("csv", "r.csv"), ("html", "r.html")):
        result = cli("report", path, "--format", fmt)
        assert result.exit_code == 0 and result.stdout == (run["dir"] / name).read_text(), fmt
    table = cli("report", path)
    assert (
        table.exit_code == 0
        and "relative · accuracy ↑" in table.stdout
        and "absolute · accuracy ↑" in table.stdout
    )
    out = tmp_path / "t.txt"
    assert cli("report", path, "--format", "table", "--metric", "macro_f1", "-o", out).exit_code == 0
    assert "relative · macro_f1 ↑" in out.read_text() and "\x1b[" not in out.read_text()
    again = cli("report", path, "--format", "table", "-o", out)
    assert again.exit_code == 1 and "already exists" in again.stderr
    bad = cli("report", path, "--format", "pdf")
    assert bad.exit_code == 2 and "unknown --format 'pdf'" in bad.stderr
    bad = cli("report", path, "--metric", "mse")
    assert bad.exit_code == 2 and "unknown metric 'mse'" in bad.stderr


def test_group_option_relabels_and_refuses_a_pattern_matching_nothing(run, cli, tiny_zoo, tmp_path):
    out = tmp_path / "g.json"
    result = cli(
        "eval-matrix",
        *run["args"],
        "-a",
        tiny_zoo.anchors_path,
        "--limit",
        "50",
        "--allow-failures",
        "--group",
        "cnn-abs-*=absnet",
        "--group",
        "cnn-rel-*=relnet",
        "--json",
        out,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert_valid(report)
    groups = {e["name"]: e["group"] for e in report["encoders"]}
    assert (
        groups["cnn-abs-s0"] == "absnet"
        and groups["cnn-rel-s1"] == "relnet"
        and groups["broken"] == "unknown"
    )
    assert {d["group"] for d in report["decoders"]} == {"absnet", "relnet"}
    pairs = {(r["encoder_group"], r["decoder_group"]) for r in report["aggregate"]}
    assert ("absnet", "relnet") in pairs and ("relnet", "relnet") in pairs
    assert report["config"]["groups"] == [
        {"pattern": "cnn-abs-*", "group": "absnet"},
        {"pattern": "cnn-rel-*", "group": "relnet"},
    ]
    for bad, message in (("vit-*=vit", "matches no encoder or decoder"), ("novalue", "expected NAME=GROUP")):
        refused = cli(
            "eval-matrix",
            *run["args"],
            "-a",
            tiny_zoo.anchors_path,
            "--group",
            bad,
            "--json",
            tmp_path / "x.json",
        )
        assert refused.exit_code == 2 and message in refused.stderr and not (tmp_path / "x.json").exists()


def test_one_matrix_per_method_with_controls_next_to_their_method(run, cli, tiny_zoo, tmp_path):
    out = tmp_path / "m.json"
    result = cli(
        "eval-matrix",
        *run["args"][:-10],
        *run["args"][-8:],
        "-a",
        tiny_zoo.anchors_path,
        "--limit",
        "50",
        "--method",
        "absolute,procrustes,relative",
        "--null-baseline",
        "--json",
        out,
        "--markdown",
        tmp_path / "m.md",
        "--html",
        tmp_path / "m.html",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert_valid(report)
    assert report["methods"] == ["relative", "relative-null", "absolute", "procrustes", "procrustes-null"]
    assert set(report["matrices"]) == set(report["methods"])
    assert report["matrices"]["procrustes"]["columns"] == ["cnn-abs-s0", "cnn-abs-s1"]
    assert report["main_score"]["method"] == "relative"
    for method in report["methods"]:
        assert (
            f"{method} · accuracy ↑" in result.stdout
            or f"{method} (control: shuffled-anchors) · accuracy ↑" in result.stdout
        )
    markdown = (tmp_path / "m.md").read_text()
    assert (
        "## relative-null (control: shuffled-anchors) · accuracy ↑" in markdown
        and markdown.count("\n## ") == 5 + 2
    )
    assert (tmp_path / "m.html").read_text().count("<figure>") == 5
    # what a control measures, said once in every form: toward or below chance, as measured
    assert "collapses toward or below chance" in CONTROL_NOTE
    assert markdown.count(CONTROL_NOTE) == 1 and " ".join(result.stdout.split()).count(CONTROL_NOTE) == 1
    assert (tmp_path / "m.html").read_text().count(CONTROL_NOTE.replace("'", "&#x27;")) == 1
    assert CONTROL_NOTE not in (run["dir"] / "r.md").read_text()  # no control, no note
    # translations and controls are never cross-space; native pairs across bottlenecks are
    assert not any(p["cross_space"] for p in report["pairs"] if p["method"] != p["space"])
    assert any(p["cross_space"] for p in report["pairs"] if p["method"] == "relative")


def test_rendering_a_saved_report_does_not_import_torch(run):
    path = str(run["dir"] / "r.json")
    code = (
        f"import sys, relstitch.reports as r; r.to_html(r.load_report({path!r})); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------- baselines
def labelled(labels: list[int], classes: list[str]) -> Dataset:
    """Real data with these labels (tiny grey images): what a report's baselines are computed from."""
    return Dataset("toy", torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), torch.tensor(labels), classes)


def test_label_baselines_are_chance_and_the_majority_class():
    # 6 of 10 samples are "neg": always answering it scores 0.6; a uniform guess over 3 classes, 1/3
    assert label_baselines([0] * 6 + [1] * 2 + [2] * 2, ["neg", "pos", "mid"]) == {
        "metric": "accuracy",
        "samples": 10,
        "classes": 3,
        "chance": pytest.approx(1 / 3),
        "majority": 0.6,
        "majority_class": "neg",
    }
    # a class the data names but holds no sample of still counts for chance; a tie goes to the first class
    tie = label_baselines([2, 1, 2, 1], ["a", "b", "c", "d"])
    assert tie is not None and (tie["chance"], tie["majority"], tie["majority_class"]) == (0.25, 0.5, "b")
    assert label_baselines([], ["a"]) is None and label_baselines([0, 0], []) is None  # nothing to judge by


def test_baselines_are_in_every_form_of_the_report(tmp_path):
    data = labelled([0] * 6 + [1] * 2 + [2] * 2, ["neg", "pos", "mid"])
    report = toy_report(data=data)
    assert_valid(report)
    assert report["baselines"] == label_baselines(data.y.tolist(), data.classes)
    # the toy's stitched mean, 0.562, is below the majority class's 0.600: every form says so
    line = (
        "accuracy baselines: chance 0.333 (3 classes), majority class 0.600 (neg) — the main score is not "
        "above it"
    )
    shown = render(report, 120).splitlines()
    assert shown[-2:] == [line, "main score: accuracy ↑ 0.562 — mean over 2 stitched relative pairs"]
    sentence = line[0].upper() + line[1:] + "."
    assert f"\n{sentence}\n" in to_markdown(report) and f">{sentence}</p>" in to_html(report)
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert len(rows) == 10 and {(r["baseline_chance"], r["baseline_majority"]) for r in rows} == {
        (str(1 / 3), "0.6")
    }
    # saved and read back, the report renders the same
    saved = tmp_path / "r.json"
    saved.write_text(report_json(report))
    again = load_report(saved)
    assert again["baselines"] == report["baselines"] and render(again, 120) == render(report, 120)
    # above the majority class: the baselines, and no warning
    fair = toy_report(data=labelled([0] * 4 + [1] * 3 + [2] * 3, ["neg", "pos", "mid"]))
    assert render(fair, 120).splitlines()[-2] == (
        "accuracy baselines: chance 0.333 (3 classes), majority class 0.400 (neg)"
    )
    # without the data a report has no baselines, and says nothing of them
    bare = toy_report()
    assert bare["baselines"] is None
    for text in (render(bare, 120), to_markdown(bare), to_html(bare)):
        assert "baselines" not in text.lower()
    assert {
        (r["baseline_chance"], r["baseline_majority"]) for r in csv.DictReader(io.StringIO(to_csv(bare)))
    } == {("", "")}
    with pytest.raises(ValueError, match="not the data the run scored"):
        build_report(
            MatrixResult(
                [], [], [], "classification", "accuracy", {}, {"name": "x", "size": 1, "hash": "0" * 64}
            ),
            config={},
            dataset=data,
        )


def test_a_matrix_run_reports_the_baselines_of_the_data_it_scored(tiny_zoo, anchors):
    from relstitch.matrix import eval_matrix

    data = load_dataset("builtin:test", limit=300)
    names = tiny_zoo.names[:2]
    result = eval_matrix(
        [tiny_zoo.encoder(n) for n in names], [tiny_zoo.decoder(n) for n in names], anchors, data
    )
    report = build_report(
        result, config={"data": "builtin:test", "limit": 300, "batch_size": 256}, dataset=data
    )
    assert_valid(report)
    counts = torch.bincount(data.y, minlength=10)
    assert report["baselines"] == {
        "metric": "accuracy",
        "samples": 300,
        "classes": 10,
        "chance": 0.1,
        "majority": counts.max().item() / 300,
        "majority_class": data.classes[int(counts.argmax())],
    }
    line = f"accuracy baselines: chance 0.100 (10 classes), majority class {counts.max().item() / 300:.3f}"
    for text in (render(report, 100), to_markdown(report), to_html(report)):
        assert line in text.lower()  # "Accuracy baselines" in a sentence


def test_a_schema_2_report_loads_and_renders_without_baselines(cli):
    old = json.loads(V2_REPORT.read_text())
    assert old["schema_version"] == 2 and "baselines" not in old
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its derived parts agree with its pairs: migrated without a word
        report = load_report(V2_REPORT)
    assert report["schema_version"] == SCHEMA_VERSION and report["baselines"] is None
    assert {k: v for k, v in report.items() if k not in ("schema_version", "baselines")} == {
        k: v for k, v in old.items() if k != "schema_version"
    }
    assert load_report(V1_REPORT)["baselines"] is None
    for fmt in ("table", "md", "html", "csv", "json"):
        shown = cli("report", V2_REPORT, "--format", fmt)
        assert shown.exit_code == 0 and "cnn-rel-s1" in shown.stdout, shown.stderr
        assert "majority" not in shown.stdout.split("\n", 1)[fmt == "csv"], (
            fmt
        )  # csv: only its header names it
    assert '"baselines": null' in cli("report", V2_REPORT, "--format", "json").stdout


# -------------------------------------------------------------------------------------------- HTML
def test_html_is_self_contained(run):
    text = (run["dir"] / "r.html").read_text()
    assert text == to_html(load_report(run["dir"] / "r.json"))
    assert "<script" not in text.lower() and " src=" not in text and "<link" not in text
    # the only URL is the SVG namespace, an identifier browsers never fetch
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) == {"http://www.w3.org/2000/svg"}
    assert text.count("<svg") == 3  # two heatmaps and the colour scale
    report = run["report"]
    for needle in (
        report["anchors"]["hash"],
        report["dataset"]["hash"],
        "cnn-rel-s0 → cnn-rel-s1 (relative)",
        "Failed pairs",
        "mean ± std over pairs",
        "&quot;batch_size&quot;: 256",
    ):
        assert needle in text, needle


def _screenshot(chromium: str, html: Path, png: Path, profile: Path) -> torch.Tensor:
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            "--window-size=1200,900",
            html.as_uri(),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    from torchvision.io import decode_png

    with (
        warnings.catch_warnings()
    ):  # torchvision 0.29 deprecates its image I/O in favour of torchcodec; it still works
        warnings.simplefilter("ignore", DeprecationWarning)
        image = decode_png(torch.frombuffer(bytearray(png.read_bytes()), dtype=torch.uint8))
    return image[:3].permute(1, 2, 0).int()


def _heat_pixels(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of clearly green and clearly red pixels: the two ends of the heat scale (text and borders are
    grey)."""
    r, g, b = image.unbind(2)
    return (g > r + 30) & (g > b + 30), (r > g + 60) & (r > b + 60)


@pytest.mark.slow
def test_html_heatmap_renders_in_headless_chromium(run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    image = _screenshot(chromium, run["dir"] / "r.html", tmp_path / "page.png", tmp_path / "profile")
    assert image.shape == (900, 1200, 3)
    # heatmap cells: green where stitching works (diagonals, relative) and red where absolute stitching
    # collapses; the colour scale alone has under 2,300 of each, a cell about 1,700
    green, red = _heat_pixels(image)
    assert green.sum() > 5000 and red.sum() > 5000, (int(green.sum()), int(red.sum()))
    rows = green.any(dim=1).nonzero()
    assert 100 < int(rows.min()) < int(rows.max()) < 700  # in the first screen, below the title
    # control: the same page without its SVGs has no such colour, so the check above can fail
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<svg.*?</svg>", "", (run["dir"] / "r.html").read_text(), flags=re.S))
    green, red = _heat_pixels(_screenshot(chromium, bare, tmp_path / "bare.png", tmp_path / "profile"))
    assert green.sum() < 50 and red.sum() < 50, (int(green.sum()), int(red.sum()))


def test_reconstruction_report_lower_is_better_and_an_infinite_psnr():
    """A perfect reconstruction has mse 0 and psnr inf: stored as the string "inf", left out of means, shown
    as inf."""
    h = {n: c * 64 for n, c in (("e0", "a"), ("e1", "b"), ("d0", "c"), ("d1", "d"))}
    encoders = [
        {
            "name": f"ae{i}",
            "path": f"ae{i}.e",
            "hash": h[f"e{i}"],
            "latent_dim": 8,
            "trained_space": "relative",
            "architecture": "conv-ae",
            "seed": i,
        }
        for i in (0, 1)
    ]
    decoders = [
        {
            "name": f"ae{i}",
            "path": f"ae{i}.d",
            "hash": h[f"d{i}"],
            "space": "relative",
            "input_dim": 4,
            "encoder_hash": h[f"e{i}"],
            "anchor_hash": "e" * 64,
            "projection": {"similarity": "cosine"},
            "architecture": "conv-decoder",
            "seed": i,
        }
        for i in (0, 1)
    ]
    mse = {("ae0", "ae0"): 0.0, ("ae0", "ae1"): 0.04, ("ae1", "ae0"): 0.06, ("ae1", "ae1"): 0.01}
    pairs = [
        PairResult(
            e,
            d,
            "relative",
            e != d,
            {"mse": v, "psnr": 10 * math.log10(1 / v) if v else math.inf},
            encoder_space="relative",
        )
        for (e, d), v in mse.items()
    ]
    report = build_report(
        MatrixResult(
            encoders,
            decoders,
            pairs,
            "reconstruction",
            "mse",
            {"path": None, "hash": "e" * 64, "count": 4, "strategy": "uniform", "seed": 0},
            {"name": "toy", "size": 2, "hash": "f" * 64},
        ),
        config={"data": "toy", "batch_size": 2},
    )
    assert_valid(report)
    assert "Infinity" not in report_json(report) and report["pairs"][0]["scores"]["psnr"] == "inf"
    assert report["metrics"] == {"mse": {"direction": "lower"}, "psnr": {"direction": "higher"}}
    assert report["main_score"] == {
        "metric": "mse",
        "direction": "lower",
        "method": "relative",
        "setting": "stitched",
        "value": pytest.approx(0.05),
        "n": 2,
    }
    psnr = next(
        r
        for r in report["aggregate"]
        if (r["setting"], r["encoder_group"], r["metric"]) == ("not stitched", "all", "psnr")
    )
    assert psnr["n"] == 1 and psnr["mean"] == pytest.approx(20.0)  # the infinite one is left out
    text = render(report, 100)
    assert "relative · mse ↓" in text and "0.000*" in text
    assert "| ae0 | **inf**\\* |" in to_markdown(report, "psnr")


def test_a_run_where_every_pair_failed_still_renders_in_every_form():
    decoder = {
        "name": "d",
        "path": "d.d",
        "hash": "c" * 64,
        "space": "relative",
        "input_dim": 4,
        "encoder_hash": None,
        "anchor_hash": "e" * 64,
        "projection": {"similarity": "cosine"},
        "architecture": "vision-head",
        "seed": None,
    }
    result = MatrixResult(
        [{"name": "g", "path": "g.e", "error": "g.e: truncated"}],
        [decoder],
        [PairResult("g", "d", "relative", True, error="g.e: truncated")],
        "classification",
        "accuracy",
        {"path": None, "hash": "e" * 64, "count": 4, "strategy": None, "seed": None},
        {"name": "t", "size": 1, "hash": "f" * 64},
    )
    report = build_report(result, config={"data": "t", "batch_size": 1})
    assert_valid(report)
    assert (
        report["main_score"]["value"] is None
        and report["aggregate"] == []
        and len(report["failed_pairs"]) == 1
    )
    assert "main score: none" in render(report, 80) and "✗1 g → d: g.e: truncated" in render(report, 80)
    assert "| g | ✗ |" in to_markdown(report) and "Aggregated" not in to_markdown(report)
    assert "g.e: truncated" in to_html(report) and to_csv(report).splitlines()[1].endswith(",g.e: truncated")

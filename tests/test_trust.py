"""The matrix can be trusted: no code from file names, no lost matrix, no score in the wrong cell,
an exit status scripts can rely on, and every OS error or bad option value as one line.

Each class is tested as a property over its whole class where that is cheap (every registered model
source kind as a file name, every rendered cell against its pair), plus the battery's own cases.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from cli_checks import one_line_error
from rich.console import Console

from relstitch.adapters import MODEL_SOURCES, load_encoder_ref
from relstitch.errors import UsageError
from relstitch.matrix import BrokenDecoder, distinct_names, eval_matrix, load_decoders
from relstitch.refs import expand_references, reference_files
from relstitch.reports import build_report, print_report
from relstitch.reports.common import fmt
from relstitch.reports.text import to_markdown

LIMIT = "60"


# ------------------------------------------------------------------ every rendered cell equals its pair
def _pair_text(report: dict, encoder: str, decoder: str, method: str, metric: str) -> str | None:
    """What a cell must show: the pair's score, ✗ for a failed pair, None where no pair ran."""
    found = [
        p for p in report["pairs"] if (p["encoder"], p["decoder"], p["method"]) == (encoder, decoder, method)
    ]
    assert len(found) <= 1, f"two pairs share the cell {encoder} → {decoder} ({method})"
    if not found:
        return None
    pair = found[0]
    return "✗" if pair["error"] else fmt(pair["scores"][metric])


def assert_cells_match_pairs(report: dict) -> int:
    """Every cell of every matrix (JSON values, Markdown, terminal) shows exactly its pair; returns the cells
    seen."""
    metric = report["main_metric"]
    for role in ("encoders", "decoders"):
        names = [item["name"] for item in report[role]]
        assert len(set(names)) == len(names), f"two {role} share a display name: {names}"
    markdown = to_markdown(report).splitlines()
    console = Console(file=io.StringIO(), width=400, color_system=None)
    print_report(console, report)
    terminal = console.file.getvalue().splitlines()
    seen = 0
    for method, matrix in report["matrices"].items():
        md_start = next(
            i
            for i, line in enumerate(markdown)
            if line.startswith("## ") and f" · {metric}" in line and line[3:].split(" ")[0] == method
        )
        md_rows = [line for line in markdown[md_start + 2 :] if line.startswith("|")][
            2 : 2 + len(matrix["rows"])
        ]
        t_start = next(i for i, line in enumerate(terminal) if line.startswith(f"{method} ·"))
        t_rows = [line for line in terminal[t_start:] if line.startswith("│")][: len(matrix["rows"])]
        for i, encoder in enumerate(matrix["rows"]):
            md_cells = [
                c.strip().replace("**", "").replace("\\*", "") for c in md_rows[i].strip("|").split("|")
            ]
            t_cells = [c.strip().rstrip("*") for c in t_rows[i].strip("│").split("│")]
            assert md_cells[0] == encoder.replace("|", "\\|") and t_cells[0] == encoder
            for j, decoder in enumerate(matrix["columns"]):
                expected = _pair_text(report, encoder, decoder, method, metric)
                value = matrix["values"][metric][i][j]
                assert (None if value is None else fmt(value)) == (
                    None if expected in (None, "✗") else expected
                ), (method, encoder, decoder, value, expected)
                assert md_cells[1 + j] == (expected or ""), (
                    method,
                    encoder,
                    decoder,
                    md_cells[1 + j],
                    expected,
                )
                shown = re.sub(r"✗\d+", "✗", t_cells[1 + j])
                assert shown == (expected or ""), (method, encoder, decoder, t_cells[1 + j], expected)
                seen += 1
    return seen


# ------------------------------------------------------------------------------- 1. no code from names
HOSTILE_NAMES = [
    "python:os:system(command='touch PWNED')#name=x",
    *(f"{kind}:PWNED#name=y" for kind in MODEL_SOURCES),
    "hf:.#trust_remote_code=1",
    "torchvision:resnet18#weights=PWNED",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_glob_match_is_a_file_never_a_reference(name, tiny_zoo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(tiny_zoo.encoder("cnn-rel-s0"), tmp_path / f"{name}.encoder.safetensors")
    matches = expand_references(["*.encoder.safetensors"], "encoder")
    assert matches == [Path(f"{name}.encoder.safetensors")] and isinstance(matches[0], Path)
    encoder = load_encoder_ref(matches[0])
    assert encoder.name == "cnn-rel-s0" and encoder.architecture["name"] == "cnn"  # the file's own record
    assert reference_files(*matches) == (f"{name}.encoder.safetensors",)  # an input: never an output
    assert not list(tmp_path.glob("PWNED*"))


def test_hostile_file_names_in_eval_matrix_run_no_code(cli, tiny_zoo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(HOSTILE_NAMES[:3]):
        shutil.copy(tiny_zoo.encoder(tiny_zoo.names[i % 2]), tmp_path / f"{name}.encoder.safetensors")
        shutil.copy(tiny_zoo.decoder(tiny_zoo.names[i % 2]), tmp_path / f"{name}.decoder.safetensors")
    result = cli(
        "eval-matrix",
        "-e",
        "*.encoder.safetensors",
        "-D",
        "*.decoder.safetensors",
        "-a",
        tiny_zoo.anchors_path,
        "--limit",
        LIMIT,
        "--json",
        "r.json",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(Path("r.json").read_text())
    assert not report["failed_pairs"] and len(report["pairs"]) == 9
    assert not list(tmp_path.glob("PWNED*")) and not list(tmp_path.rglob("PWNED"))
    assert assert_cells_match_pairs(report) == 9


def test_a_typed_reference_is_still_parsed():
    # the user typed it: its kind and options are read (here an unknown kind, refused in one line)
    with pytest.raises(Exception, match="unknown model source kind 'nosuch'"):
        load_encoder_ref("nosuch:thing")


# ----------------------------------------------------------- 2-4. broken decoders, name clashes, exit status
def _broken_decoders(folder: Path, good: Path) -> dict[str, Path]:
    """Decoders that cannot load, each a different way, named apart from the good ones."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    data = good.read_bytes()
    made = {"truncated": data[: len(data) // 2], "empty": b""}
    paths = {}
    for name, content in made.items():
        paths[name] = folder / f"{name}.decoder.safetensors"
        paths[name].write_bytes(content)
    with safe_open(str(good), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata())
    kindless = {k: v for k, v in meta.items() if k != "relstitch.kind"}
    save_file(tensors, str(folder / "kindless.decoder.safetensors"), metadata=kindless)
    paths["kindless"] = folder / "kindless.decoder.safetensors"
    projection = dict(meta, **{"relstitch.projection": json.dumps({"similarity": "nosuch"})})
    save_file(tensors, str(folder / "badprojection.decoder.safetensors"), metadata=projection)
    paths["badprojection"] = folder / "badprojection.decoder.safetensors"
    (folder / "folder.decoder.safetensors").mkdir()
    paths["folder"] = folder / "folder.decoder.safetensors"
    return paths


def test_a_decoder_that_cannot_load_is_a_failed_column_and_the_rest_is_scored(
    tiny_zoo, tmp_path, anchors, test_data
):
    broken = _broken_decoders(tmp_path, tiny_zoo.decoder("cnn-rel-s0"))
    good = [tiny_zoo.decoder(n) for n in tiny_zoo.names]
    encoders = [tiny_zoo.encoder(n) for n in tiny_zoo.names[:2]]
    data = test_data.subset(range(60))
    clean = eval_matrix(encoders, good, anchors, data)
    mixed = eval_matrix(encoders, [*broken.values(), *good], anchors, data)
    scored = {(p.encoder, p.decoder, p.method): p.scores for p in clean.pairs}
    for pair in mixed.pairs:
        if pair.decoder in broken:
            assert pair.error and pair.decoder in pair.error or str(broken[pair.decoder]) in pair.error
        else:
            assert pair.error is None and pair.scores == scored[(pair.encoder, pair.decoder, pair.method)]
    failed_columns = {p.decoder for p in mixed.pairs if p.error}
    assert failed_columns == set(broken)
    for info in mixed.decoders:
        assert ("error" in info) == (info["name"] in broken)
    # the header of the bad-projection file is readable: its column stays under its own method only
    assert {p.method for p in mixed.pairs if p.decoder == "badprojection"} == {"relative"}
    report = build_report(mixed, config={})
    assert assert_cells_match_pairs(report) > 0
    with pytest.raises(Exception, match="truncated|not a safetensors"):
        load_decoders([broken["truncated"]], fail_fast=True)
    assert isinstance(load_decoders([broken["empty"]])[0], BrokenDecoder)


def test_eval_matrix_cli_exit_status_policy(cli, tiny_zoo, tmp_path):
    broken = _broken_decoders(tmp_path, tiny_zoo.decoder("cnn-rel-s0"))
    args = [
        "-e",
        tiny_zoo.encoder("cnn-rel-s0"),
        "-e",
        tiny_zoo.encoder("cnn-abs-s0"),
        "-D",
        tiny_zoo.decoder("cnn-rel-s1"),
        "-D",
        broken["truncated"],
        "-D",
        broken["kindless"],
        "-a",
        tiny_zoo.anchors_path,
        "--limit",
        LIMIT,
    ]
    result = cli("eval-matrix", *args, "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
    line = one_line_error(result)
    assert line.startswith("error: 4 of 6 pairs failed"), line
    report = json.loads((tmp_path / "r.json").read_text())  # written before the exit status says so
    assert len(report["failed_pairs"]) == 4 and (tmp_path / "r.md").exists()
    assert assert_cells_match_pairs(report) == 6
    allowed = cli("eval-matrix", *args, "--allow-failures")
    assert allowed.exit_code == 0 and allowed.stderr.strip().splitlines()[-1].startswith(
        "4 of 6 pairs failed"
    )
    stopped = cli("eval-matrix", *args, "--fail-fast", "--json", tmp_path / "f.json")
    assert "truncated.decoder.safetensors" in one_line_error(stopped) and not (tmp_path / "f.json").exists()
    assert one_line_error(cli("eval-matrix", *args, "--fail-fast", "--allow-failures"), 2)
    clean = cli("eval-matrix", *args[:6], "-a", tiny_zoo.anchors_path, "--limit", LIMIT)
    assert clean.exit_code == 0 and "failed" not in clean.stderr


def test_every_decoder_broken_is_a_matrix_of_reasons(cli, tiny_zoo, tmp_path):
    broken = _broken_decoders(tmp_path, tiny_zoo.decoder("cnn-rel-s0"))
    result = cli(
        "eval-matrix",
        "-e",
        tiny_zoo.encoder("cnn-rel-s0"),
        "-D",
        broken["empty"],
        "-D",
        broken["truncated"],
        "-a",
        tiny_zoo.anchors_path,
        "--limit",
        LIMIT,
        "--json",
        tmp_path / "r.json",
    )
    assert "2 of 2 pairs failed" in one_line_error(result)
    assert json.loads((tmp_path / "r.json").read_text())["failed_pairs"]


def test_checkpoints_that_share_a_name_are_told_apart_and_every_cell_is_its_own(cli, tiny_zoo, tmp_path):
    # two zoos with the same file names: zooB's are other seeds' files (and one broken) under zooA's names
    for folder in ("zooA", "zooB"):
        (tmp_path / folder).mkdir()
    for name in ("cnn-rel-s0", "cnn-rel-s1"):
        shutil.copy(tiny_zoo.decoder(name), tmp_path / "zooA" / f"{name}.decoder.safetensors")
        shutil.copy(tiny_zoo.encoder(name), tmp_path / "zooA" / f"{name}.encoder.safetensors")
    shutil.copy(tiny_zoo.decoder("cnn-rel-s1"), tmp_path / "zooB" / "cnn-rel-s0.decoder.safetensors")
    (tmp_path / "zooB" / "cnn-rel-s1.decoder.safetensors").write_bytes(b"broken")
    result = cli(
        "eval-matrix",
        "-e",
        f"{tmp_path}/zooA/*.encoder.safetensors",
        "-D",
        f"{tmp_path}/zooA/*.decoder.safetensors",
        "-D",
        f"{tmp_path}/zooB/*.decoder.safetensors",
        "-a",
        tiny_zoo.anchors_path,
        "--limit",
        LIMIT,
        "--json",
        tmp_path / "r.json",
        "--allow-failures",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    names = [d["name"] for d in report["decoders"]]
    # zooB's copy of seed 1 keeps its recorded name (cnn-rel-s1): three decoders share it, two in zooB
    assert names == ["cnn-rel-s0", "zooA/cnn-rel-s1", "zooB/cnn-rel-s1 [1]", "zooB/cnn-rel-s1 [2]"], names
    assert assert_cells_match_pairs(report) == 8
    assert "told apart" in result.stdout and "zooB/cnn-rel-s1 [2] = " in result.stdout
    by_name = {d["name"]: d for d in report["decoders"]}
    assert [d.get("renamed_from") for d in by_name.values()] == [
        None,
        "cnn-rel-s1",
        "cnn-rel-s1",
        "cnn-rel-s1",
    ]
    # the diagonal is the decoder's own encoder, by hash: zooB's seed-1 copy is not stitched on encoder seed 1
    for pair in report["pairs"]:
        decoder = by_name[pair["decoder"]]
        if not pair["error"]:
            assert pair["stitched"] == (decoder["encoder_hash"] != pair["encoder_hash"])


def test_distinct_names_keeps_unique_names_and_tells_shared_ones_apart():
    assert distinct_names(["a", "b"], ["x/a", "y/b"]) == ["a", "b"]
    assert distinct_names(["a", "a"], ["x/a.st", "y/a.st"]) == ["x/a", "y/a"]
    assert distinct_names(["a", "a"], ["p/x/a.st", "q/x/a.st"]) == ["p/x/a", "q/x/a"]
    assert distinct_names(["a", "a", "b"], ["a.st", "a.st", "b.st"]) == ["a [1]", "a [2]", "b"]
    assert distinct_names(["a", "a", "a"], ["x/a", "y/a", "y/b"]) == ["x/a", "y/a [1]", "y/a [2]"]
    names = distinct_names(["x/a", "a", "a"], ["k/x/a", "x/a", "y/a"])  # a label equal to another's own name
    assert len(set(names)) == 3


def test_a_saved_report_whose_names_clash_is_refused(tmp_path):
    from relstitch.reports.document import load_report

    report = json.loads((Path(__file__).parent / "data" / "report_v1.json").read_text())
    report["decoders"].append(dict(report["decoders"][0]))
    (tmp_path / "r.json").write_text(json.dumps(report))
    with pytest.raises(Exception, match="cannot tell them apart"):
        load_report(tmp_path / "r.json")


# --------------------------------------------------------------------------- 5. OS errors are one line
LONG = "n" * 300


@pytest.mark.parametrize(
    "verb",
    [
        "anchors",
        "encode",
        "eval-json",
        "eval-input",
        "report",
        "inspect",
        "stitch-input",
        "compare-json",
        "fit-output",
        "train-output",
    ],
)
@pytest.mark.parametrize("trouble", ["long", "loop"])
def test_every_verb_maps_an_os_error_to_one_line(verb, trouble, cli, tiny_zoo, tmp_path):
    bad = tmp_path / (LONG if trouble == "long" else "loop.safetensors")
    if trouble == "loop":
        os.symlink(bad.name, bad)
        os.symlink(
            "t.encoder.safetensors", tmp_path / "t.encoder.safetensors"
        )  # train's output, for its prefix t
    enc, dec, a = tiny_zoo.encoder("cnn-rel-s0"), tiny_zoo.decoder("cnn-rel-s0"), tiny_zoo.anchors_path
    commands = {
        "anchors": ["anchors", bad, "-k", "5"],
        "encode": ["encode", enc, "-a", a, "--limit", "20", "-o", bad],
        "eval-json": ["eval-matrix", "-e", enc, "-D", dec, "-a", a, "--limit", "20", "--json", bad],
        "eval-input": ["eval-matrix", "-e", enc, "-D", bad, "-a", a, "--limit", "20"],
        "report": ["report", bad],
        "inspect": ["inspect", bad],
        "stitch-input": ["stitch", bad, dec, "-a", a, "--limit", "20"],
        "compare-json": [
            "compare",
            enc,
            tiny_zoo.encoder("cnn-rel-s1"),
            "-a",
            a,
            "--limit",
            "20",
            "--json",
            bad,
        ],
        "fit-output": ["fit", enc, "-o", bad],
        "train-output": [
            "train",
            str(bad) if trouble == "long" else str(tmp_path / "t"),
            "--epochs",
            "1",
            "--limit",
            "16",
        ],
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    line = one_line_error(cli(*commands[verb]))
    assert (
        "too long" in line
        or "symbolic links" in line
        or "not a regular file" in line
        or "no such file" in line
        or "1 of 1 pairs failed" in line
    ), line
    assert len(line) < 600
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written or left behind


# ------------------------------------------------------------------- 9. every bad option value exits 2
BAD_VALUES = [
    ("encode", "--dtype", "float8"),
    ("encode", "--device", "tpu"),
    ("encode", "--similarity", "bogus"),
    ("encode", "--centering", "bogus"),
    ("eval-matrix", "--method", "bogus"),
    ("stitch", "--method", "bogus"),
    ("anchors", "--strategy", "bogus"),
    ("train", "--arch", "bogus"),
    ("train", "--task", "bogus"),
    ("train", "--space", "bogus"),
    ("eval-matrix", "--dtype", "float8"),
    ("eval-matrix", "--metric", "bogus"),
    ("report", "--format", "bogus"),
]


@pytest.mark.parametrize(("verb", "option", "value"), BAD_VALUES)
def test_every_bad_option_value_exits_2(verb, option, value, cli, tiny_zoo, tmp_path):
    enc, dec, a = tiny_zoo.encoder("cnn-rel-s0"), tiny_zoo.decoder("cnn-rel-s0"), tiny_zoo.anchors_path
    base = {
        "encode": ["encode", enc, "-a", a, "--limit", "10", "-o", tmp_path / "e.safetensors"],
        "eval-matrix": ["eval-matrix", "-e", enc, "-D", dec, "-a", a, "--limit", "10"],
        "stitch": ["stitch", enc, dec, "-a", a, "--limit", "10"],
        "anchors": ["anchors", tmp_path / "a.safetensors", "-k", "5"],
        "train": ["train", str(tmp_path / "t"), "--epochs", "1", "--limit", "16"],
        "report": ["report", Path(__file__).parent / "data" / "report_v1.json"],
    }[verb]
    line = one_line_error(cli(*base, option, value), 2)
    assert value in line and "choose" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_unknown_choice_is_usage():
    from relstitch.encoding import resolve_device

    with pytest.raises(UsageError, match="did you mean 'float32'"):
        resolve_device("cpu", "float33")


def test_compare_refuses_k_not_below_the_sample_count(cli, tiny_zoo, tmp_path):
    enc0, enc1 = tiny_zoo.encoder("cnn-rel-s0"), tiny_zoo.encoder("cnn-rel-s1")
    line = one_line_error(
        cli("compare", enc0, enc1, "-a", tiny_zoo.anchors_path, "--limit", "40", "-k", "50"), 2
    )
    assert "-k 50" in line and "40" in line
    assert one_line_error(
        cli("compare", enc0, enc1, "-a", tiny_zoo.anchors_path, "--limit", "40", "-k", "40"), 2
    )
    assert cli("compare", enc0, enc1, "-a", tiny_zoo.anchors_path, "--limit", "40", "-k", "39").exit_code == 0


def test_no_name_found_on_disk_reaches_the_reference_parser(cli, tiny_zoo, tmp_path, monkeypatch):
    """Property: whatever the files are called, the parser only ever sees what was typed."""
    import relstitch.adapters.base as models
    import relstitch.refs as refs

    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(HOSTILE_NAMES):
        shutil.copy(tiny_zoo.encoder(tiny_zoo.names[i % 2]), tmp_path / f"{name}.encoder.safetensors")
    parsed: list[str] = []
    real = refs.split_fragment

    def spy(ref: str) -> tuple[str, str]:
        parsed.append(ref)
        return real(ref)

    monkeypatch.setattr(models, "split_fragment", spy)
    monkeypatch.setattr(refs, "split_fragment", spy)
    typed = ["*.encoder.safetensors"]
    result = cli(
        "eval-matrix",
        "-e",
        typed[0],
        "-D",
        tiny_zoo.decoder("cnn-rel-s0"),
        "-a",
        tiny_zoo.anchors_path,
        "--limit",
        "20",
        "--json",
        "r.json",
    )
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(Path("r.json").read_text())["encoders"]) == len(HOSTILE_NAMES)
    assert any(p.endswith(".decoder.safetensors") for p in parsed)  # the spy sees what was typed (-D)...
    assert not [p for p in parsed if p.endswith(".encoder.safetensors")], parsed  # ...and no glob match


def test_names_read_from_files_never_carry_control_characters(tiny_zoo, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from relstitch.checkpoints import default_name, load_decoder

    with safe_open(str(tiny_zoo.decoder("cnn-rel-s0")), "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    meta["relstitch.name"] = json.dumps("a\x1b[31mb\nc")
    save_file(tensors, str(tmp_path / "d.decoder.safetensors"), metadata=meta)
    name = load_decoder(tmp_path / "d.decoder.safetensors").name
    assert name == "a\\x1b[31mb\\nc" and name.isprintable()
    assert default_name("x\x07y.decoder.safetensors") == "x\\x07y"

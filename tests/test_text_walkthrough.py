"""The text walkthrough (docs/text-walkthrough.md): its shipped files, the script that makes them, and the
command-line sequence anchors → encode → fit → eval-matrix on two real tiny BERT encoders.

The sequence runs in-process through the ``cli`` fixture on ``checkpoints/text`` (the files a fresh clone
has); ``scripts/make_text_demo.py`` is checked to make exactly those data files and the same kind of
model folders (the rebuild, about 15 s, is marked slow).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "checkpoints" / "text"

_spec = importlib.util.spec_from_file_location("make_text_demo", REPO / "scripts" / "make_text_demo.py")
make_text_demo = importlib.util.module_from_spec(_spec)
sys.modules["make_text_demo"] = make_text_demo  # dataclasses look their module up by name
_spec.loader.exec_module(make_text_demo)

ENCODERS = [spec.name for spec in make_text_demo.ENCODERS]


def _leftovers(folder: Path) -> list[str]:
    """Temporary files or folders a write left behind (atomic writes start with a dot)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_shipped_files_are_small_and_complete() -> None:
    sizes = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert sizes < 3_000_000, f"checkpoints/text holds {sizes:,} bytes"
    for name in ENCODERS:
        names = {p.name for p in (SHIPPED / name).iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
        config = json.loads((SHIPPED / name / "config.json").read_text(encoding="utf-8"))
        assert config["hidden_size"] == make_text_demo.HIDDEN  # equal widths: absolute stitching is defined
    assert _leftovers(SHIPPED) == []


def test_script_makes_the_shipped_data_byte_for_byte() -> None:
    """The data is pure seeded Python: the script's output must be the shipped files, on any machine."""
    for split, size in (("train", make_text_demo.TRAIN_SIZE), ("test", make_text_demo.TEST_SIZE)):
        rows = make_text_demo.make_split(size, make_text_demo.DATA_SEED[split])
        assert make_text_demo.jsonl(rows) == (SHIPPED / f"{split}.jsonl").read_text(encoding="utf-8")
        counts = {label: sum(row["label"] == label for row in rows) for label in make_text_demo.CLASSES}
        assert set(counts.values()) == {size // len(make_text_demo.CLASSES)}  # balanced: majority = chance
    train = {row["text"] for row in make_text_demo.make_split(make_text_demo.TRAIN_SIZE, 0)}
    test = [row["text"] for row in make_text_demo.make_split(make_text_demo.TEST_SIZE, 1)]
    assert sum(text in train for text in test) < len(test) // 10  # the test split is mostly unseen


def test_no_single_word_gives_the_class_away() -> None:
    """The synthetic set is not keyword-separable: the best one-word rule is far from perfect."""
    rows = make_text_demo.make_split(make_text_demo.TRAIN_SIZE, 0)
    best = 0.0
    for word in {w for row in rows for w in row["text"].rstrip(".?").replace(",", "").split()}:
        having = [row["label"] for row in rows if word in row["text"].split()]
        if len(having) >= 20:
            best = max(best, max(having.count(c) for c in make_text_demo.CLASSES) / len(having))
    assert best < 0.95


def test_an_interrupted_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object) -> float:
        raise KeyboardInterrupt

    monkeypatch.setattr(make_text_demo, "train_encoder", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_text_demo.build(tmp_path / "text", log=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "text").mkdir()
    with pytest.raises(SystemExit, match="already exists"):
        make_text_demo.build(tmp_path / "text", log=False)


def _report(cli, folder: Path, text: Path) -> dict:
    """The walkthrough's commands, outputs in ``folder``, on the data and encoders in ``text``."""
    anchors = folder / "text-anchors.safetensors"
    train, test = f"jsonl:{text / 'train.jsonl'}", f"jsonl:{text / 'test.jsonl'}"
    steps = [["anchors", anchors, "--data", train, "--count", "100", "--seed", "0"]]
    for name in ENCODERS:
        embeddings = folder / f"{name}.embeddings.safetensors"
        source = [f"hf:{text / name}", "-O", "pooling=mean"]
        steps.append(["encode", *source, "-a", anchors, "--data", train, "-o", embeddings])
        for space in ("relative", "absolute"):
            decoder = folder / f"{name}-{space[:3]}.decoder.safetensors"
            steps.append(["fit", embeddings, "--space", space, "-o", decoder])
    encoders = [arg for name in ENCODERS for arg in ("-e", f"hf:{text / name}")]
    steps.append(
        ["eval-matrix", *encoders, "-O", "pooling=mean", "-D", str(folder / "*.decoder.safetensors")]
        + ["-a", anchors, "--data", test, "--json", folder / "report.json"]
    )
    for step in steps:
        result = cli(*step)
        assert result.exit_code == 0, (step[0], result.output, result.stderr)
    assert _leftovers(folder) == []  # nothing half-written
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))


def _check_matrix(report: dict) -> None:
    baselines = report["baselines"]
    assert baselines["classes"] == 5 and baselines["majority"] == pytest.approx(0.2)
    assert report["failed_pairs"] == []
    pairs = {(p["method"], p["stitched"]): [] for p in report["pairs"]}
    for pair in report["pairs"]:
        pairs[pair["method"], pair["stitched"]].append(pair["scores"]["accuracy"])
    assert {key: len(scores) for key, scores in pairs.items()} == {
        ("relative", False): 2,
        ("relative", True): 2,
        ("absolute", False): 2,
        ("absolute", True): 2,
    }
    own = pairs["relative", False] + pairs["absolute", False]
    assert min(own) > 0.6, own  # each head on its own encoder learned the topics
    # relative heads read the other encoder zero-shot, far above the majority class...
    assert min(pairs["relative", True]) > baselines["majority"] + 0.35, pairs
    assert min(pairs["relative", True]) > 0.85 * max(pairs["relative", False]), pairs
    # ... absolute ones do not: near chance
    stitched_absolute = pairs["absolute", True]
    assert sum(stitched_absolute) / 2 < baselines["chance"] + 0.12 and max(stitched_absolute) < 0.4, pairs


def test_the_walkthrough_stitches_relative_heads_and_not_absolute_ones(cli, tmp_path: Path) -> None:
    report = _report(cli, tmp_path, SHIPPED)
    _check_matrix(report)
    # the numbers docs/text-walkthrough.md shows (its console block checks the printed table to the digit;
    # here another CPU may move the last one)
    for method, shown in (
        ("relative", [[0.760, 0.730], [0.745, 0.765]]),
        ("absolute", [[0.760, 0.123], [0.262, 0.760]]),
    ):
        measured = report["matrices"][method]["values"]["accuracy"]
        assert measured == [pytest.approx(row, abs=0.01) for row in shown], method


@pytest.mark.slow  # trains both encoders (about 15 s), then the whole walkthrough on them
def test_script_rebuilds_working_encoders(cli, tmp_path: Path) -> None:
    text = tmp_path / "text"
    make_text_demo.build(text, log=False)
    assert _leftovers(tmp_path) == []
    for split in ("train", "test"):
        assert (text / f"{split}.jsonl").read_bytes() == (SHIPPED / f"{split}.jsonl").read_bytes()
    for name in ENCODERS:
        for file in ("tokenizer.json", "tokenizer_config.json"):
            assert (text / name / file).read_bytes() == (SHIPPED / name / file).read_bytes(), (name, file)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    _check_matrix(_report(cli, outputs, text))
    make_text_demo.build(text, force=True, log=False)  # --force replaces it whole
    assert sorted(p.name for p in text.iterdir()) == sorted(p.name for p in SHIPPED.iterdir())
    assert _leftovers(tmp_path) == []

"""Hostile readers: files that are not regular files, text without end or without line breaks, labels past
the classes.

A FIFO blocks ``open()`` until a writer comes and ``/dev/zero`` never ends, so every reader must refuse
anything but a regular file before opening it (:mod:`relstitch.io.userfiles`), in one line naming the path.
The CLI cases run in a subprocess with a timeout: a reader that still blocks fails the test instead of
hanging the suite. Text is read within named limits (patched small here rather than writing gigabytes).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from cli_checks import one_line_error
from safetensors.torch import save_file

from relstitch.adapters import load_encoder_ref
from relstitch.anchors import load_anchors, parse_ids
from relstitch.checkpoints import load_encoder
from relstitch.data import load_dataset
from relstitch.encoding import encode, save_embeddings
from relstitch.errors import RelstitchError
from relstitch.io import userfiles
from relstitch.io.artifacts import read_header
from relstitch.io.safe_load import load_weights
from relstitch.reports import load_report

ZOO = (
    Path(__file__).resolve().parent.parent / "checkpoints"
)  # the shipped zoo: real checkpoints, nothing to train
ENCODER, DECODER, ANCHORS = (
    ZOO / "cnn-rel-s0.encoder.safetensors",
    ZOO / "cnn-rel-s0.decoder.safetensors",
    ZOO / "anchors.safetensors",
)
NOT_REGULAR = "not a regular file"
TIMEOUT = (
    20  # seconds: far above a refusal (about a second, mostly importing torch), far below "hangs forever"
)


# ------------------------------------------------------------------------------------------ helpers
def fifo(path: Path) -> Path:
    """A named pipe with no writer: ``open()`` on it blocks forever."""
    os.mkfifo(path)
    return path


def dev_zero(path: Path) -> Path:
    """A link to ``/dev/zero`` under a name a reader expects (``x.safetensors``): a file that never ends."""
    path.symlink_to("/dev/zero")
    return path


HOSTILE: dict[str, Callable[[Path], Path]] = {"fifo": fifo, "dev-zero": dev_zero}


def run_cli(*args: object, cwd: Path) -> SimpleNamespace:
    """``relstitch ARGS`` in a subprocess, killed after TIMEOUT seconds (a hang fails the test, not the
    suite)."""
    command = [sys.executable, "-m", "relstitch", *map(str, args)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"relstitch {' '.join(map(str, args))} still ran after {TIMEOUT} s: a reader blocked")
    return SimpleNamespace(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)


@contextmanager
def deadline(seconds: int = 10) -> Iterator[None]:
    """Fail an in-process call that blocks (an ``open()`` on a FIFO) instead of hanging the test run."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def tensors_file(path: Path, labels: torch.Tensor, classes: list[str] | None) -> Path:
    """A ``tensors:`` data file of 28x28 grey images (the zoo's input shape) with these labels and class
    names."""
    x = torch.randint(
        0, 256, (len(labels), 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    save_file(
        {"x": x, "y": labels}, str(path), metadata={"classes": json.dumps(classes)} if classes else None
    )
    return path


FASHION = [f"class {i}" for i in range(10)]
BAD_LABELS = torch.tensor(
    [0, 1, 2, 133, 4, 5, 6, 7, 8, 9, 120, 3]
)  # two labels past 10 classes, the first at index 3


# ------------------------------------------------------------------- every CLI reader, FIFO and /dev/zero
def _hf_folder(tmp: Path, make: Callable[[Path], Path]) -> tuple[list[object], Path]:
    folder = tmp / "model"
    folder.mkdir()
    data = tmp / "d.jsonl"
    data.write_text(
        "".join(json.dumps({"text": f"line {i}", "label": i % 2}) + "\n" for i in range(8)), encoding="utf-8"
    )
    return [
        "encode",
        f"hf:{folder}",
        "-a",
        ANCHORS,
        "-d",
        f"jsonl:{data}",
        "-o",
        tmp / "e.safetensors",
    ], make(folder / "config.json")


def _image_folder(tmp: Path, make: Callable[[Path], Path]) -> tuple[list[object], Path]:
    (tmp / "images" / "cat").mkdir(parents=True)
    return ["anchors", tmp / "a.safetensors", "-k", 1, "-d", f"imagefolder:{tmp / 'images'}"], make(
        tmp / "images" / "cat" / "1.png"
    )


def _idx_folder(tmp: Path, make: Callable[[Path], Path]) -> tuple[list[object], Path]:
    (tmp / "digits").mkdir()
    return ["anchors", tmp / "a.safetensors", "-k", 1, "-d", f"idx:{tmp / 'digits'}:train"], make(
        tmp / "digits" / "train-images-idx3-ubyte"
    )


def _data(kind: str, name: str) -> Callable[[Path, Callable[[Path], Path]], tuple[list[object], Path]]:
    def case(tmp: Path, make: Callable[[Path], Path]) -> tuple[list[object], Path]:
        path = make(tmp / name)
        return ["anchors", tmp / "a.safetensors", "-k", 1, "-d", f"{kind}:{path}"], path

    return case


def _file(
    build: Callable[[Path, Path], list[object]], name: str
) -> Callable[[Path, Callable[[Path], Path]], tuple[list[object], Path]]:
    def case(tmp: Path, make: Callable[[Path], Path]) -> tuple[list[object], Path]:
        path = make(tmp / name)
        return build(tmp, path), path

    return case


READERS: dict[str, Callable[[Path, Callable[[Path], Path]], tuple[list[object], Path]]] = {
    "inspect": _file(lambda t, p: ["inspect", p], "x.safetensors"),
    "inspect --json": _file(lambda t, p: ["inspect", "--json", p], "report.json"),
    "stitch: decoder": _file(
        lambda t, p: ["stitch", ENCODER, p, "-a", ANCHORS, "--limit", 20], "d.decoder.safetensors"
    ),
    "stitch: encoder": _file(
        lambda t, p: ["stitch", p, DECODER, "-a", ANCHORS, "--limit", 20], "e.encoder.safetensors"
    ),
    "stitch: anchors": _file(
        lambda t, p: ["stitch", ENCODER, DECODER, "-a", p, "--limit", 20], "a.safetensors"
    ),
    "encode: anchors": _file(
        lambda t, p: ["encode", ENCODER, "-a", p, "-o", t / "e.safetensors"], "a.safetensors"
    ),
    "fit: embeddings": _file(lambda t, p: ["fit", p, "-o", t / "d.safetensors"], "e.safetensors"),
    "report": _file(lambda t, p: ["report", p], "report.json"),
    "anchors --ids": _file(
        lambda t, p: ["anchors", t / "a.safetensors", "--strategy", "ids", "--ids", p], "ids.txt"
    ),
    "torchvision weights=": _file(
        lambda t, p: [
            "encode",
            f"torchvision:resnet18#weights={p}",
            "-a",
            ANCHORS,
            "--limit",
            4,
            "-o",
            t / "e.safetensors",
        ],
        "w.safetensors",
    ),
    "python weights= (.pt)": _file(
        lambda t, p: [
            "encode",
            "python:torch.nn:Flatten#weights=" + str(p),
            "-a",
            ANCHORS,
            "--limit",
            4,
            "-o",
            t / "e.safetensors",
        ],
        "w.pt",
    ),
    "data jsonl:": _data("jsonl", "d.jsonl"),
    "data csv:": _data("csv", "d.csv"),
    "data tensors:": _data("tensors", "d.safetensors"),
    "data imagefolder: (an image)": _image_folder,
    "data idx: (an IDX file)": _idx_folder,
    "model hf: (its config.json)": _hf_folder,
}


@pytest.mark.slow  # CLI subprocesses
@pytest.mark.parametrize("hostile", sorted(HOSTILE))
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_refuses_what_is_not_a_regular_file_at_once(
    reader: str, hostile: str, tmp_path: Path
) -> None:
    """The property: whatever reads a user's file, a FIFO or an endless device there gives one line naming
    it, now."""
    args, path = READERS[reader](tmp_path, HOSTILE[hostile])
    line = one_line_error(run_cli(*args, cwd=tmp_path))
    assert str(path) in line and NOT_REGULAR in line, line
    assert ("FIFO" if hostile == "fifo" else "character device") in line, line


@pytest.mark.slow  # CLI subprocesses
@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_eval_matrix_refuses_a_hostile_decoder(hostile: str, tmp_path: Path) -> None:
    """A broken decoder may be a failed column (the run goes on), but the run fails and names the file and
    why."""
    path = HOSTILE[hostile](tmp_path / "d.decoder.safetensors")
    report = tmp_path / "r.json"
    result = run_cli(
        "eval-matrix",
        "-e",
        ENCODER,
        "-D",
        path,
        "-D",
        DECODER,
        "-a",
        ANCHORS,
        "--limit",
        20,
        "--json",
        report,
        cwd=tmp_path,
    )
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    said = result.stdout + result.stderr + (report.read_text(encoding="utf-8") if report.exists() else "")
    assert str(path) in said and NOT_REGULAR in said, said


@pytest.mark.slow  # CLI subprocesses
@pytest.mark.parametrize("data", ["jsonl:{fifo}", "csv:/dev/zero", "jsonl:/dev/zero", "tensors:{fifo}"])
def test_eval_matrix_refuses_hostile_data(data: str, tmp_path: Path) -> None:
    data = data.format(fifo=fifo(tmp_path / "pipe"))
    line = one_line_error(
        run_cli("eval-matrix", "-e", ENCODER, "-D", DECODER, "-a", ANCHORS, "-d", data, cwd=tmp_path)
    )
    assert data.partition(":")[2] in line and NOT_REGULAR in line, line


@pytest.mark.parametrize(
    "args",
    [
        ["report", "/dev/zero"],
        ["anchors", "a.safetensors", "-d", "csv:/dev/zero"],
        ["anchors", "a.safetensors", "-d", "jsonl:/dev/zero"],
        ["inspect", "/dev/zero"],
    ],
)
@pytest.mark.slow  # CLI subprocesses
def test_dev_zero_itself_is_refused_not_read(args: list[str], tmp_path: Path) -> None:
    line = one_line_error(run_cli(*args, cwd=tmp_path))
    assert "/dev/zero: is a character device, not a regular file" in line, line
    assert not (tmp_path / "a.safetensors").exists()


# ------------------------------------------------------------------------- the library, in process
LIBRARY_READERS: dict[str, Callable[[Path], object]] = {
    "read_header": read_header,
    "load_weights (.safetensors)": load_weights,
    "load_anchors": load_anchors,
    "load_report": load_report,
    "parse_ids": lambda p: parse_ids(str(p)),
    "jsonl": lambda p: load_dataset(f"jsonl:{p}"),
    "csv": lambda p: load_dataset(f"csv:{p}"),
    "tensors": lambda p: load_dataset(f"tensors:{p}"),
    "load_encoder_ref": lambda p: load_encoder_ref(str(p)),
    "open_regular": lambda p: userfiles.open_regular(p).close(),
    "check_regular": userfiles.check_regular,
    "read_text": lambda p: userfiles.read_text(p, limit=100, what="a test file"),
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
@pytest.mark.parametrize("reader", sorted(LIBRARY_READERS))
def test_library_readers_raise_one_relstitch_error_for_non_regular_files(
    reader: str, hostile: str, tmp_path: Path
) -> None:
    path = HOSTILE[hostile](tmp_path / "x.safetensors")
    started = time.monotonic()
    with deadline(), pytest.raises(RelstitchError, match=NOT_REGULAR) as caught:
        LIBRARY_READERS[reader](path)
    assert time.monotonic() - started < 5, "a refusal must not wait for anything"
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_socket_and_a_folder_are_named_for_what_they_are(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tmp_path / "s.sock"))
        with pytest.raises(RelstitchError, match="is a socket, not a regular file"):
            userfiles.open_regular(tmp_path / "s.sock")
    finally:
        server.close()
    with pytest.raises(RelstitchError, match="is a folder, not a regular file"):
        userfiles.read_text(tmp_path, limit=10, what="a test file")
    with pytest.raises(
        FileNotFoundError
    ):  # a missing file is the caller's to word ("no such report file", ...)
        userfiles.open_regular(tmp_path / "missing")


def test_hf_folder_with_a_fifo_beside_its_files_is_refused_before_transformers_opens_it(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    pipe = fifo(folder / "model.safetensors")
    with deadline(), pytest.raises(RelstitchError, match=f"{pipe}: is a FIFO"):
        load_encoder_ref(f"hf:{folder}")


# ------------------------------------------------------------------------------ byte-order marks
def test_csv_and_jsonl_with_a_utf8_bom_load(tmp_path: Path) -> None:
    rows = [("un chat", "cat"), ("a dog", "dog"), ("été", "cat")]
    csv_file = tmp_path / "bom.csv"
    csv_file.write_bytes(
        b"\xef\xbb\xbf" + b"text,label\r\n" + "".join(f"{t},{lab}\r\n" for t, lab in rows).encode()
    )
    jsonl_file = tmp_path / "bom.jsonl"
    jsonl_file.write_bytes(
        b"\xef\xbb\xbf"
        + "".join(
            json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n" for t, lab in rows
        ).encode()
    )
    for reference in (f"csv:{csv_file}", f"jsonl:{jsonl_file}"):
        data = load_dataset(reference)
        assert data.x.view() == [t for t, _ in rows]  # the BOM is gone, and CRLF line ends with it
        assert data.classes == ["cat", "dog"] and data.y.tolist() == [0, 1, 0]


def test_a_quoted_csv_field_may_span_lines(tmp_path: Path) -> None:
    path = tmp_path / "multi.csv"
    path.write_text('text,label\n"two\nlines",a\nplain,b\n', encoding="utf-8")
    assert load_dataset(f"csv:{path}").x.view() == ["two\nlines", "plain"]


# ------------------------------------------------------------------------------------------ limits
def test_a_line_past_the_limit_is_refused_with_the_limit_and_the_line(
    cli, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(userfiles, "MAX_LINE_BYTES", 64)
    path = tmp_path / "long.jsonl"
    path.write_text(
        json.dumps({"text": "short", "label": "a"})
        + "\n"
        + json.dumps({"text": "x" * 100, "label": "b"})
        + "\n",
        encoding="utf-8",
    )
    line = one_line_error(cli("anchors", tmp_path / "a.safetensors", "-k", 1, "-d", f"jsonl:{path}"))
    assert f"{path}: line 2 is longer than 64 bytes, the limit per line of text data" in line, line
    csv_file = tmp_path / "long.csv"
    csv_file.write_text("text,label\n" + "y" * 65 + ",a\n", encoding="utf-8")
    with pytest.raises(RelstitchError, match="line 2 is longer than 64 bytes"):
        load_dataset(f"csv:{csv_file}")
    exact = tmp_path / "exact.csv"  # 64 bytes and a CRLF: at the limit, not past it
    exact.write_text("text,label\r\n" + "z" * 62 + ",a\r\n", encoding="utf-8", newline="")
    assert load_dataset(f"csv:{exact}").x.view() == ["z" * 62]
    assert not (tmp_path / "a.safetensors").exists()


def test_files_past_their_size_limit_are_refused_unread(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(userfiles, "MAX_TEXT_BYTES", 200)
    big = tmp_path / "big.csv"
    big.write_text("text,label\n" + "".join(f"sentence {i},a\n" for i in range(30)), encoding="utf-8")
    line = one_line_error(cli("anchors", tmp_path / "a.safetensors", "-k", 1, "-d", f"csv:{big}"))
    assert f"{big}: larger than 200 bytes, the limit for text data" in line, line

    monkeypatch.setattr(userfiles, "MAX_IDS_BYTES", 1024)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(map(str, range(1000))), encoding="utf-8")
    line = one_line_error(cli("anchors", tmp_path / "a.safetensors", "--strategy", "ids", "--ids", ids))
    assert f"{ids}: larger than 1 KiB, the limit for an anchor ids file" in line, line

    monkeypatch.setattr(userfiles, "MAX_REPORT_BYTES", 4096)
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"schema": "relstitch-report", "padding": "p" * 5000}), encoding="utf-8")
    line = one_line_error(cli("report", report))
    assert f"{report}: larger than 4 KiB, the limit for a JSON report" in line, line
    assert not (tmp_path / "a.safetensors").exists()


def test_the_default_limits_are_generous_and_finite() -> None:
    assert userfiles.MAX_TEXT_BYTES == 1024**3 and userfiles.MAX_LINE_BYTES == 16 * 1024**2
    assert userfiles.MAX_REPORT_BYTES == 256 * 1024**2 and userfiles.MAX_IDS_BYTES == 64 * 1024**2
    assert (
        userfiles.size_text(userfiles.MAX_TEXT_BYTES) == "1 GiB"
        and userfiles.size_text(1000) == "1,000 bytes"
    )


def test_text_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n')
    with pytest.raises(RelstitchError, match=r"line 2 is not UTF-8 text \(invalid byte at column 14\)"):
        load_dataset(f"jsonl:{path}")


# ------------------------------------------------------------------------------- labels past the classes
@pytest.fixture()
def bad_labels(tmp_path: Path) -> Path:
    return tensors_file(tmp_path / "bad.safetensors", BAD_LABELS, FASHION)


def _label_error(line: str, path: Path) -> None:
    assert (
        f"2 label(s) of data tensors:{path} outside its 10 classes (first at index 3: label 133)" in line
    ), line


def test_anchors_refuse_labels_past_the_class_names(cli, bad_labels: Path, tmp_path: Path) -> None:
    _label_error(
        one_line_error(cli("anchors", tmp_path / "a.safetensors", "-k", 2, "-d", f"tensors:{bad_labels}")),
        bad_labels,
    )
    assert not (tmp_path / "a.safetensors").exists()


def test_encode_refuses_labels_past_the_class_names(cli, bad_labels: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.safetensors"
    _label_error(
        one_line_error(cli("encode", ENCODER, "-a", ANCHORS, "-d", f"tensors:{bad_labels}", "-o", out)),
        bad_labels,
    )
    assert not out.exists()


def test_fit_refuses_embeddings_whose_labels_pass_their_class_names(cli, tmp_path: Path) -> None:
    space = encode(load_encoder(ENCODER), load_anchors(ANCHORS), load_dataset("builtin:test", limit=40))
    space.labels = space.labels.clone()
    space.labels[5] = 133  # an embeddings file edited (or written) elsewhere
    embeddings = save_embeddings(space, tmp_path / "e.safetensors")
    out = tmp_path / "d.safetensors"
    line = one_line_error(cli("fit", embeddings, "-o", out, "--epochs", 1))
    assert (
        f"1 label(s) of embeddings {embeddings} outside its 10 classes (first at index 5: label 133)" in line
    ), line
    assert not out.exists()


def test_label_names_are_kept_and_data_without_names_is_numbered(tmp_path: Path) -> None:
    good = load_dataset(
        f"tensors:{tensors_file(tmp_path / 'good.safetensors', torch.arange(12) % 10, FASHION)}"
    )
    assert good.classes == FASHION
    unnamed = load_dataset(f"tensors:{tensors_file(tmp_path / 'unnamed.safetensors', BAD_LABELS, None)}")
    assert unnamed.classes == [
        str(i) for i in range(134)
    ]  # no names: the labels say how many classes there are
    with pytest.raises(
        RelstitchError, match="label 133"
    ):  # a subset or any Dataset made by hand is held to it too
        type(good)("by hand", good.x, BAD_LABELS, FASHION)

"""Data as people have it: ``tsv:``, ``delimiter=``/``encoding=`` on text files, ``parquet:``, ``hfds:``
(saved Hugging Face datasets), ``npy:``/``npz:``. Every artefact is real and built here, in tmp_path."""

from __future__ import annotations

import codecs
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from relstitch.data import FASHION_MNIST_CLASSES, load_dataset
from relstitch.data.sources import test_split_reference as split_of  # not collected as a test by its name
from relstitch.encoding import load_embeddings
from relstitch.errors import RelstitchError, UsageError

REPO = Path(__file__).resolve().parent.parent
ENCODER = REPO / "checkpoints" / "cnn-rel-s0.encoder.safetensors"
N = 40  # built-in test images used here: enough for every class, fast to write as PNG


# ------------------------------------------------------------------------------------------ helpers
def fails(call, error: type[RelstitchError], *words: str) -> str:
    """``call()`` raises ``error`` (exactly: a RelstitchError is not a UsageError) as one line with
    ``words``."""
    with pytest.raises(RelstitchError) as caught:
        call()
    message = str(caught.value)
    assert type(caught.value) is error, (type(caught.value), message)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


def cli_fails(result, code: int, *words: str) -> str:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def fifo(path: Path) -> Path:
    """A named pipe without a writer: a plain ``open()`` would block forever (the alarm turns that into a
    failure)."""
    os.mkfifo(path)
    return path


@pytest.fixture()
def no_hang():
    import signal

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError("a reader blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    """The first N built-in test images ``[N, 28, 28]`` uint8 and their labels."""
    data = load_dataset("builtin:test", limit=N)
    return data.x[:, 0].numpy().copy(), data.y.numpy().copy()


@pytest.fixture(scope="module")
def reference_hash(images, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The hash of these images and labels as a ``tensors:`` file holds them: every source must agree."""
    path = tmp_path_factory.mktemp("ref") / "x.safetensors"
    x, y = images
    save_file({"x": torch.from_numpy(x), "y": torch.from_numpy(y).long()}, str(path))
    return load_dataset(f"tensors:{path}").hash


# ------------------------------------------------------------------------------------ tsv, csv options
ROWS = [("le café", "boisson"), ("la forêt", "lieu"), ("naïve idée", "idée"), ("thé", "boisson")]


def test_tsv_with_a_bom_reads_as_its_csv_twin(tmp_path: Path) -> None:
    body = "text\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in ROWS)
    tsv = tmp_path / "d.tsv"
    tsv.write_bytes(codecs.BOM_UTF8 + body.encode("utf-8"))
    comma = tmp_path / "d.csv"
    comma.write_text(body.replace("\t", ","), encoding="utf-8")
    data = load_dataset(f"tsv:{tsv}")
    assert data.x.view() == [t for t, _ in ROWS] and data.classes == ["boisson", "idée", "lieu"]
    assert data.name == f"tsv:{tsv}"
    for ref in (
        f"csv:{tsv}#delimiter=tab",
        f"csv:{tsv}#delimiter=\\t",
        f"csv:{comma}",
        f"tsv:{comma}#delimiter=,",
    ):
        assert load_dataset(ref).hash == data.hash, ref  # content, not the path or the kind
    semi = tmp_path / "d.semi.csv"
    semi.write_text(body.replace("\t", ";"), encoding="utf-8")
    assert load_dataset(f"csv:{semi}#delimiter=semicolon").hash == data.hash
    assert load_dataset(f"csv:{semi}#delimiter=;").hash == data.hash


def test_a_header_glued_by_the_wrong_delimiter_names_the_fix(tmp_path: Path) -> None:
    tsv = tmp_path / "d.tsv"
    tsv.write_text("review\tlabel\ngood\tpos\n", encoding="utf-8")
    message = fails(lambda: load_dataset(f"csv:{tsv}#text=review"), RelstitchError, "no column(s) 'review'")
    assert f"holding tabs: read it as tsv:{tsv}" in message and "delimiter=tab" in message
    semi = tmp_path / "d.csv"
    semi.write_text("review;label\ngood;pos\n", encoding="utf-8")
    fails(lambda: load_dataset(f"csv:{semi}#text=review"), RelstitchError, f"csv:{semi}#delimiter=semicolon")
    comma = tmp_path / "c.csv"
    comma.write_text("review,label\ngood,pos\n", encoding="utf-8")
    fails(lambda: load_dataset(f"tsv:{comma}#text=review"), RelstitchError, f"read it as csv:{comma}")
    # a header that really lacks the column keeps the usual fix
    fails(lambda: load_dataset(f"csv:{comma}#text=body"), RelstitchError, "name the columns")


@pytest.mark.parametrize("bad", ["", "ab", "x", "7", '"', "tabs"])
def test_bad_delimiters_are_bad_usage(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,b\n", encoding="utf-8")
    fails(lambda: load_dataset(f"csv:{path}#delimiter={bad}"), UsageError, "bad delimiter", "delimiter=tab")


def test_encoding_latin1(tmp_path: Path) -> None:
    body = "text,label\n" + "".join(f"{t},{label}\n" for t, label in ROWS)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(body.encode("latin-1"))
    utf8 = tmp_path / "utf8.csv"
    utf8.write_text(body, encoding="utf-8")
    message = fails(lambda: load_dataset(f"csv:{latin}"), RelstitchError, "line 2 is not UTF-8 text")
    assert f"csv:{latin}#encoding=latin-1" in message  # the refusal names the way through
    data = load_dataset(f"csv:{latin}#encoding=latin-1")
    assert data.x.view()[0] == "le café" and data.hash == load_dataset(f"csv:{utf8}").hash
    assert load_dataset(f"csv:{utf8}#encoding=UTF-8").hash == data.hash
    lines = tmp_path / "latin.jsonl"
    lines.write_bytes(
        "".join(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n" for t, lab in ROWS).encode(
            "latin-1"
        )
    )
    fails(lambda: load_dataset(f"jsonl:{lines}"), RelstitchError, "not UTF-8", "#encoding=latin-1")
    assert load_dataset(f"jsonl:{lines}#encoding=latin-1").hash == data.hash
    tab = tmp_path / "latin.tsv"
    tab.write_bytes(body.replace(",", "\t").encode("cp1252"))
    assert load_dataset(f"tsv:{tab}#encoding=cp1252").hash == data.hash
    # a byte cp1252 leaves undefined: the message names the encoding that was asked for
    odd = tmp_path / "odd.csv"
    odd.write_bytes(b"text,label\nab\x81c,x\n")
    fails(
        lambda: load_dataset(f"csv:{odd}#encoding=cp1252"), RelstitchError, "is not cp1252 text", "check that"
    )


def test_encodings_that_cannot_be_read_line_by_line_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("text,label\ncafé,a\n".encode("utf-16"))
    fails(lambda: load_dataset(f"csv:{path}"), RelstitchError, "UTF-16 or UTF-32", "iconv")
    fails(lambda: load_dataset(f"csv:{path}#encoding=utf-16"), UsageError, "encoding=utf-16 is not read")
    fails(lambda: load_dataset(f"jsonl:{path}#encoding=klingon"), UsageError, "unknown encoding 'klingon'")
    fails(lambda: load_dataset(f"csv:{path}#encoding=base64"), UsageError, "is not read")
    marked = tmp_path / "bom.csv"
    marked.write_bytes(codecs.BOM_UTF8 + "text,label\ncafé,a\n".encode())
    fails(lambda: load_dataset(f"csv:{marked}#encoding=latin-1"), RelstitchError, "UTF-8 byte-order mark")
    fails(lambda: load_dataset(f"tsv:{tmp_path / 'nope.tsv'}"), RelstitchError, "no such file")


def test_text_sources_refuse_a_fifo_at_once(tmp_path: Path, no_hang) -> None:
    pipe = fifo(tmp_path / "d.tsv")
    for ref in (f"tsv:{pipe}", f"csv:{pipe}#encoding=latin-1", f"jsonl:{pipe}"):
        fails(lambda ref=ref: load_dataset(ref), RelstitchError, "FIFO")
    empty = tmp_path / "e.tsv"
    empty.write_bytes(b"")
    fails(lambda: load_dataset(f"tsv:{empty}"), RelstitchError, "is empty")


# -------------------------------------------------------------------------------------------- Parquet
def write_parquet(path: Path, columns: dict[str, list], metadata: dict | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(columns)
    if metadata is not None:
        table = table.replace_schema_metadata({"huggingface": json.dumps(metadata)})
    pq.write_table(table, path)
    return path


def test_parquet_images_as_bytes_or_paths_and_text_as_views(
    tmp_path: Path, images, reference_hash: str
) -> None:
    pytest.importorskip("pyarrow")
    x, y = images
    names = [FASHION_MNIST_CLASSES[i] for i in y]
    as_bytes = write_parquet(tmp_path / "b.parquet", {"img": [png(a) for a in x], "label": y.tolist()})
    assert load_dataset(f"parquet:{as_bytes}#image=img").hash == reference_hash
    # ClassLabel names from the metadata datasets writes; the one Image feature found by itself
    features = {"image": {"_type": "Image"}, "label": {"names": FASHION_MNIST_CLASSES, "_type": "ClassLabel"}}
    cells = [{"bytes": png(a), "path": None} for a in x]
    hf = write_parquet(
        tmp_path / "hf.parquet", {"image": cells, "label": y.tolist()}, {"info": {"features": features}}
    )
    data = load_dataset(f"parquet:{hf}")
    assert data.classes == FASHION_MNIST_CLASSES and data.hash == reference_hash and data.modality == "image"
    # paths relative to the file's folder, string labels named by their values (sorted)
    (tmp_path / "img").mkdir()
    for i, a in enumerate(x):
        (tmp_path / "img" / f"{i}.png").write_bytes(png(a))
    paths = write_parquet(
        tmp_path / "p.parquet",
        {"file": [f"img/{i}.png" for i in range(N)], "kind": names, "caption": [f"a {n}" for n in names]},
    )
    data = load_dataset(f"parquet:{paths}#image=file,label=kind,text=caption")
    assert data.classes == sorted(set(names)) and torch.equal(data.x, torch.from_numpy(x).unsqueeze(1))
    assert data.views is not None and data.views.view("caption")[0] == f"a {names[0]}"
    text = load_dataset(f"parquet:{paths}#text=caption,kind,label=kind")
    assert text.modality == "text" and text.x.names == ["caption", "kind"] and len(text) == N


def test_parquet_bad_input(tmp_path: Path, images, no_hang) -> None:
    pytest.importorskip("pyarrow")
    x, y = images
    good = write_parquet(tmp_path / "g.parquet", {"text": ["a", "b"], "label": [0, 1], "n": [1, 2]})
    fails(lambda: load_dataset(f"parquet:{tmp_path / 'missing.parquet'}"), RelstitchError, "no such file")
    fails(lambda: load_dataset(f"parquet:{good}#text=body"), RelstitchError, "no column(s) 'body'", "'text'")
    fails(lambda: load_dataset(f"parquet:{good}#text=n"), RelstitchError, "row 1: column 'n' is not text")
    fails(lambda: load_dataset(f"parquet:{good}#colour=red"), UsageError, "unknown option(s) colour")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet at all PAR1")
    fails(lambda: load_dataset(f"parquet:{garbage}"), RelstitchError, "not a Parquet file")
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    fails(lambda: load_dataset(f"parquet:{empty}"), RelstitchError, "not a Parquet file")
    fails(lambda: load_dataset(f"parquet:{fifo(tmp_path / 'p.parquet')}"), RelstitchError, "FIFO")
    fails(lambda: load_dataset(f"parquet:{tmp_path}"), RelstitchError, "folder")
    no_rows = write_parquet(tmp_path / "none.parquet", {"text": pa_strings([]), "label": pa_strings([])})
    fails(lambda: load_dataset(f"parquet:{no_rows}"), RelstitchError, "holds no rows")
    nulls = write_parquet(tmp_path / "nulls.parquet", {"text": ["a", None], "label": ["x", "y"]})
    fails(lambda: load_dataset(f"parquet:{nulls}"), RelstitchError, "row 2: column 'text' is missing")
    nested = write_parquet(tmp_path / "nested.parquet", {"text": ["a", "b"], "label": [[1], [2]]})
    fails(
        lambda: load_dataset(f"parquet:{nested}"), RelstitchError, "row 1: label [1] is not a number or text"
    )
    not_image = write_parquet(tmp_path / "ni.parquet", {"image": [b"not a png", b"x"], "label": [0, 1]})
    fails(lambda: load_dataset(f"parquet:{not_image}"), RelstitchError, "row 1: cannot read image")
    numbers = write_parquet(tmp_path / "nums.parquet", {"image": [1, 2], "label": [0, 1]})
    fails(lambda: load_dataset(f"parquet:{numbers}"), RelstitchError, "neither image bytes nor an image path")


def pa_strings(values: list):
    import pyarrow as pa

    return pa.array(values, type=pa.string())


def test_image_paths_in_a_table_never_lead_out_of_its_folder(tmp_path: Path, images) -> None:
    pytest.importorskip("pyarrow")
    x, _ = images
    outside = tmp_path / "outside.png"
    outside.write_bytes(png(x[0]))
    folder = tmp_path / "data"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "ok.png").write_bytes(png(x[1]))
    (folder / "img" / "link.png").symlink_to(outside)
    for bad in ("../outside.png", str(outside), "img/link.png", "img/../../outside.png"):
        table = write_parquet(folder / "t.parquet", {"image": ["img/ok.png", bad], "label": [0, 1]})
        fails(lambda table=table: load_dataset(f"parquet:{table}"), RelstitchError, "row 2", "leads outside")
    inside = write_parquet(
        folder / "t.parquet", {"image": ["img/ok.png", str(folder / "img" / "ok.png")], "label": [0, 1]}
    )
    assert len(load_dataset(f"parquet:{inside}")) == 2  # an absolute path under the folder is fine
    missing = write_parquet(folder / "t.parquet", {"image": ["img/gone.png"], "label": [0]})
    fails(lambda: load_dataset(f"parquet:{missing}"), RelstitchError, "cannot read image", "gone.png")
    fifo(folder / "img" / "pipe.png")
    piped = write_parquet(folder / "t.parquet", {"image": ["img/pipe.png"], "label": [0]})
    fails(lambda: load_dataset(f"parquet:{piped}"), RelstitchError, "FIFO")


# --------------------------------------------------------------------------- saved Hugging Face datasets
@pytest.fixture(scope="module")
def saved(images, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A saved Dataset (Image + ClassLabel + a caption) and a DatasetDict (train/test), as save_to_disk
    writes them."""
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    x, y = images
    root = tmp_path_factory.mktemp("hfds")
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=FASHION_MNIST_CLASSES),
            "caption": datasets.Value("string"),
        }
    )
    rows = {
        "image": [{"bytes": png(a), "path": None} for a in x],
        "label": y.tolist(),
        "caption": [f"a photo of a {FASHION_MNIST_CLASSES[i]}" for i in y],
    }
    dataset = datasets.Dataset.from_dict(rows, features=features)
    dataset.save_to_disk(str(root / "one"))
    splits = datasets.DatasetDict({"train": dataset.select(range(30)), "test": dataset.select(range(30, N))})
    splits.save_to_disk(str(root / "dict"))
    unlabelled = dataset.cast_column("label", datasets.Value("int64")).map(lambda r: {"label": -1})
    unlabelled.cast_column("label", features["label"]).save_to_disk(str(root / "unlabelled"))
    return {"one": root / "one", "dict": root / "dict", "unlabelled": root / "unlabelled"}


def test_hfds_reads_images_class_names_and_splits(saved: dict[str, Path], reference_hash: str) -> None:
    data = load_dataset(f"hfds:{saved['one']}")
    assert data.classes == FASHION_MNIST_CLASSES and data.hash == reference_hash and data.views is None
    captioned = load_dataset(f"hfds:{saved['one']}#image=image,text=caption")
    assert captioned.views is not None and captioned.views.view()[0].startswith("a photo of a ")
    text = load_dataset(f"hfds:{saved['one']}#text=caption")
    assert text.modality == "text" and text.classes == FASHION_MNIST_CLASSES
    train = load_dataset(f"hfds:{saved['dict']}:train")
    test = load_dataset(f"hfds:{saved['dict']}:test")
    assert (len(train), len(test)) == (30, N - 30) and train.name == f"hfds:{saved['dict']}:train"
    assert torch.equal(torch.cat([train.y, test.y]), data.y)


def test_hfds_test_split_reference(saved: dict[str, Path], tmp_path: Path) -> None:
    folder = saved["dict"]
    for ref in (f"hfds:{folder}", f"hfds:{folder}:train"):
        assert split_of(ref) == f"hfds:{folder}:test", ref
    assert split_of(f"hfds:{folder}:train#captions=a {{}}") == f"hfds:{folder}:test#captions=a {{}}"
    assert load_dataset(split_of(f"hfds:{folder}:train")).name == f"hfds:{folder}:test"  # it loads
    assert split_of(f"hfds:{folder}:test") is None  # a test split has none
    assert split_of(f"hfds:{saved['one']}") is None  # one dataset: no splits
    assert split_of(f"hfds:{tmp_path / 'missing'}") is None
    assert (
        split_of(f"parquet:{tmp_path / 'x.parquet'}") is None
        and split_of(f"npz:{tmp_path / 'x.npz'}") is None
    )


def test_hfds_bad_input(saved: dict[str, Path], tmp_path: Path, no_hang) -> None:
    fails(lambda: load_dataset(f"hfds:{saved['dict']}"), UsageError, "holds the splits train, test: name one")
    fails(
        lambda: load_dataset(f"hfds:{saved['dict']}:valid"), RelstitchError, "no split 'valid'", "train, test"
    )
    fails(lambda: load_dataset(f"hfds:{saved['one']}:train"), RelstitchError, "not a DatasetDict folder")
    fails(lambda: load_dataset(f"hfds:{tmp_path / 'gone'}"), RelstitchError, "no such dataset folder")
    fails(lambda: load_dataset(f"hfds:{tmp_path}"), RelstitchError, "not a saved dataset (no state.json)")
    fails(lambda: load_dataset(f"hfds:{saved['one']}#label=kind"), RelstitchError, "no column(s) 'kind'")
    fails(
        lambda: load_dataset(f"hfds:{saved['one']}#text=label"), RelstitchError, "column 'label' is not text"
    )
    fails(lambda: load_dataset(f"hfds:{saved['unlabelled']}"), RelstitchError, "label -1", "label=none")
    assert len(load_dataset(f"hfds:{saved['unlabelled']}#label=none")) == N  # anchors only
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "state.json").write_text("{not json", encoding="utf-8")
    fails(lambda: load_dataset(f"hfds:{broken}"), RelstitchError, "cannot read the saved dataset")
    bad_dict = tmp_path / "bad_dict"
    bad_dict.mkdir()
    (bad_dict / "dataset_dict.json").write_text('{"splits": ["../up"]}', encoding="utf-8")
    fails(lambda: load_dataset(f"hfds:{bad_dict}:x"), RelstitchError, "does not list the splits")
    piped = tmp_path / "piped"
    piped.mkdir()
    for name in ("state.json", "dataset_info.json"):
        (piped / name).write_bytes((saved["one"] / name).read_bytes())
    fifo(piped / "data-00000-of-00001.arrow")
    fails(lambda: load_dataset(f"hfds:{piped}"), RelstitchError, "FIFO")


@pytest.mark.parametrize(
    ("ref", "blocked", "package"),
    [
        ("parquet:{folder}/x.parquet", ("pyarrow", "pyarrow.parquet"), "pyarrow"),
        ("hfds:{folder}", ("datasets",), "datasets"),
    ],
)
def test_without_the_extra_one_line_names_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ref: str, blocked: tuple[str, ...], package: str
) -> None:
    for module in blocked:
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError: not installed
    (tmp_path / "x.parquet").write_bytes(b"")
    fails(
        lambda: load_dataset(ref.format(folder=tmp_path)),
        RelstitchError,
        f"optional {package} package",
        "pip install 'relstitch[datasets]'",
    )


# ----------------------------------------------------------------------------------------------- NumPy
def test_npz_and_npy_images_in_every_layout(tmp_path: Path, images, reference_hash: str) -> None:
    x, y = images
    np.savez(tmp_path / "plain.npz", x=x, y=y)
    assert load_dataset(f"npz:{tmp_path / 'plain.npz'}").hash == reference_hash  # keys x, y found by name
    np.savez_compressed(
        tmp_path / "named.npz", pics=x[..., None], lab=y, names=np.array(FASHION_MNIST_CLASSES)
    )
    data = load_dataset(f"npz:{tmp_path / 'named.npz'}#images=pics,labels=lab,classes=names")
    assert data.hash == reference_hash and data.classes == FASHION_MNIST_CLASSES
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y.astype(np.uint8))
    assert load_dataset(f"npy:{tmp_path / 'x.npy'}#labels={tmp_path / 'y.npy'}").hash == reference_hash
    # RGB, channels last (NumPy's convention) and channels first, give the same tensor
    rgb = np.stack([x, 255 - x, x // 2], axis=-1)
    np.savez(tmp_path / "last.npz", images=rgb, labels=y)
    np.savez(tmp_path / "first.npz", images=rgb.transpose(0, 3, 1, 2), labels=y)
    last, first = load_dataset(f"npz:{tmp_path / 'last.npz'}"), load_dataset(f"npz:{tmp_path / 'first.npz'}")
    assert tuple(last.x.shape) == (N, 3, 28, 28) and torch.equal(last.x[:, 1], torch.from_numpy(255 - x))
    assert last.hash == first.hash
    # float images in [0, 1] stay float; int64 images within 0-255 become uint8
    np.savez(tmp_path / "float.npz", images=x.astype(np.float64) / 255, labels=y)
    floats = load_dataset(f"npz:{tmp_path / 'float.npz'}")
    assert floats.x.dtype == torch.float32 and floats.modality == "image" and float(floats.x.max()) <= 1
    np.savez(tmp_path / "wide.npz", images=x.astype(np.int64), labels=y)
    assert load_dataset(f"npz:{tmp_path / 'wide.npz'}").hash == reference_hash
    # text labels name the classes; ids kept; labels=none reads unlabelled samples
    words = np.array([FASHION_MNIST_CLASSES[i] for i in y])
    np.savez(tmp_path / "words.npz", images=x, labels=words, ids=np.arange(100, 100 + N))
    named = load_dataset(f"npz:{tmp_path / 'words.npz'}")
    assert named.classes == sorted(set(words.tolist())) and named.ids.tolist() == list(range(100, 100 + N))
    assert load_dataset(f"npy:{tmp_path / 'x.npy'}#labels=none").classes == []


def test_npz_features_are_vectors_not_images(tmp_path: Path) -> None:
    vectors = np.random.default_rng(0).normal(size=(12, 5))
    np.savez(tmp_path / "f.npz", features=vectors, labels=np.arange(12) % 3)
    data = load_dataset(f"npz:{tmp_path / 'f.npz'}")
    assert data.modality == "tensor" and tuple(data.x.shape) == (12, 5) and data.classes == ["0", "1", "2"]
    assert torch.allclose(data.x, torch.from_numpy(vectors).float())


def test_numpy_bad_input(tmp_path: Path, images, no_hang) -> None:
    x, y = images

    def npz(name: str, **arrays) -> str:
        np.savez(tmp_path / name, **arrays)
        return f"npz:{tmp_path / name}"

    # pickled object arrays: refused without unpickling, in .npy and inside .npz
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "x.npy", x)
    fails(
        lambda: load_dataset(f"npy:{tmp_path / 'obj.npy'}#labels={tmp_path / 'y.npy'}"),
        RelstitchError,
        "pickled object array",
    )
    fails(
        lambda: load_dataset(f"npy:{tmp_path / 'y.npy'}#labels={tmp_path / 'obj.npy'}"),
        RelstitchError,
        "obj.npy",
        "pickled",
    )
    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as archive:
        for key, array in (("images", x), ("labels", np.array([object()] * N, dtype=object))):
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=True)
            archive.writestr(f"{key}.npy", buffer.getvalue())
    fails(lambda: load_dataset(f"npz:{tmp_path / 'obj.npz'}"), RelstitchError, "array 'labels'", "pickled")
    # dtypes and shapes
    fails(lambda: load_dataset(npz("b.npz", images=x > 9, labels=y)), RelstitchError, "dtype bool")
    fails(
        lambda: load_dataset(npz("s.npz", images=np.array(["a"] * N), labels=y)), RelstitchError, "dtype <U1"
    )
    fails(
        lambda: load_dataset(npz("i2.npz", images=x.reshape(N, -1), labels=y)),
        RelstitchError,
        "astype('float32')",
    )
    fails(
        lambda: load_dataset(npz("v.npz", images=x.astype(np.int32) * 2, labels=y)),
        RelstitchError,
        "outside 0-255",
    )
    fails(
        lambda: load_dataset(npz("f.npz", images=x.astype(np.float32), labels=y)),
        RelstitchError,
        "outside [0, 1]",
        "255",
    )
    rgba = np.zeros((N, 8, 8, 4), dtype=np.uint8)
    fails(
        lambda: load_dataset(npz("rgba.npz", images=rgba, labels=y)),
        RelstitchError,
        "1 or 3 channels",
        "alpha",
    )
    fails(
        lambda: load_dataset(npz("1d.npz", images=y.astype(np.uint8), labels=y)),
        RelstitchError,
        "has shape (40,)",
    )
    fails(
        lambda: load_dataset(npz("fl.npz", images=x, labels=y.astype(np.float32))),
        RelstitchError,
        "labels are integers or text",
    )
    fails(lambda: load_dataset(npz("short.npz", images=x, labels=y[:5])), RelstitchError, "need 40 labels")
    fails(lambda: load_dataset(npz("neg.npz", images=x, labels=y - 5)), RelstitchError, "0 or more")
    fails(
        lambda: load_dataset(npz("few.npz", images=x, labels=y, classes=np.array(["a"]))),
        RelstitchError,
        "outside its 1 classes",
    )
    fails(
        lambda: load_dataset(npz("ids.npz", images=x, labels=y, ids=np.arange(3))),
        RelstitchError,
        "ids array",
    )
    fails(
        lambda: load_dataset(npz("nokeys.npz", x_train=x, y_train=y)),
        RelstitchError,
        "no images array",
        "'x_train'",
    )
    assert len(load_dataset(f"npz:{tmp_path / 'nokeys.npz'}#images=x_train,labels=y_train")) == N
    fails(
        lambda: load_dataset(f"npz:{tmp_path / 'nokeys.npz'}#images=pics"), RelstitchError, "no array 'pics'"
    )
    fails(lambda: load_dataset(f"npz:{tmp_path / 'nokeys.npz'}#imgs=x"), UsageError, "unknown option(s) imgs")
    fails(lambda: load_dataset(f"npy:{tmp_path / 'y.npy'}"), UsageError, "labels=LABELS.npy")
    # files that are not what they claim
    for name, content, words in (
        ("empty.npy", b"", ("is empty",)),
        ("text.npy", b"hello, world\n", ("not a NumPy array file",)),
    ):
        (tmp_path / name).write_bytes(content)
        fails(lambda name=name: load_dataset(f"npy:{tmp_path / name}#labels=none"), RelstitchError, *words)
    whole = io.BytesIO()
    np.save(whole, x)
    (tmp_path / "cut.npy").write_bytes(whole.getvalue()[:-100])
    fails(lambda: load_dataset(f"npy:{tmp_path / 'cut.npy'}#labels=none"), RelstitchError, "truncated")
    (tmp_path / "empty.npz").write_bytes(b"")
    fails(lambda: load_dataset(f"npz:{tmp_path / 'empty.npz'}"), RelstitchError, "is empty")
    (tmp_path / "text.npz").write_bytes(b"not a zip")
    fails(lambda: load_dataset(f"npz:{tmp_path / 'text.npz'}"), RelstitchError, "not an .npz file")
    fails(lambda: load_dataset(f"npz:{tmp_path / 'gone.npz'}"), RelstitchError, "no such file")
    fails(
        lambda: load_dataset(f"npy:{tmp_path / 'x.npy'}#labels={tmp_path / 'gone.npy'}"),
        RelstitchError,
        "gone.npy",
        "no such file",
    )
    fails(lambda: load_dataset(f"npz:{fifo(tmp_path / 'p.npz')}"), RelstitchError, "FIFO")
    fails(lambda: load_dataset(f"npy:{fifo(tmp_path / 'p.npy')}#labels=none"), RelstitchError, "FIFO")
    fails(lambda: load_dataset(f"npy:{tmp_path}#labels=none"), RelstitchError, "folder")


def test_a_header_announcing_more_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    import numpy.lib.format as fmt

    path = tmp_path / "huge.npy"
    with path.open("wb") as handle:
        fmt.write_array_header_1_0(
            handle, {"descr": "|u1", "fortran_order": False, "shape": (10**7, 100, 100)}
        )
    fails(lambda: load_dataset(f"npy:{path}#labels=none"), RelstitchError, "more than relstitch reads")


def test_unreadable_files_are_one_line(tmp_path: Path, images) -> None:
    x, y = images
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "d.tsv").write_text("text\tlabel\na\tb\n", encoding="utf-8")
    refs = [f"npz:{tmp_path / 'd.npz'}", f"npy:{tmp_path / 'x.npy'}#labels=none", f"tsv:{tmp_path / 'd.tsv'}"]
    if _has("pyarrow"):
        write_parquet(tmp_path / "d.parquet", {"text": ["a"], "label": ["b"]})
        refs.append(f"parquet:{tmp_path / 'd.parquet'}")
    for ref in refs:  # a path through a file: the operating system's error, in one line
        kind, _, rest = ref.partition(":")
        path, _, options = rest.partition("#")
        through = f"{kind}:{path}/inner{Path(path).suffix}" + (f"#{options}" if options else "")
        fails(lambda through=through: load_dataset(through), RelstitchError, "a part of the path is a file")
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    for path in tmp_path.iterdir():
        path.chmod(0)
    for ref in refs:
        fails(lambda ref=ref: load_dataset(ref), RelstitchError, "ermission")


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------ the verbs, end to end
def test_anchors_and_encode_read_every_new_kind(cli, tmp_path: Path, images, saved: dict[str, Path]) -> None:
    """The same images through each new kind: anchors picked from it, then encoded with a shipped encoder,
    give the same embeddings."""
    x, y = images
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    refs = [
        f"npz:{tmp_path / 'd.npz'}",
        f"npy:{tmp_path / 'x.npy'}#labels={tmp_path / 'y.npy'}",
        f"hfds:{saved['one']}",
    ]
    if _has("pyarrow"):
        write_parquet(tmp_path / "d.parquet", {"image": [png(a) for a in x], "label": y.tolist()})
        refs.append(f"parquet:{tmp_path / 'd.parquet'}")
    vectors = []
    for i, ref in enumerate(refs):
        anchors, out = tmp_path / f"a{i}.safetensors", tmp_path / f"e{i}.safetensors"
        result = cli("anchors", anchors, "--data", ref, "--count", 10, "--strategy", "stratified")
        assert result.exit_code == 0, (ref, result.stderr)
        result = cli("encode", ENCODER, "--anchors", anchors, "--data", ref, "-o", out)
        assert result.exit_code == 0, (ref, result.stderr)
        space = load_embeddings(out)
        assert torch.equal(space.labels, torch.from_numpy(y).long()), ref
        vectors.append(space.absolute)
    assert all(torch.equal(v, vectors[0]) for v in vectors[1:])
    cli_fails(cli("anchors", tmp_path / "z.safetensors", "--data", f"hfds:{saved['dict']}"), 2, "name one")
    cli_fails(
        cli("anchors", tmp_path / "z.safetensors", "--data", f"npz:{tmp_path / 'd.npz'}#labels=nope"),
        1,
        "no array 'nope'",
    )
    assert not (tmp_path / "z.safetensors").exists()


def test_encode_reads_tsv_and_latin1_text(cli, tmp_path: Path) -> None:
    """A text encoder on tab-separated and latin-1 data: the views arrive as their UTF-8 twins would."""
    pytest.importorskip("transformers")
    from test_sources import make_rows, save_tiny_bert

    rows = make_rows(30, seed=0)
    body = "en\tfr\ttopic\n" + "".join(f"{r['en']}\t{r['fr']}\t{r['topic']}\n" for r in rows)
    (tmp_path / "d.tsv").write_bytes(codecs.BOM_UTF8 + body.encode("utf-8"))
    (tmp_path / "d.csv").write_bytes(body.replace("\t", ",").encode("latin-1"))  # "gâteau" in latin-1
    bert = save_tiny_bert(tmp_path / "bert", seed=0, hidden=16)
    outputs = []
    for i, ref in enumerate(
        (
            f"tsv:{tmp_path / 'd.tsv'}#text=en,fr,label=topic",
            f"csv:{tmp_path / 'd.csv'}#text=en,fr,label=topic,encoding=latin-1",
        )
    ):
        anchors, out = tmp_path / f"a{i}.safetensors", tmp_path / f"e{i}.safetensors"
        assert cli("anchors", anchors, "--data", ref, "--count", 6).exit_code == 0
        result = cli("encode", f"hf:{bert}", "--view", "fr", "--anchors", anchors, "--data", ref, "-o", out)
        assert result.exit_code == 0, result.stderr
        outputs.append(load_embeddings(out))
    assert torch.equal(outputs[0].absolute, outputs[1].absolute)
    assert outputs[0].dataset["hash"] == outputs[1].dataset["hash"]
    cli_fails(
        cli("anchors", tmp_path / "z.safetensors", "--data", f"csv:{tmp_path / 'd.csv'}#text=en"),
        1,
        "encoding=latin-1",
    )

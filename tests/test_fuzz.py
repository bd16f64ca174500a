"""Fuzzing every reader: random and mutated bytes must end in a RelstitchError or a clean load, never
another exception (a traceback for the user) and never a crash.

The seeds are real files (anchors, encoder, decoder, embeddings, a torch checkpoint, IDX data) built
small in this module; mutations favour the header, where a flipped byte changes meaning rather than
a weight's value.
"""

from __future__ import annotations

import gzip
import itertools
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relstitch.anchors import load_anchors, parse_ids, save_anchors, select_anchors
from relstitch.architectures import create_decoder, create_encoder
from relstitch.checkpoints import load_decoder, load_encoder, save_decoder, save_encoder
from relstitch.components import Decoder, Encoder
from relstitch.data import default_image_spec, load_dataset
from relstitch.encoding import encode, load_embeddings, save_embeddings
from relstitch.errors import RelstitchError
from relstitch.io.artifacts import read_header, serialize
from relstitch.io.metadata_schema import check_metadata
from relstitch.io.safe_load import load_weights
from relstitch.projection import ProjectionConfig
from relstitch.reports import load_report

EXAMPLES = 100  # per reader and strategy: 12 readers x 2 + 2 → 2,600 cases in ~15 s on two cores
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_names = itertools.count()
OUTCOMES: Counter[str] = Counter()  # loaded / refused, over every file case of this module


@pytest.fixture(scope="module", autouse=True)
def report_outcomes():
    """Print the number of file cases run and how they ended (visible with ``pytest -s``)."""
    yield
    total = sum(OUTCOMES.values())
    sys.stdout.write(
        f"\nfuzz: {total} file cases: {OUTCOMES['refused']} refused with RelstitchError, "
        f"{OUTCOMES['loaded']} loaded, 0 other exceptions\n"
    )


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small, real, valid files of every kind the readers take."""
    folder = tmp_path_factory.mktemp("seeds")
    data = load_dataset("builtin:test", limit=12)
    anchors = select_anchors(data, 4, "uniform", seed=0)
    anchors_path = save_anchors(anchors, folder / "anchors.safetensors")
    torch.manual_seed(0)
    args = {"in_shape": [1, 28, 28], "hidden": 4, "latent_dim": 3}
    encoder = Encoder(
        create_encoder("mlp", **args).eval(),
        {"name": "mlp", "args": args},
        default_image_spec((1, 28, 28)),
        3,
        "fz",
    )
    head_args = {"in_dim": 4, "num_classes": 10, "hidden": 4}
    decoder = Decoder(
        create_decoder("vision-head", **head_args).eval(),
        {"name": "vision-head", "args": head_args},
        "relative",
        4,
        {"type": "classification", "classes": data.classes},
        "fz",
        ProjectionConfig(),
        anchors.hash,
        encoder.hash,
    )
    torch.save({"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2)}, folder / "weights.pt")
    images = bytes([0, 0, 8, 3]) + (3).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(3 * 28 * 28)
    return {
        "anchors": anchors_path,
        "encoder": save_encoder(encoder, folder / "e.encoder.safetensors"),
        "decoder": save_decoder(decoder, folder / "d.decoder.safetensors"),
        "embeddings": save_embeddings(encode(encoder, anchors, data), folder / "emb.safetensors"),
        "weights": folder / "weights.pt",
        "idx": _write(folder / "train-images-idx3-ubyte.gz", gzip.compress(images)),
        "tensors": _write(
            folder / "t.safetensors", serialize({"x": data.x[:4], "y": data.y[:4]}, {"classes": '["a", "b"]'})
        ),
        "jsonl": _write(
            folder / "t.jsonl", b'{"text": "a shirt", "label": "top"}\n{"text": "a boot", "label": 3}\n'
        ),
        "csv": _write(folder / "t.csv", b'text,label\n"a shirt, grey",top\na boot,3\n'),
        "report": Path(__file__).parent / "data" / "report_v1.json",
    }


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def mutations(size_hint: int = 512) -> st.SearchStrategy:
    """Edits to apply to a file: byte overwrites (mostly in the first ``size_hint`` bytes), a cut, an
    insertion."""
    position = st.one_of(st.integers(0, size_hint), st.integers(0, 1 << 20))
    return st.tuples(
        st.lists(st.tuples(position, st.integers(0, 255)), max_size=6),
        st.one_of(st.none(), st.integers(0, 1 << 20)),
        st.one_of(st.none(), st.tuples(position, st.binary(max_size=16))),
    )


def mutate(content: bytes, edits: tuple) -> bytes:
    writes, cut, insert = edits
    buffer = bytearray(content)
    for pos, value in writes:
        if buffer:
            buffer[pos % len(buffer)] = value
    if cut is not None and buffer:
        del buffer[cut % len(buffer) :]
    if insert is not None:
        pos, blob = insert
        at = pos % (len(buffer) + 1)
        buffer[at:at] = blob
    return bytes(buffer)


def only_relstitch_errors(read: Callable[[Path], object], folder: Path, content: bytes, suffix: str) -> None:
    """Run ``read`` on a fresh file holding ``content``: success or RelstitchError, nothing else."""
    path = (
        folder / f"case{next(_names)}{suffix}"
    )  # a new name each time: no reader sees a file change under it
    path.write_bytes(content)
    try:
        read(path)
        OUTCOMES["loaded"] += 1
    except RelstitchError as exc:
        OUTCOMES["refused"] += 1
        assert "\n" not in str(exc)
    finally:
        path.unlink()


def _idx(path: Path) -> object:
    folder = path.parent / f"idx{next(_names)}"
    folder.mkdir()
    path.rename(folder / "train-images-idx3-ubyte.gz")
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2]))
    )
    try:
        return load_dataset(f"idx:{folder}:train")
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
        path.touch()  # only_relstitch_errors removes it


READERS: dict[str, tuple[str, Callable[[Path], object], str]] = {
    "read_header": ("anchors", read_header, ".safetensors"),
    "load_anchors": ("anchors", load_anchors, ".safetensors"),
    "load_encoder": ("encoder", load_encoder, ".safetensors"),
    "load_decoder": ("decoder", load_decoder, ".safetensors"),
    "load_embeddings": ("embeddings", load_embeddings, ".safetensors"),
    "load_weights .pt": ("weights", load_weights, ".pt"),
    "load_weights .safetensors": ("encoder", load_weights, ".safetensors"),
    "IDX data": ("idx", _idx, ".gz"),
    "tensors data": ("tensors", lambda p: load_dataset(f"tensors:{p}"), ".safetensors"),
    "JSON-lines data": ("jsonl", lambda p: load_dataset(f"jsonl:{p}"), ".jsonl"),
    "CSV data": ("csv", lambda p: load_dataset(f"csv:{p}"), ".csv"),
    "report": ("report", load_report, ".json"),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_mutated_files_raise_only_relstitch_errors(reader, seeds, tmp_path_factory):
    seed, read, suffix = READERS[reader]
    original = seeds[seed].read_bytes()
    folder = tmp_path_factory.mktemp("mutated")

    @FUZZ
    @given(edits=mutations(min(len(original), 2048)))
    def run(edits):
        only_relstitch_errors(read, folder, mutate(original, edits), suffix)

    run()


@pytest.mark.parametrize("reader", sorted(READERS))
def test_random_bytes_raise_only_relstitch_errors(reader, tmp_path_factory):
    _, read, suffix = READERS[reader]
    folder = tmp_path_factory.mktemp("random")

    @FUZZ
    @given(
        content=st.one_of(
            st.binary(max_size=256),
            # a plausible length prefix followed by JSON-ish bytes: gets past the first check more often
            st.builds(lambda body: len(body).to_bytes(8, "little") + body, st.binary(max_size=200)),
            st.builds(
                lambda obj: (lambda b: len(b).to_bytes(8, "little") + b)(json.dumps(obj).encode()),
                _json_headers(),
            ),
        )
    )
    def run(content):
        only_relstitch_errors(read, folder, content, suffix)

    run()


def _json_headers() -> st.SearchStrategy:
    """Safetensors-like headers with random entries and random relstitch metadata."""
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=8))
    entry = st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(["F32", "U8", "I64", "BOOL", "F128", ""]),
            "shape": st.lists(st.integers(-2, 2**40), max_size=4),
            "data_offsets": st.lists(st.integers(-2, 2**40), min_size=0, max_size=3),
        }
    )
    meta = st.dictionaries(
        st.sampled_from(
            [
                "relstitch.kind",
                "relstitch.version",
                "relstitch.hash",
                "relstitch.latent_dim",
                "relstitch.architecture",
                "other",
            ]
        ),
        st.one_of(st.sampled_from(['"anchors"', '"encoder"', "1", "{}", "[", '"x"']), st.text(max_size=6)),
    )
    return st.builds(
        lambda tensors, m: {**tensors, "__metadata__": m},
        st.dictionaries(st.text(max_size=5), st.one_of(entry, scalar), max_size=3),
        meta,
    )


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@FUZZ
@given(
    metadata=st.dictionaries(
        st.sampled_from(
            [
                "kind",
                "version",
                "hash",
                "architecture",
                "input",
                "latent_dim",
                "space",
                "input_dim",
                "task",
                "projection",
                "anchor_hash",
                "encoder",
                "dataset",
                "classes",
                "name",
            ]
        ),
        st.one_of(json_values, st.sampled_from(["anchors", "encoder", "decoder", "embeddings", 1, 2])),
    ),
    expected=st.sampled_from(["anchors", "encoder", "decoder", "embeddings"]),
)
def test_metadata_schema_raises_only_relstitch_errors(metadata, expected):
    try:
        assert check_metadata(metadata, expected, "f.safetensors") == expected
    except RelstitchError as exc:
        assert str(exc).startswith("f.safetensors: ") and "\n" not in str(exc)


@FUZZ
@given(spec=st.text(max_size=40))
def test_anchor_id_lists_raise_only_relstitch_errors(spec):
    try:
        ids = parse_ids(spec)
    except RelstitchError:
        return
    assert ids and all(isinstance(i, int) for i in ids)

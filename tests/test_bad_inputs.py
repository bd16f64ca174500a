"""A corpus of bad files and bad arguments run through every verb.

Each case asserts what a user must see: one ``error:`` line on stderr, the right exit code, no
traceback, and no file left behind (the case's folder holds exactly what it held before). The files
are real: a small zoo's checkpoints, cut, patched and re-packed byte by byte.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from cli_checks import one_line_error
from safetensors.torch import load_file

from relstitch.anchors import Anchors, save_anchors, select_anchors
from relstitch.architectures import create_decoder, create_encoder
from relstitch.checkpoints import (
    DECODER_SUFFIX,
    ENCODER_SUFFIX,
    load_decoder,
    load_encoder,
    save_decoder,
    save_encoder,
)
from relstitch.components import Decoder, Encoder
from relstitch.data import default_image_spec, load_dataset
from relstitch.encoding import encode, load_embeddings, save_embeddings
from relstitch.errors import RelstitchError
from relstitch.io.artifacts import read_header, serialize
from relstitch.io.safe_load import load_weights
from relstitch.projection import ProjectionConfig


# ----------------------------------------------------------------------------------- the zoo
@dataclass
class Zoo:
    """Untrained (bad inputs need no accuracy) but real CNN checkpoints: built in a second, not trained."""

    folder: Path
    anchors_path: Path

    def encoder(self, name: str) -> Path:
        return self.folder / f"{name}{ENCODER_SUFFIX}"

    def decoder(self, name: str) -> Path:
        return self.folder / f"{name}{DECODER_SUFFIX}"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    folder = tmp_path_factory.mktemp("zoo")
    data = load_dataset("builtin:train", limit=2000)
    anchors = select_anchors(data, 64, "uniform", seed=0)
    built = Zoo(folder, save_anchors(anchors, folder / "anchors.safetensors"))
    torch.manual_seed(0)
    classification = {"type": "classification", "classes": data.classes}
    for name, space in (("cnn-rel-s0", "relative"), ("cnn-rel-s1", "relative"), ("cnn-abs-s0", "absolute")):
        args = {"in_channels": 1, "latent_dim": 32}
        encoder = Encoder(
            create_encoder("cnn", **args).eval(),
            {"name": "cnn", "args": args},
            default_image_spec((1, 28, 28)),
            32,
            name,
            meta={"training": {"space": space, "seed": 0}},
        )
        head = {"in_dim": 64 if space == "relative" else 32, "num_classes": 10, "hidden": 16}
        decoder = Decoder(
            create_decoder("vision-head", **head).eval(),
            {"name": "vision-head", "args": head},
            space,
            head["in_dim"],
            classification,
            name,
            ProjectionConfig() if space == "relative" else None,
            anchors.hash if space == "relative" else None,
            encoder.hash,
        )
        save_encoder(encoder, built.encoder(name))
        save_decoder(decoder, built.decoder(name))
    return built


# ------------------------------------------------------------------------------- file surgery
def split(path: Path) -> tuple[dict, bytes]:
    """(header JSON, data bytes) of a safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def pack(header: dict | bytes, data: bytes, n: int | None = None) -> bytes:
    """A safetensors file from a header (dict or raw bytes) and data; ``n`` overrides the length prefix."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(body) if n is None else n) + body + data


def with_metadata(path: Path, change: Callable[[dict[str, str]], None]) -> bytes:
    """The file re-serialised with its raw ``__metadata__`` changed in place by ``change``."""
    raw = dict(read_header(path).raw_metadata)
    change(raw)
    return serialize(load_file(str(path)), raw)


def idx_bytes(array: torch.Tensor) -> bytes:
    """An unsigned-byte IDX file holding ``array``."""
    dims = list(array.shape)
    return (
        bytes([0, 0, 8, len(dims)])
        + struct.pack(f">{len(dims)}I", *dims)
        + array.to(torch.uint8).numpy().tobytes()
    )


def idx_folder(folder: Path, images: torch.Tensor, labels: torch.Tensor, *, cut: int = 0) -> str:
    """A folder of gzipped IDX train files; ``cut`` drops that many bytes off the images file."""
    folder.mkdir()
    image_bytes = idx_bytes(images)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(image_bytes[: len(image_bytes) - cut]))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return f"idx:{folder}:train"


# ------------------------------------------------------------------------------------ context
@dataclass
class Ctx:
    """What a case builds its bad inputs from: a fresh folder and the module's zoo."""

    tmp: Path
    zoo: object

    @property
    def anchors(self) -> Path:
        return self.zoo.anchors_path

    def enc(self, name: str = "cnn-rel-s0") -> Path:
        return self.zoo.encoder(name)

    def dec(self, name: str = "cnn-rel-s0") -> Path:
        return self.zoo.decoder(name)

    def file(self, name: str, content: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content)
        return path

    def out(self, name: str = "out.safetensors") -> Path:
        return self.tmp / name


def _nan_encoder(c: Ctx) -> Path:
    encoder = load_encoder(c.enc())
    with torch.no_grad():
        next(iter(encoder.module.parameters())).fill_(float("nan"))
    encoder.__dict__.pop("hash", None)
    return save_encoder(encoder, c.tmp / "nan.encoder.safetensors")


def _embeddings(c: Ctx, edit: Callable[[object], None], name: str = "bad.safetensors") -> Path:
    from relstitch.anchors import load_anchors
    from relstitch.data import load_dataset

    space = encode(load_encoder(c.enc()), load_anchors(c.anchors), load_dataset("builtin:test", limit=60))
    edit(space)
    return save_embeddings(space, c.tmp / name)


def _nan_embeddings(space) -> None:
    space.absolute[7, 3] = float("nan")
    space._relative_cache.clear()


def _single_class(space) -> None:
    space.labels = torch.full_like(space.labels, 4)


def _float_anchors_with_nan(c: Ctx) -> Path:
    x = torch.rand(8, 1, 28, 28)
    x[2, 0, 5, 5] = float("inf")
    return save_anchors(
        Anchors(x, torch.arange(8), torch.zeros(8, dtype=torch.int64), {"seed": 0}), c.tmp / "a.safetensors"
    )


def _tampered_anchors(c: Ctx) -> Path:
    header, data = split(c.anchors)
    begin = header["inputs"]["data_offsets"][0]
    data = data[:begin] + bytes([data[begin] ^ 0xFF]) + data[begin + 1 :]
    return c.file("tampered.safetensors", pack(header, data))


def _text_anchors_without_views(c: Ctx) -> Path:
    """An anchor file that says modality text but holds neither text views nor an ``inputs`` tensor."""
    from relstitch.io.artifacts import content_hash, save_artifact

    ids = torch.arange(3)
    return save_artifact(
        c.tmp / "viewless.safetensors",
        "anchors",
        {"ids": ids, "labels": torch.zeros(3, dtype=torch.int64)},
        {"hash": content_hash({"ids": ids}), "modality": "text"},
    )


def _renamed_tensor(c: Ctx) -> Path:
    header, data = split(c.enc())
    name = next(k for k in header if k != "__metadata__")
    header["not." + name] = header.pop(name)
    return c.file("renamed.encoder.safetensors", pack(header, data))


def _few_classes_decoder(c: Ctx) -> Path:
    decoder = load_decoder(c.dec())
    decoder.task = {"type": "classification", "classes": ["a", "b", "c", "d", "e"]}
    return save_decoder(decoder, c.tmp / "five.decoder.safetensors")


def _other_anchors_decoder(c: Ctx) -> Path:
    decoder = load_decoder(c.dec())
    decoder.anchor_hash = "0" * 64
    return save_decoder(decoder, c.tmp / "other.decoder.safetensors")


def _patched_header(path: Path, edit: Callable[[dict], None]) -> bytes:
    header, data = split(path)
    edit(header)
    return pack(header, data)


def _first_tensor(header: dict) -> dict:
    return header[next(k for k in sorted(header) if k != "__metadata__")]


def _evil_pickle(c: Ctx) -> Path:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {c.tmp / 'PWNED'}",))

    path = c.tmp / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": Payload()}, path)
    return path


def _nan_features(c: Ctx) -> Path:
    x = torch.rand(6, 4)
    x[3, 1] = float("nan")
    return c.file("features.safetensors", serialize({"x": x, "y": torch.arange(6) % 2}, {}))


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


# Each case: name -> (build the arguments from a context, exit code, text the error line must contain).
Case = tuple[Callable[[Ctx], list[object]], int, str]
CASES: dict[str, Case] = {
    # ------------------------------------------------------------------ anchors
    "anchors: output exists": (
        lambda c: ["anchors", c.file("a.safetensors", b"x"), "--count", 5],
        1,
        "already exists",
    ),
    "anchors: output folder missing": (
        lambda c: ["anchors", c.tmp / "no" / "a.safetensors", "--count", 5],
        1,
        "output folder does not exist",
    ),
    "anchors: output is a folder": (lambda c: ["anchors", c.tmp, "--count", 5], 1, "is a folder"),
    "anchors: output folder unwritable": (
        lambda c: ["anchors", "/proc/a.safetensors", "--count", 5],
        1,
        "not writable",
    ),
    "anchors: unknown data reference": (
        lambda c: ["anchors", c.out(), "--data", "bogus:x"],
        1,
        "unknown dataset reference",
    ),
    "anchors: data folder missing": (
        lambda c: ["anchors", c.out(), "--data", f"idx:{c.tmp / 'none'}:train"],
        1,
        "no such data folder",
    ),
    "anchors: truncated IDX": (
        lambda c: [
            "anchors",
            c.out(),
            "--count",
            2,
            "--data",
            idx_folder(c.tmp / "d", torch.zeros(4, 28, 28), torch.arange(4), cut=100),
        ],
        1,
        "truncated",
    ),
    "anchors: IDX with a bad magic number": (
        lambda c: ["anchors", c.out(), "--data", _bad_magic(c)],
        1,
        "bad magic",
    ),
    "anchors: empty dataset": (
        lambda c: [
            "anchors",
            c.out(),
            "--data",
            idx_folder(c.tmp / "d", torch.zeros(0, 28, 28), torch.zeros(0)),
        ],
        1,
        "empty",
    ),
    "anchors: labels beyond the classes": (
        lambda c: [
            "anchors",
            c.out(),
            "--count",
            2,
            "--data",
            idx_folder(c.tmp / "d", torch.zeros(4, 28, 28), torch.tensor([0, 1, 2, 200])),
        ],
        1,
        "outside its 10 classes (first at index 3",
    ),
    "anchors: NaN in a tensors data file": (
        lambda c: ["anchors", c.out(), "--count", 2, "--data", f"tensors:{_nan_features(c)}"],
        1,
        "1 NaN and 0 infinite value(s), the first at index [3, 1]",
    ),
    "anchors: JSON lines nested too deep": (
        lambda c: ["anchors", c.out(), "--data", f"jsonl:{c.file('t.jsonl', _deep(10**5))}"],
        1,
        "line 1 is not usable JSON",
    ),
    "anchors: more anchors than samples": (
        lambda c: ["anchors", c.out(), "--count", 99999],
        1,
        "cannot pick",
    ),
    "anchors: unknown strategy": (
        lambda c: ["anchors", c.out(), "--strategy", "bogus"],
        2,
        "unknown anchor strategy",
    ),
    "anchors: duplicate ids": (lambda c: ["anchors", c.out(), "--ids", "3,3"], 1, "more than once"),
    "anchors: count 0": (lambda c: ["anchors", c.out(), "--count", 0], 2, "--count"),
    "anchors: unknown option": (lambda c: ["anchors", c.out(), "--bogus"], 2, "No such option"),
    # -------------------------------------------------------------------- train
    "train: absolute with anchors": (
        lambda c: [
            "train",
            c.tmp / "m",
            "--space",
            "absolute",
            "--anchors",
            c.anchors,
            "--epochs",
            1,
            "--limit",
            50,
        ],
        2,
        "uses no anchors",
    ),
    "train: a decoder as anchors": (
        lambda c: ["train", c.tmp / "m", "--anchors", c.dec()],
        1,
        "is a relstitch decoder file, expected an anchors file",
    ),
    "train: output folder missing": (
        lambda c: ["train", c.tmp / "no" / "m", "--anchors", c.anchors],
        1,
        "output folder does not exist",
    ),
    "train: unknown task": (
        lambda c: ["train", c.tmp / "m", "--anchors", c.anchors, "--task", "bogus"],
        2,
        "unknown task",
    ),
    "train: unknown similarity": (
        lambda c: ["train", c.tmp / "m", "--anchors", c.anchors, "--similarity", "bogus"],
        2,
        "similarity",
    ),
    # ------------------------------------------------------------------- encode
    "encode: missing encoder": (
        lambda c: ["encode", c.tmp / "nope.safetensors", "-a", c.anchors, "-o", c.out()],
        1,
        "no such file",
    ),
    "encode: truncated encoder": (
        lambda c: [
            "encode",
            c.file("t.safetensors", c.enc().read_bytes()[:-1000]),
            "-a",
            c.anchors,
            "-o",
            c.out(),
        ],
        1,
        "points outside the file",
    ),
    "encode: header length larger than the file": (
        lambda c: [
            "encode",
            c.file("h.safetensors", pack(*split(c.enc()), n=10**9)),
            "-a",
            c.anchors,
            "-o",
            c.out(),
        ],
        1,
        "does not fit a file",
    ),
    "encode: header not JSON": (
        lambda c: [
            "encode",
            c.file("j.safetensors", pack(b"{not json", b"")),
            "-a",
            c.anchors,
            "-o",
            c.out(),
        ],
        1,
        "header is not JSON",
    ),
    "encode: tampered anchors": (
        lambda c: ["encode", c.enc(), "-a", _tampered_anchors(c), "-o", c.out()],
        1,
        "does not match its recorded hash",
    ),
    "encode: text anchors without views": (
        lambda c: ["encode", c.enc(), "-a", _text_anchors_without_views(c), "-o", c.out()],
        1,
        "missing tensor(s) ['inputs']",
    ),
    "encode: anchors holding Inf": (
        lambda c: ["encode", c.enc(), "-a", _float_anchors_with_nan(c), "-o", c.out()],
        1,
        "0 NaN and 1 infinite value(s), the first at index [2, 0, 5, 5]",
    ),
    "encode: encoder giving NaN latents": (
        lambda c: ["encode", _nan_encoder(c), "-a", c.anchors, "-o", c.out(), "--limit", 50],
        1,
        "NaN",
    ),
    "encode: latent_dim of the wrong type": (
        lambda c: [
            "encode",
            c.file(
                "w.encoder.safetensors",
                with_metadata(c.enc(), lambda m: m.update({"relstitch.latent_dim": '"32"'})),
            ),
            "-a",
            c.anchors,
            "-o",
            c.out(),
        ],
        1,
        "relstitch.latent_dim (the latent size) is a string, expected a non-negative integer",
    ),
    "encode: newer format version": (
        lambda c: [
            "encode",
            c.file(
                "v.encoder.safetensors",
                with_metadata(c.enc(), lambda m: m.update({"relstitch.version": "99"})),
            ),
            "-a",
            c.anchors,
            "-o",
            c.out(),
        ],
        1,
        "newer relstitch",
    ),
    "encode: output exists": (
        lambda c: ["encode", c.enc(), "-a", c.anchors, "-o", c.file("e.safetensors", b"keep")],
        1,
        "already exists",
    ),
    "encode: top-k above the anchor count": (
        lambda c: ["encode", c.enc(), "-a", c.anchors, "-o", c.out(), "--top-k", 1000, "--limit", 50],
        1,
        "more than the 64 anchors",
    ),
    "encode: a pickle as encoder": (
        lambda c: ["encode", _evil_pickle(c), "-a", c.anchors, "-o", c.out()],
        1,
        "not a safetensors file",
    ),
    "encode: torchvision weights in a pickle with code": (
        lambda c: [
            "encode",
            f"torchvision:resnet18#weights={_evil_pickle(c)}",
            "-a",
            c.anchors,
            "-o",
            c.out(),
        ],
        1,
        "refused: the file imports code (posix.system)",
    ),
    "encode: a folder as encoder": (
        lambda c: ["encode", c.tmp, "-a", c.anchors, "-o", c.out()],
        1,
        "is a folder",
    ),
    "encode: weights that do not fit": (
        lambda c: ["encode", _renamed_tensor(c), "-a", c.anchors, "-o", c.out()],
        1,
        "do not fit",
    ),
    # ---------------------------------------------------------------------- fit
    "fit: NaN embeddings": (
        lambda c: ["fit", _embeddings(c, _nan_embeddings), "-o", c.out("h.safetensors")],
        1,
        "1 NaN and 0 infinite value(s), the first at index [7, 3]",
    ),
    "fit: single-class embeddings": (
        lambda c: ["fit", _embeddings(c, _single_class), "-o", c.out("h.safetensors")],
        1,
        "single class",
    ),
    "fit: an encoder as embeddings": (
        lambda c: ["fit", c.enc(), "-o", c.out("h.safetensors")],
        1,
        "expected an embeddings file",
    ),
    "fit: embeddings without anchor_hash": (
        lambda c: [
            "fit",
            c.file(
                "m.safetensors",
                with_metadata(_embeddings(c, lambda s: None), lambda m: m.pop("relstitch.anchor_hash")),
            ),
            "-o",
            c.out("h.safetensors"),
        ],
        1,
        "relstitch.anchor_hash (the hash of its anchors ('' for absolute-only)) is missing",
    ),
    "fit: unknown space": (
        lambda c: ["fit", _embeddings(c, lambda s: None), "-o", c.out("h.safetensors"), "--space", "x"],
        2,
        "unknown space",
    ),
    # ------------------------------------------------------------------- stitch
    "stitch: decoder trained with other anchors": (
        lambda c: ["stitch", c.enc(), _other_anchors_decoder(c), "-a", c.anchors],
        1,
        "trained with anchors",
    ),
    "stitch: unknown file kind": (
        lambda c: [
            "stitch",
            c.enc(),
            c.file(
                "k.safetensors",
                with_metadata(c.dec(), lambda m: m.update({"relstitch.kind": '"transformer"'})),
            ),
            "-a",
            c.anchors,
        ],
        1,
        "unknown relstitch file kind 'transformer'",
    ),
    "stitch: plain safetensors": (
        lambda c: [
            "stitch",
            c.enc(),
            c.file("p.safetensors", serialize({"w": torch.zeros(3)}, {})),
            "-a",
            c.anchors,
        ],
        1,
        "not a relstitch file",
    ),
    "stitch: metadata not JSON": (
        lambda c: [
            "stitch",
            c.enc(),
            c.file("n.safetensors", with_metadata(c.dec(), lambda m: m.update({"relstitch.task": "{oops"}))),
            "-a",
            c.anchors,
        ],
        1,
        "relstitch.task is not JSON",
    ),
    "stitch: decoder without input_dim": (
        lambda c: [
            "stitch",
            c.enc(),
            c.file("i.safetensors", with_metadata(c.dec(), lambda m: m.pop("relstitch.input_dim"))),
            "-a",
            c.anchors,
        ],
        1,
        "relstitch.input_dim (its input size) is missing",
    ),
    "stitch: labels outside the decoder's classes": (
        lambda c: ["stitch", c.enc(), _few_classes_decoder(c), "-a", c.anchors, "--limit", 50],
        1,
        "outside its 5 classes",
    ),
    "stitch: architecture declaring a huge layer": (
        lambda c: [
            "stitch",
            c.enc(),
            c.file(
                "h.safetensors",
                with_metadata(
                    c.dec(),
                    lambda m: m.update(
                        {
                            "relstitch.architecture": json.dumps(
                                {
                                    "name": "vision-head",
                                    "args": {"in_dim": 64, "num_classes": 10, "hidden": 10**9},
                                }
                            )
                        }
                    ),
                ),
            ),
            "-a",
            c.anchors,
        ],
        1,
        "net.1.weight has shape [16, 64], architecture 'vision-head' needs [1000000000, 64]",
    ),
    "stitch: architecture arguments of the wrong type": (
        lambda c: [
            "stitch",
            c.enc(),
            c.file(
                "t.safetensors",
                with_metadata(
                    c.dec(),
                    lambda m: m.update(
                        {
                            "relstitch.architecture": json.dumps(
                                {
                                    "name": "vision-head",
                                    "args": {"in_dim": 64, "num_classes": 10, "hidden": "wide"},
                                }
                            )
                        }
                    ),
                ),
            ),
            "-a",
            c.anchors,
        ],
        1,
        "bad arguments for decoder architecture 'vision-head'",
    ),
    "stitch: offsets outside the file": (
        lambda c: [
            "stitch",
            c.enc(),
            c.file(
                "o.safetensors",
                _patched_header(c.dec(), lambda h: _first_tensor(h).update(data_offsets=[0, 10**12])),
            ),
            "-a",
            c.anchors,
        ],
        1,
        "points outside",
    ),
    "stitch: duplicate tensor names": (
        lambda c: [
            "stitch",
            c.enc(),
            c.file(
                "d.safetensors",
                pack(
                    b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
                    b"\0" * 4,
                ),
            ),
            "-a",
            c.anchors,
        ],
        1,
        "header is not JSON",
    ),
    # -------------------------------------------------------------- eval-matrix
    "eval-matrix: fail-fast on a broken encoder": (
        lambda c: [
            "eval-matrix",
            "-e",
            c.file("b.encoder.safetensors", b"\0" * 7),
            "-D",
            c.dec(),
            "-a",
            c.anchors,
            "--limit",
            50,
            "--fail-fast",
            "--json",
            c.out("r.json"),
        ],
        1,
        "shorter than 8 bytes",
    ),
    "eval-matrix: glob matching nothing": (
        lambda c: ["eval-matrix", "-e", str(c.tmp / "*.encoder.safetensors"), "-D", c.dec(), "-a", c.anchors],
        1,
        "no encoder matches",
    ),
    "eval-matrix: report exists": (
        lambda c: [
            "eval-matrix",
            "-e",
            c.enc(),
            "-D",
            c.dec(),
            "-a",
            c.anchors,
            "--json",
            c.file("r.json", b"{}"),
        ],
        1,
        "already exists",
    ),
    "eval-matrix: unknown metric": (
        lambda c: [
            "eval-matrix",
            "-e",
            c.enc(),
            "-D",
            c.dec(),
            "-a",
            c.anchors,
            "--limit",
            30,
            "--metric",
            "bogus",
        ],
        2,
        "unknown metric",
    ),
    "eval-matrix: a corrupt decoder": (
        lambda c: [
            "eval-matrix",
            "-e",
            c.enc(),
            "-D",
            c.file("c.decoder.safetensors", b"\xff" * 64),
            "-a",
            c.anchors,
        ],
        1,
        "does not fit a file",
    ),
    # ------------------------------------------------------------------- report
    "report: missing report": (lambda c: ["report", c.tmp / "none.json"], 1, "no such report file"),
    "report: not JSON": (lambda c: ["report", c.file("r.json", b"[1, 2")], 1, "not valid JSON"),
    "report: JSON without a schema version": (
        lambda c: ["report", c.file("r.json", b"[1, 2]")],
        1,
        "not a relstitch report",
    ),
    "report: newer schema": (
        lambda c: ["report", c.file("r.json", b'{"schema_version": 99}')],
        1,
        "newer than this relstitch",
    ),
    "report: nested too deep": (lambda c: ["report", c.file("r.json", _deep(10**5))], 1, "nesting too deep"),
    "report: a number too long": (
        lambda c: ["report", c.file("r.json", b'{"schema_version": ' + b"9" * 5000 + b"}")],
        1,
        "a number too long",
    ),
    "report: output exists": (
        lambda c: ["report", c.file("r.json", b"{}"), "-f", "json", "-o", c.file("o.json", b"keep")],
        1,
        "already exists",
    ),
    # ------------------------------------------------------------------ compare
    "compare: a single space": (lambda c: ["compare", _embeddings(c, lambda s: None)], 2, "at least two"),
    "compare: anchors as a space": (
        lambda c: ["compare", c.anchors, c.anchors],
        1,
        "is a relstitch anchors file",
    ),
    "compare: NaN embeddings": (
        lambda c: [
            "compare",
            _embeddings(c, lambda s: None),
            _embeddings(c, _nan_embeddings, "n.safetensors"),
        ],
        1,
        "1 NaN and 0 infinite",
    ),
    "compare: output exists": (
        lambda c: ["compare", c.enc(), c.enc(), "--json", c.file("o.json", b"keep")],
        1,
        "already exists",
    ),
    # ------------------------------------------------------------------ inspect
    "inspect: header length 0": (
        lambda c: ["inspect", c.file("z.safetensors", pack(b"", b"", n=0))],
        1,
        "header length 0",
    ),
    "inspect: header is a list": (
        lambda c: ["inspect", c.file("l.safetensors", pack(b"[1, 2]", b""))],
        1,
        "not a JSON object",
    ),
    "inspect: absurd shape": (
        lambda c: [
            "inspect",
            c.file(
                "s.safetensors",
                pack(
                    {"x": {"dtype": "F32", "shape": [2**40, 2**40, 2**40], "data_offsets": [0, 4]}}, b"\0" * 4
                ),
            ),
        ],
        1,
        "does not match its 4 bytes",
    ),
    "inspect: too many dimensions": (
        lambda c: [
            "inspect",
            c.file(
                "s.safetensors",
                pack({"x": {"dtype": "F32", "shape": [1] * 100, "data_offsets": [0, 4]}}, b"\0" * 4),
            ),
        ],
        1,
        "100 dimensions",
    ),
    "inspect: unknown dtype": (
        lambda c: [
            "inspect",
            c.file(
                "u.safetensors",
                pack({"x": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, b"\0" * 16),
            ),
        ],
        1,
        "unknown dtype 'F128'",
    ),
    "inspect: overlapping tensors": (
        lambda c: [
            "inspect",
            c.file(
                "o.safetensors",
                pack(
                    {
                        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                        "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
                    },
                    b"\0" * 8,
                ),
            ),
        ],
        1,
        "overlaps",
    ),
    "inspect: bytes after the last tensor": (
        lambda c: [
            "inspect",
            c.file(
                "p.safetensors",
                pack({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 12),
            ),
        ],
        1,
        "cover 4 of its 12 data bytes",
    ),
    "inspect: metadata not strings": (
        lambda c: ["inspect", c.file("m.safetensors", pack({"__metadata__": {"a": 1}}, b""))],
        1,
        "must map strings to strings",
    ),
    "inspect: deeply nested header": (
        lambda c: ["inspect", c.file("n.safetensors", pack(_deep(100_000), b""))],
        1,
        "header is not JSON",
    ),
    "inspect: boolean shape": (
        lambda c: [
            "inspect",
            c.file(
                "b.safetensors",
                pack({"x": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"\0" * 4),
            ),
        ],
        1,
        "invalid shape",
    ),
    "inspect: a folder": (lambda c: ["inspect", c.tmp], 1, "is a folder"),
    "inspect: random bytes": (
        lambda c: ["inspect", c.file("r.safetensors", bytes(range(256)) * 4)],
        1,
        "not a safetensors file",
    ),
}


def _bad_magic(c: Ctx) -> str:
    folder = c.tmp / "d"
    idx_folder(folder, torch.zeros(2, 28, 28), torch.arange(2))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x12\x34\x56\x78" + b"\0" * 100))
    return f"idx:{folder}:train"


def snapshot(folder: Path) -> dict[str, int]:
    """Every file (hidden ones included) under ``folder`` with its size."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_clean_line_and_leaves_nothing(case, cli, zoo, tmp_path, monkeypatch):
    build, code, expected = CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # a verb writing a default output would write it here, and be caught
    context = Ctx(work, zoo)
    args = build(context)
    before, zoo_before = snapshot(work), snapshot(zoo.folder)
    line = one_line_error(cli(*args), code)
    assert expected in line, line
    assert snapshot(work) == before, "a file was left behind (or an input was changed)"
    assert snapshot(zoo.folder) == zoo_before
    assert not (work / "PWNED").exists()


def test_the_corpus_is_large_and_covers_every_verb():
    verbs = {name.split(":")[0] for name in CASES}
    assert len(CASES) >= 30
    assert verbs >= {
        "anchors",
        "train",
        "encode",
        "fit",
        "stitch",
        "eval-matrix",
        "report",
        "compare",
        "inspect",
    }


# ------------------------------------------------------------------------ outputs checked first
@pytest.mark.parametrize(
    "verb", ["anchors", "train", "encode", "fit", "stitch", "eval-matrix", "report", "compare"]
)
def test_every_writing_verb_checks_its_output_before_reading_any_input(verb, cli, tmp_path):
    """With an existing output *and* a missing input, the complaint is the output: it was checked first."""
    missing = tmp_path / "missing.safetensors"
    taken = tmp_path / "taken"
    for name in ("taken", "taken.encoder.safetensors", "taken.decoder.safetensors", "taken.csv"):
        (tmp_path / name).write_bytes(b"keep me")
    args = {
        "anchors": ["anchors", taken, "--data", f"idx:{missing}:train"],
        "train": ["train", taken, "--anchors", missing, "--data", f"idx:{missing}:train"],
        "encode": ["encode", missing, "-a", missing, "-o", taken],
        "fit": ["fit", missing, "-o", taken],
        "stitch": ["stitch", missing, missing, "-a", missing, "--predictions", tmp_path / "taken.csv"],
        "eval-matrix": ["eval-matrix", "-e", missing, "-D", missing, "-a", missing, "--json", taken],
        "report": ["report", missing, "-f", "json", "-o", taken],
        "compare": ["compare", missing, missing, "--json", taken],
    }[verb]
    line = one_line_error(cli(*args), 1)
    assert "already exists" in line, line
    assert all(f.read_bytes() == b"keep me" for f in tmp_path.glob("taken*"))


@pytest.mark.parametrize(
    "verb", ["anchors", "train", "encode", "fit", "stitch", "eval-matrix", "report", "compare"]
)
def test_no_verb_writes_over_one_of_its_own_inputs_even_with_force(verb, cli, tmp_path):
    """Every input a reference names (a data file behind tensors:/csv:, a checkpoint, the default anchor file,
    a report) is refused as an output, --force or not, before any work; the input is left as it was."""
    zoo = Path(__file__).resolve().parent.parent / "checkpoints"
    for name in ("cnn-rel-s0.encoder.safetensors", "cnn-rel-s1.decoder.safetensors", "anchors.safetensors"):
        (tmp_path / name).write_bytes((zoo / name).read_bytes())
    enc, dec, anchors = (
        tmp_path / n
        for n in ("cnn-rel-s0.encoder.safetensors", "cnn-rel-s1.decoder.safetensors", "anchors.safetensors")
    )
    (tmp_path / "data.csv").write_text("text,label\nhello,a\nworld,b\n")
    (tmp_path / "report.json").write_text("{}")
    args, victim = {
        "anchors": (
            ["anchors", tmp_path / "data.csv", "-d", f"csv:{tmp_path / 'data.csv'}#text=text,label=label"],
            tmp_path / "data.csv",
        ),
        "train": (
            ["train", tmp_path / "cnn-rel-s0", "--anchors", tmp_path / "cnn-rel-s0.encoder.safetensors"],
            enc,
        ),
        "encode": (["encode", enc, "-o", enc], enc),
        "fit": (["fit", enc, "-o", enc], enc),
        "stitch": (
            [
                "stitch",
                enc,
                dec,
                "-a",
                anchors,
                "-d",
                f"csv:{tmp_path / 'data.csv'}#text=text,label=label",
                "--predictions",
                tmp_path / "data.csv",
            ],
            tmp_path / "data.csv",
        ),
        "eval-matrix": (["eval-matrix", "-e", enc, "-D", dec, "-a", anchors, "--json", dec], dec),
        "report": (
            ["report", tmp_path / "report.json", "-f", "json", "-o", tmp_path / "report.json"],
            tmp_path / "report.json",
        ),
        "compare": (["compare", enc, enc, "-a", anchors, "--json", anchors], anchors),
    }[verb]
    before = victim.read_bytes()
    line = one_line_error(cli(*args, "--force"), 1)
    assert "is both an input and an output" in line, line
    assert victim.read_bytes() == before


def test_an_output_beside_a_folders_inputs_may_be_replaced_but_not_the_inputs(cli, tmp_path):
    """A folder reference (idx:DIR, hf:DIR) protects the files its source reads, not an earlier run's output
    written into that folder: a rerun with --force replaces it. An imagefolder: root holds no input at all."""
    from safetensors.torch import save_file

    from relstitch.anchors import load_anchors
    from relstitch.refs import reference_files

    data = idx_folder(tmp_path / "d", torch.randint(0, 255, (12, 28, 28)), torch.arange(12) % 3)
    out = tmp_path / "d" / "anchors.safetensors"
    for _ in range(2):  # the second run finds its own earlier output in the data folder
        result = cli("anchors", out, "--data", data, "-k", "3", "--force")
        assert result.exit_code == 0, result.output
    assert len(load_anchors(out)) == 3
    images = tmp_path / "d" / "train-images-idx3-ubyte.gz"
    before = images.read_bytes()
    line = one_line_error(cli("anchors", images, "--data", data, "-k", "3", "--force"), 1)
    assert "is both an input and an output" in line and images.name in line
    assert images.read_bytes() == before
    # a model folder's own safetensors (no relstitch metadata) stays an input; an imagefolder root's files are
    # not read
    save_file({"w": torch.zeros(2)}, tmp_path / "d" / "model.safetensors")
    (tmp_path / "d" / "config.json").write_text('{"model_type": "bert"}')  # hf: reads its config: an input
    for name in ("r.csv", "r.md", "r.html"):  # report forms no folder source reads: earlier outputs
        (tmp_path / "d" / name).write_text("x")
    (tmp_path / "d" / "r.json").write_text('{"schema": "relstitch-report", "schema_version": 2}')
    listed = {Path(p).name for p in reference_files(f"hf:{tmp_path / 'd'}")}
    assert listed == {"model.safetensors", "config.json", images.name, "train-labels-idx1-ubyte.gz"}
    assert reference_files(f"imagefolder:{tmp_path / 'd'}#size=8") == ()


# ------------------------------------------------------------------------------- safe loading
def test_a_pickle_with_code_is_refused_naming_its_globals_and_never_run(tmp_path):
    path = _evil_pickle(Ctx(tmp_path, None))
    (tmp_path / "evil.bin").write_bytes(path.read_bytes())
    for target in (path, tmp_path / "evil.bin"):
        with pytest.raises(
            RelstitchError, match=r"refused: the file imports code \((posix|nt)\.system\)"
        ) as info:
            load_weights(target)
        assert "\n" not in str(info.value)
    raw = tmp_path / "evil.pth"  # a bare pickle (no zip): torch's message names no global, the opcodes do
    raw.write_bytes(pickle.dumps({"payload": _evil_payload(tmp_path)}, protocol=2))
    with pytest.raises(RelstitchError, match=r"system"):
        load_weights(raw)
    assert not (tmp_path / "PWNED").exists()


def _evil_payload(tmp_path: Path) -> object:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    return Payload()


def test_plain_state_dicts_load_from_every_format(tmp_path):
    weights = {"layer.weight": torch.randn(3, 2), "layer.bias": torch.zeros(3)}
    torch.save(weights, tmp_path / "w.pt")
    torch.save({"state_dict": weights, "epoch": 7}, tmp_path / "w.pth")  # a training checkpoint wrapper
    (tmp_path / "w.safetensors").write_bytes(serialize(weights, {}))
    for name in ("w.pt", "w.pth", "w.safetensors"):
        loaded = load_weights(tmp_path / name)
        assert loaded.keys() == weights.keys() and all(torch.equal(loaded[k], weights[k]) for k in weights)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("junk.pt", b"hello, not a checkpoint", "not a readable PyTorch weights file"),
        ("list.pt", None, "expected a mapping of names to tensors"),
        ("w.onnx", b"", "unknown weights format '.onnx'"),
        (
            "cut.safetensors",
            pack({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
            "points outside",
        ),
    ],
)
def test_bad_weights_files_are_refused(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is None:
        torch.save([torch.zeros(1)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(RelstitchError, match=expected):
        load_weights(path)


# ------------------------------------------------------------------------- numerical hygiene
def test_zero_norm_latents_are_counted_and_reported(cli, zoo, tmp_path):
    encoder = load_encoder(zoo.encoder("cnn-rel-s0"))
    last = [m for m in encoder.module.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    encoder.__dict__.pop("hash", None)
    encoder.name = "dead"
    dead = save_encoder(encoder, tmp_path / "dead.encoder.safetensors")
    result = cli("encode", dead, "-a", zoo.anchors_path, "--limit", 40, "-o", tmp_path / "e.safetensors")
    assert result.exit_code == 0, result.stderr
    assert "warning: 40 of 40 sample latents of 'dead' have zero norm" in result.stderr
    assert "warning: 64 of 64 anchor latents" in result.stderr
    relative = load_embeddings(tmp_path / "e.safetensors").relative()
    assert torch.equal(relative, torch.zeros_like(relative))  # cosine 0 by EPS, never NaN

    report = tmp_path / "r.json"
    result = cli(
        "eval-matrix",
        "-e",
        dead,
        "-e",
        zoo.encoder("cnn-rel-s1"),
        "-D",
        zoo.decoder("cnn-rel-s1"),
        "-a",
        zoo.anchors_path,
        "--limit",
        40,
        "--json",
        report,
    )
    assert result.exit_code == 0, result.stderr
    counts = {e["name"]: e["zero_norm_latents"] for e in json.loads(report.read_text())["encoders"]}
    assert counts == {"dead": 40, "cnn-rel-s1": 0}


def test_duplicate_anchors_warn_on_stderr(cli, zoo, tmp_path):
    from relstitch.anchors import load_anchors

    anchors = load_anchors(zoo.anchors_path)
    inputs = anchors.inputs.clone()
    inputs[5] = inputs[9]  # two anchors, one image
    doubled = save_anchors(
        Anchors(inputs, anchors.ids, anchors.labels, dict(anchors.meta)), tmp_path / "dup.safetensors"
    )
    result = cli(
        "encode", zoo.encoder("cnn-rel-s0"), "-a", doubled, "--limit", 20, "-o", tmp_path / "e.safetensors"
    )
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "2 anchors share an input" in warnings[0], result.stderr
    assert f"ids {int(anchors.ids[5])}, {int(anchors.ids[9])}" in warnings[0]


def test_single_class_evaluation_is_flagged(cli, zoo, tmp_path):
    data = idx_folder(tmp_path / "d", torch.randint(0, 255, (30, 28, 28)), torch.full((30,), 3))
    result = cli(
        "stitch",
        zoo.encoder("cnn-rel-s0"),
        zoo.decoder("cnn-rel-s1"),
        "-a",
        zoo.anchors_path,
        "--data",
        data,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert "warning: the evaluation data hold a single class ('Dress')" in result.stderr
    assert set(json.loads(result.stdout)["scores"]) == {"accuracy", "macro_f1"}  # flagged, still scored


def test_eval_matrix_records_a_failing_pair_and_goes_on(cli, zoo, tmp_path):
    broken = tmp_path / "broken.encoder.safetensors"
    broken.write_bytes(zoo.encoder("cnn-rel-s0").read_bytes()[:500])
    report = tmp_path / "r.json"
    result = cli(
        "eval-matrix",
        "-e",
        broken,
        "-e",
        zoo.encoder("cnn-rel-s1"),
        "-D",
        zoo.decoder("cnn-rel-s0"),
        "-D",
        zoo.decoder("cnn-abs-s0"),
        "-a",
        zoo.anchors_path,
        "--limit",
        40,
        "--json",
        report,
    )
    assert one_line_error(result).startswith(
        "error: 2 of 4 pairs failed"
    )  # the report is written all the same
    data = json.loads(report.read_text())
    failed = data["failed_pairs"]
    # the broken encoder fails with both decoders; cnn-rel-s1 (32-d) with the absolute decoder still runs
    assert {(f["encoder"], f["decoder"]) for f in failed} == {
        ("broken", "cnn-rel-s0"),
        ("broken", "cnn-abs-s0"),
    }
    assert all("does not fit a file" in f["error"] or "truncated" in f["error"] for f in failed)
    scored = [p for p in data["pairs"] if not p.get("error")]
    assert len(scored) == 2


# ------------------------------------------------------------------------------------ full disk
def _file_size_limit() -> None:
    """In the child: writes past 200 kB fail with EFBIG, as they would with ENOSPC on a full disk."""
    import resource
    import signal

    signal.signal(
        signal.SIGXFSZ, signal.SIG_IGN
    )  # else the kernel kills the writer instead of failing the write
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["encode", "anchors"])  # the streaming writer and atomic_write
def test_a_write_that_fails_half_way_is_one_line_and_leaves_nothing(verb, zoo, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out.safetensors"
    args = {
        "encode": ["encode", zoo.encoder("cnn-rel-s0"), "-a", zoo.anchors_path, "--limit", 2000, "-o", out],
        "anchors": ["anchors", out, "--count", 1000],
    }[verb]
    done = subprocess.run(
        [sys.executable, "-m", "relstitch", *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=_file_size_limit,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines() == [f"error: {out}: cannot write (File too large)"]
    assert list(tmp_path.iterdir()) == []

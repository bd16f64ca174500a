"""Round trips of every artifact kind, content hashes, and inspect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from relstitch.anchors import load_anchors, save_anchors, select_anchors
from relstitch.checkpoints import load_decoder, load_encoder
from relstitch.encoding import encode, load_embeddings, save_embeddings
from relstitch.errors import RelstitchError
from relstitch.io.artifacts import describe, read_header
from relstitch.projection import ProjectionConfig


def test_anchor_file_round_trip_keeps_content_and_hash(tmp_path, train_data):
    anchors = select_anchors(train_data, 20, "stratified", seed=3)
    path = save_anchors(anchors, tmp_path / "a.safetensors")
    loaded = load_anchors(path)
    assert torch.equal(loaded.inputs, anchors.inputs) and torch.equal(loaded.ids, anchors.ids)
    assert loaded.hash == anchors.hash
    assert loaded.meta["strategy"] == "stratified" and loaded.meta["seed"] == 3 and loaded.meta["count"] == 20
    # stratified = one per class in turn: the first 10 anchors cover the 10 classes
    assert sorted(loaded.labels[:10].tolist()) == list(range(10))


def test_anchor_selection_is_deterministic_and_seed_dependent(train_data):
    a, b, c = (select_anchors(train_data, 30, "uniform", seed=s) for s in (5, 5, 6))
    assert a.hash == b.hash != c.hash
    assert len(set(a.ids.tolist())) == 30


def test_checkpoints_round_trip_with_identical_outputs(tiny_zoo, test_data):
    encoder = load_encoder(tiny_zoo.encoder("cnn-rel-s0"))
    decoder = load_decoder(tiny_zoo.decoder("cnn-rel-s0"))
    assert decoder.space == "relative" and decoder.encoder_hash == encoder.hash
    assert decoder.anchor_hash == load_anchors(tiny_zoo.anchors_path).hash
    assert decoder.task["classes"][0] == "T-shirt/top"
    again = load_encoder(tiny_zoo.encoder("cnn-rel-s0"))
    x = test_data.x[:16]
    torch.testing.assert_close(encoder.embed_batch(x), again.embed_batch(x), rtol=0, atol=0)


def test_embeddings_round_trip(tmp_path, tiny_zoo, test_data):
    encoder, anchors = load_encoder(tiny_zoo.encoder("cnn-rel-s1")), load_anchors(tiny_zoo.anchors_path)
    space = encode(encoder, anchors, test_data.subset(torch.arange(100)))
    path = save_embeddings(space, tmp_path / "e.safetensors", projection=ProjectionConfig(centering=True))
    loaded = load_embeddings(path)
    assert loaded.encoder_hash == encoder.hash and loaded.anchor_hash == anchors.hash
    torch.testing.assert_close(loaded.absolute, space.absolute)
    torch.testing.assert_close(
        loaded.relative(ProjectionConfig(centering=True)), space.relative(ProjectionConfig(centering=True))
    )
    assert read_header(path).tensors["relative"].shape == (100, len(anchors))


def test_wrong_kind_is_refused_with_a_clear_message(tiny_zoo):
    with pytest.raises(RelstitchError, match="is a relstitch encoder file, expected a decoder file"):
        load_decoder(tiny_zoo.encoder("cnn-rel-s0"))


def test_describe_reads_the_header_without_torch(tiny_zoo):
    info = describe(tiny_zoo.decoder("cnn-abs-s0"))
    assert info["kind"] == "decoder" and info["metadata"]["space"] == "absolute"
    code = (
        "import sys, json; from relstitch.io.artifacts import describe; "
        f"describe({str(tiny_zoo.decoder('cnn-abs-s0'))!r}); print(json.dumps('torch' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) is False


def test_every_tensor_starts_at_a_multiple_of_its_element_size(tmp_path):
    """safetensors' own layout (widest dtype first, then by name): its round-trip test asserts this
    alignment."""
    import json
    import struct

    from relstitch.io.artifacts import _DTYPE_SIZES, serialize
    from relstitch.streaming import encode_to_file

    mixed = {
        "a": torch.zeros(3, dtype=torch.uint8),
        "b": torch.arange(5),
        "c": torch.ones(2, dtype=torch.float16),
        "d": torch.ones(3),
    }
    files = {"serialized": serialize(mixed, {"k": "v"})}
    zoo = Path(__file__).resolve().parent.parent / "checkpoints"
    files["checkpoint"] = (zoo / "cnn-rel-s0.encoder.safetensors").read_bytes()
    from relstitch.anchors import load_anchors
    from relstitch.checkpoints import load_encoder
    from relstitch.data import load_dataset

    out = tmp_path / "e.safetensors"
    encode_to_file(
        load_encoder(zoo / "cnn-rel-s0.encoder.safetensors"),
        load_anchors(zoo / "anchors.safetensors"),
        load_dataset("builtin:test", limit=7),
        out,
    )
    files["streamed embeddings"] = out.read_bytes()
    for what, data in files.items():
        size = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8 : 8 + size])
        for name, entry in header.items():
            if name != "__metadata__":
                assert entry["data_offsets"][0] % _DTYPE_SIZES[entry["dtype"]] == 0, (what, name, entry)

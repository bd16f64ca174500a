"""relstitch/api.py and the package's public names: lazy (no torch at import), typed, one signature per
verb, and the same results as the library functions the CLI runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import relstitch
from relstitch import api
from relstitch.stitching import stitch as stitch_pair

VERBS = ["select_anchors", "encode", "fit", "stitch", "eval_matrix", "compare", "export_stitched"]
LOADERS = ["load_encoder", "load_decoder", "load_anchors", "load_embeddings", "load_stitched"]


def test_import_relstitch_and_help_import_no_torch():
    code = (
        "import sys, relstitch; assert 'torch' not in sys.modules, 'import'; "
        "names = dir(relstitch); assert 'stitch' in names and 'RelativeProjection' in names; "
        "assert 'torch' not in sys.modules, 'dir'; "
        "from relstitch.cli import app; from typer.testing import CliRunner; "
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0; "
        "assert 'torch' not in sys.modules, '--help'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_public_name_resolves_and_is_documented():
    assert sorted(relstitch.__all__) == sorted(["__version__", *relstitch._LAZY])
    for name in [*VERBS, *LOADERS, "RelativeProjection", "StitchedModel"]:
        value = getattr(relstitch, name)
        assert value.__doc__, name
        assert name in dir(relstitch)
    assert relstitch.RelativeProjection.__module__ == "relstitch.nn"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        relstitch.nope  # noqa: B018


def test_anchors_stays_the_module_and_the_verb_is_select_anchors():
    import relstitch.anchors

    assert relstitch.anchors.__name__ == "relstitch.anchors"
    assert relstitch.select_anchors is api.select_anchors
    assert relstitch.export_stitched is api.export_stitched


def test_the_verbs_take_references_or_loaded_objects_alike(tiny_zoo, test_data):
    encoder_path, decoder_path = tiny_zoo.encoder("cnn-rel-s0"), tiny_zoo.decoder("cnn-rel-s1")
    anchors = relstitch.load_anchors(tiny_zoo.anchors_path)
    by_reference = relstitch.stitch(encoder_path, decoder_path, tiny_zoo.anchors_path, "builtin:test")
    loaded = relstitch.stitch(
        relstitch.load_encoder(encoder_path), relstitch.load_decoder(decoder_path), anchors, test_data
    )
    direct = stitch_pair(
        relstitch.load_encoder(encoder_path), relstitch.load_decoder(decoder_path), anchors, test_data
    )
    assert by_reference.scores == loaded.scores == direct.scores


def test_select_anchors_encode_fit_and_compare(tiny_zoo, train_data):
    picked = relstitch.select_anchors(train_data, 16, "stratified", seed=0)
    assert len(picked) == 16
    space = relstitch.encode(tiny_zoo.encoder("cnn-rel-s0"), picked, "builtin:train", limit=300)
    assert space.absolute.shape[0] == 300 and space.anchor_hash == picked.hash
    head = relstitch.fit(space, epochs=1, val=0)
    assert head.space == "relative" and head.architecture["name"] == "vision-head"
    other = relstitch.encode(
        relstitch.load_encoder(tiny_zoo.encoder("cnn-rel-s1")), picked, train_data.subset(torch.arange(300))
    )
    result = relstitch.compare([space, other], k=5)
    assert result.names == ["cnn-rel-s0", "cnn-rel-s1"]


def test_eval_matrix_is_evaluate(tiny_zoo):
    done = relstitch.eval_matrix(
        [tiny_zoo.encoder("cnn-rel-s0")], [tiny_zoo.decoder("cnn-rel-s1")], tiny_zoo.anchors_path, limit=100
    )
    assert done.failure_summary() is None and len(done.result.pairs) >= 1


def test_a_bad_batch_size_is_a_usage_error(tiny_zoo):
    from relstitch.errors import UsageError

    with pytest.raises(UsageError, match="batch_size"):
        relstitch.encode(tiny_zoo.encoder("cnn-rel-s0"), tiny_zoo.anchors_path, "builtin:test", batch_size=0)

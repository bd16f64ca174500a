"""Weights that cannot be right are refused at load, never used.

Every checkpoint load (encoder and decoder) and every ``weights=FILE`` of a torchvision/python source
checks its tensors: the dtype the module has (exactly, for relstitch's own files; the same kind, for
foreign files), every value finite, and, for relstitch files, the content hash recorded at save time.
The bad files are real safetensors: shipped checkpoints with a header edited, or re-written with the
metadata of the original and other tensors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_checks import one_line_error
from conftest import REPO
from safetensors.torch import load_file, save_file
from test_bad_inputs import pack, split
from torch import nn

from relstitch.adapters import load_encoder_ref
from relstitch.architectures import create_encoder
from relstitch.checkpoints import load_decoder, load_encoder, save_decoder, save_encoder
from relstitch.components import Encoder
from relstitch.errors import RelstitchError
from relstitch.io.artifacts import content_hash, read_header, serialize, short

CHECKPOINTS = REPO / "checkpoints"
ANCHORS = CHECKPOINTS / "anchors.safetensors"
ENCODER = CHECKPOINTS / "cnn-rel-s0.encoder.safetensors"
DECODER = CHECKPOINTS / "cnn-rel-s0.decoder.safetensors"


def _retyped(path: Path, tensor: str, dtype: str, out: Path) -> Path:
    """``path`` with one tensor's dtype changed in the header only: the same bytes, read as another type."""
    header, data = split(path)
    assert header[tensor]["dtype"] == "F32"
    header[tensor]["dtype"] = dtype
    out.write_bytes(pack(header, data))
    return out


def _last_bias(path: Path) -> str:
    return sorted(name for name in read_header(path).tensors if name.endswith(".bias"))[-1]


def _poisoned(path: Path, value: float, count: int, out: Path) -> tuple[Path, str]:
    """A relstitch checkpoint saved by relstitch itself (its hash matches) with ``count`` weights set to
    ``value``."""
    loaded = load_encoder(path) if ".encoder." in path.name else load_decoder(path)
    name, weight = next((n, p) for n, p in loaded.module.named_parameters() if p.numel() >= count)
    with torch.no_grad():
        weight.view(-1)[:count] = value
    save = save_encoder if isinstance(loaded, Encoder) else save_decoder
    return save(loaded, out), name


# --------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("path", [DECODER, ENCODER], ids=["decoder", "encoder"])
def test_a_bias_declared_int32_over_the_same_bytes_is_refused(path, cli, tmp_path):
    bias = _last_bias(path)
    bad = _retyped(path, bias, "I32", tmp_path / path.name)
    with pytest.raises(
        RelstitchError, match=rf"weight '{bias}' is stored as int32, but .* has float32 there"
    ):
        (load_encoder if path == ENCODER else load_decoder)(bad)
    encoder, decoder = (bad, DECODER) if path == ENCODER else (ENCODER, bad)
    line = one_line_error(cli("stitch", encoder, decoder, "-a", ANCHORS, "--limit", 50))
    assert (
        f"{bad}: weight '{bias}' is stored as int32" in line
        and "float32" in line
        and "re-save it with relstitch" in line
    )
    # inspect reads only the header: it still describes the file, showing the declared dtype
    described = cli("inspect", bad, "--json")
    assert described.exit_code == 0 and '"dtype": "I32"' in described.stdout


def test_checkpoints_with_integer_buffers_load_exactly(tmp_path):
    """BatchNorm's num_batches_tracked is int64 in the module and in the file: exact, so accepted."""
    args = {"in_channels": 1, "latent_dim": 8}
    module = create_encoder("resnet18", **args).eval()
    assert any(t.dtype == torch.int64 for t in module.state_dict().values())
    encoder = Encoder(module, {"name": "resnet18", "args": args}, {"modality": "image"}, 8, "r18")
    loaded = load_encoder(save_encoder(encoder, tmp_path / "r18.encoder.safetensors"))
    assert loaded.hash == encoder.hash


# ----------------------------------------------------------------------------- NaN / Inf
@pytest.mark.parametrize(
    ("path", "value", "count", "counts"),
    [
        (DECODER, float("inf"), 7, "0 NaN and 7 infinite"),
        (ENCODER, float("nan"), 3, "3 NaN and 0 infinite"),
    ],
    ids=["decoder-inf", "encoder-nan"],
)
def test_non_finite_weights_are_refused_naming_the_tensor(path, value, count, counts, cli, tmp_path):
    bad, name = _poisoned(path, value, count, tmp_path / path.name)
    with pytest.raises(RelstitchError, match=rf"weight '{name}' holds {counts} value\(s\)"):
        (load_encoder if path == ENCODER else load_decoder)(bad)
    encoder, decoder = (bad, DECODER) if path == ENCODER else (ENCODER, bad)
    line = one_line_error(cli("stitch", encoder, decoder, "-a", ANCHORS, "--limit", 50))
    assert f"{bad}: weight '{name}' holds {counts}" in line and "retrain it" in line
    assert cli("inspect", bad).exit_code == 0


def test_eval_matrix_does_not_score_a_decoder_with_infinite_weights(cli, tmp_path):
    """The broken decoder is a failed column (its reason in the table), the good one is scored; exit 1."""
    bad, name = _poisoned(DECODER, float("inf"), 5, tmp_path / "inf.decoder.safetensors")
    good = CHECKPOINTS / "cnn-rel-s1.decoder.safetensors"
    result = cli("eval-matrix", "-e", ENCODER, "-D", bad, "-D", good, "-a", ANCHORS, "--limit", 40)
    assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr, result.stderr
    assert f"weight '{name}' holds 0 NaN and 5 infinite value(s)" in " ".join(
        (result.stdout + result.stderr).split()
    )


# ------------------------------------------------------------------------------ content hash
def test_a_tampered_encoder_is_refused_naming_both_hashes(cli, tmp_path):
    """Weights changed, metadata (and so the recorded hash) kept: a real file, re-written."""
    header = read_header(ENCODER)
    tensors = load_file(str(ENCODER))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 0.5
    bad = tmp_path / ENCODER.name
    bad.write_bytes(serialize(tensors, header.raw_metadata))
    recorded, computed = header.metadata["hash"], content_hash(tensors, extra=header.metadata["architecture"])
    assert recorded != computed
    expected = (
        f"({short(recorded)} recorded, {short(computed)} computed): the file was tampered with or is corrupt"
    )
    with pytest.raises(RelstitchError, match=r"do not match the file's recorded hash"):
        load_encoder(bad)
    line = one_line_error(cli("stitch", bad, DECODER, "-a", ANCHORS, "--limit", 50))
    assert f"{bad}: weights do not match the file's recorded hash {expected}" in line
    line = one_line_error(cli("encode", bad, "-a", ANCHORS, "--limit", 50, "-o", tmp_path / "e.safetensors"))
    assert short(recorded) in line and short(computed) in line
    assert not (tmp_path / "e.safetensors").exists()


def test_a_checkpoint_without_a_recorded_hash_still_loads(tmp_path):
    """Files written before the hash was recorded carry none: nothing to verify, they load (schema:
    optional)."""
    header = read_header(DECODER)
    old = tmp_path / DECODER.name
    old.write_bytes(
        serialize(
            load_file(str(DECODER)), {k: v for k, v in header.raw_metadata.items() if k != "relstitch.hash"}
        )
    )
    assert load_decoder(old).hash == header.metadata["hash"]


def test_a_checkpoint_changed_after_loading_is_saved_under_its_new_hash(tmp_path):
    """save_* records the hash of what it writes, even when the cached one was read before the change."""
    encoder = load_encoder(ENCODER)
    before = encoder.hash
    with torch.no_grad():
        next(iter(encoder.module.parameters())).mul_(2)
    again = load_encoder(save_encoder(encoder, tmp_path / "tuned.encoder.safetensors"))
    assert again.hash == encoder.hash != before


def test_every_shipped_checkpoint_loads_with_its_recorded_hash():
    paths = sorted(CHECKPOINTS.glob("*.encoder.safetensors")) + sorted(
        CHECKPOINTS.glob("*.decoder.safetensors")
    )
    assert len(paths) >= 10
    for path in paths:
        loaded = load_encoder(path) if ".encoder." in path.name else load_decoder(path)
        assert loaded.hash == read_header(path).metadata["hash"], path
        # the cached hash is the one of the weights loaded, not only the recorded one
        assert loaded.hash == content_hash(loaded.module.state_dict(), extra=loaded.architecture)


# ----------------------------------------------------------------------- weights=FILE sources
def tiny_net(half: bool = False) -> nn.Module:
    """The factory the tests name as python:<this module>:tiny_net."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return model.half() if half else model


def _weights(tmp_path: Path, name: str, change=None, dtype: torch.dtype | None = None) -> Path:
    state = {k: v.clone() for k, v in tiny_net().state_dict().items()}
    if change:
        change(state)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    save_file(state, tmp_path / name)
    return tmp_path / name


def test_a_weights_file_with_inf_is_refused(cli, tmp_path):
    bad = _weights(tmp_path, "inf.safetensors", lambda s: s["0.bias"].fill_(float("inf")))
    line = one_line_error(
        cli(
            "encode",
            f"python:{__name__}:tiny_net#weights={bad}",
            "-a",
            ANCHORS,
            "--limit",
            20,
            "-o",
            tmp_path / "e.safetensors",
        )
    )
    assert f"{bad}: weight '0.bias' holds 0 NaN and 4 infinite value(s)" in line and "intact copy" in line


def test_a_weights_file_of_another_kind_of_dtype_is_refused_but_half_precision_is_taken(tmp_path):
    ints = _weights(
        tmp_path, "int.safetensors", lambda s: s.update({"0.bias": (s["0.bias"] * 100).to(torch.int32)})
    )
    with pytest.raises(
        RelstitchError, match=r"int\.safetensors: weight '0\.bias' is stored as int32, but .* has float32"
    ):
        load_encoder_ref(f"python:{__name__}:tiny_net#weights={ints}")
    # float16/bfloat16 releases of float32 models are common: cast, as load_state_dict does
    for dtype in (torch.float16, torch.bfloat16):
        half = _weights(tmp_path, f"{dtype}.safetensors", dtype=dtype)
        encoder = load_encoder_ref(f"python:{__name__}:tiny_net#weights={half}")
        weight = encoder.module.state_dict()["model.0.weight"]
        assert weight.dtype == torch.float32
        assert torch.equal(weight, tiny_net().state_dict()["0.weight"].to(dtype).float())
    # a float32 file into a float16 model: values beyond float16's range would become Inf
    big = _weights(tmp_path, "big.safetensors", lambda s: s["0.weight"].view(-1)[:2].fill_(1e6))
    with pytest.raises(
        RelstitchError, match=r"weight '0\.weight' has 2 value\(s\) beyond the range of .*'s float16"
    ):
        load_encoder_ref(f"python:{__name__}:tiny_net(half=True)#weights={big}")

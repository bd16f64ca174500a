"""A stitched model you can ship: encoder, decoder and the encoder's own anchor latents in one file.

:func:`export_stitched` wires an encoder into a relative decoder the way :func:`relstitch.stitching.stitch`
does, computes the encoder's latents of the anchors once, and writes one ``stitched`` relstitch file:

- tensors ``encoder.*`` (the encoder's weights), ``decoder.*`` (the decoder's) and ``anchor_latents``
  (``[k, latent_dim]``, float32);
- metadata: the encoder's and the decoder's architecture records (registry name and arguments), names and
  content hashes, the encoder's input spec, the decoder's projection config and task (class names), the
  anchor hash and count.

:func:`load_stitched` reads it back into a :class:`StitchedModel`, an ``nn.Module`` mapping raw inputs
(uint8 images, as the data holds them) to the decoder's outputs; no anchor inputs are needed at run time.
The architectures are rebuilt from relstitch's registries by name (:mod:`relstitch.architectures`), and the
weights pass the checks every relstitch checkpoint passes (names, shapes, dtypes, finite values, the recorded
hash): nothing in the file is imported or run. ``format="onnx"`` exports the same module through
``torch.onnx.export`` (the optional ``onnx`` extra).

Which encoders can be shipped: relstitch's own architectures (``train``'s, and those registered in
``relstitch.architectures.ENCODERS``), image encoders. Model sources whose rebuilding needs more than a
registry name and weights (``hf:`` needs its tokenizer files and config, ``torchvision:``/``timm:``/
``python:`` their own code and preprocessing) are refused in one line; so are absolute decoders (there is no
stitch to ship: the decoder reads its own encoder's latents).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .anchor_set import Anchors
from .architectures import ENCODERS
from .checkpoints import _build
from .components import Decoder, Encoder
from .data import check_input_spec, prepare_images
from .encoding import embed, inputs_for
from .errors import RelstitchError, UsageError, printable, unknown_choice
from .hygiene import check_finite
from .io.artifacts import load_artifact, save_artifact, short
from .io.atomic import atomic_write, check_outputs
from .projection import ProjectionConfig, relative_projection

FORMATS = ("safetensors", "onnx")
"""What ``export --format`` writes: a relstitch ``stitched`` file, or an ONNX graph of the same module."""
ENCODER_PREFIX, DECODER_PREFIX, ANCHOR_LATENTS = "encoder.", "decoder.", "anchor_latents"


class StitchedModel(nn.Module):
    """Raw inputs → the decoder's outputs: preprocessing, encoder, relative projection onto the fixed anchor
    latents, decoder. The same numbers as :func:`relstitch.stitching.stitch` on the same pair.

    ``input_spec`` is the encoder's (:func:`relstitch.data.prepare_images`), ``task`` the decoder's
    (``classes`` for a classifier). ``forward`` returns logits (or reconstructions); :meth:`predict` the class
    indices of a classifier.
    """

    anchor_latents: torch.Tensor

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        anchor_latents: torch.Tensor,
        projection: ProjectionConfig,
        input_spec: dict[str, Any],
        task: dict[str, Any],
        *,
        meta: dict[str, Any] | None = None,
        path: Path | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.register_buffer(ANCHOR_LATENTS, anchor_latents)
        self.projection = projection
        # checked here, where every stitched model is made (a file's or one built in Python): forward
        # trusts it
        self.input_spec = check_input_spec(input_spec, path=path)
        self.task = dict(task)
        self.meta = dict(meta or {})
        self.path = path

    @property
    def classes(self) -> list[str]:
        """The decoder's class names (empty for a reconstruction)."""
        return list(self.task.get("classes") or [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``[B, ...]`` of raw inputs ``x [B, ...]`` (uint8 images are scaled per the input spec)."""
        latents: torch.Tensor = self.encoder(prepare_images(x, self.input_spec))
        relative = relative_projection(latents, self.anchor_latents, self.projection)
        out: torch.Tensor = self.decoder(relative)
        return out

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
        """Predicted class indices ``[B]`` (in inference mode, batch by batch)."""
        if self.task.get("type") != "classification":
            raise RelstitchError("predict gives class indices; this stitched model reconstructs images")
        self.eval()
        return torch.cat([self(x[s : s + batch_size]).argmax(1) for s in range(0, len(x), batch_size)])

    def extra_repr(self) -> str:
        k = self.anchor_latents.shape[0]
        return f"anchors={k}, {self.projection.describe()}, task={self.task.get('type')}"


# --------------------------------------------------------------------------------------------- export
def check_exportable(encoder: Encoder, decoder: Decoder, anchors: Anchors) -> None:
    """Refuse, in one line and before any work, a pair this relstitch cannot ship as one file."""
    name = encoder.architecture.get("name")
    own = type(encoder) is Encoder and isinstance(name, str) and name in ENCODERS
    if not own:
        source = str(encoder.meta.get("source") or name or "?")
        raise RelstitchError(
            f"export ships relstitch's own encoder architectures ({', '.join(sorted(ENCODERS))}); encoder "
            f"{encoder.name!r} is {printable(source)[:80]!r}, which a stitched file cannot rebuild without "
            "its own code or tokenizer files",
            path=encoder.path,
            hint="export an encoder trained with `relstitch train` (hf:, torchvision:, timm: and python: "
            "encoders are not supported yet)",
        )
    if encoder.input_spec.get("modality", "image") != "image":
        raise RelstitchError(
            f"encoder {encoder.name!r} reads {encoder.input_spec.get('modality')}; export ships image "
            "encoders",
            path=encoder.path,
        )
    if decoder.space != "relative" or decoder.projection is None:
        raise RelstitchError(
            f"decoder {decoder.name!r} reads absolute latents: there is no relative stitch to ship",
            path=decoder.path,
            hint="export a relative decoder (`relstitch train --space relative` or `fit --space relative`)",
        )
    if decoder.anchor_hash != anchors.hash:
        raise RelstitchError(
            f"decoder {decoder.name!r} was trained with anchors {short(decoder.anchor_hash)} "
            f"but {anchors.path or 'these anchors'} are {short(anchors.hash)}",
            path=decoder.path,
            hint="use the anchor file the decoder was trained with",
        )
    expected = decoder.projection.output_dim(len(anchors))
    if decoder.input_dim != expected:
        raise RelstitchError(
            f"decoder {decoder.name!r} reads {decoder.input_dim} values but {len(anchors)} anchors give "
            f"{expected}",
            path=decoder.path,
        )


def stitched_model(encoder: Encoder, decoder: Decoder, anchors: Anchors) -> StitchedModel:
    """The :class:`StitchedModel` of a pair, in memory: the anchors embedded once by ``encoder`` (checked:
    :func:`check_exportable`; anchors the encoder cannot read are refused by
    :func:`relstitch.encoding.inputs_for`)."""
    check_exportable(encoder, decoder, anchors)
    encoder.module.eval()
    decoder.module.eval()
    latents = embed(encoder, inputs_for(encoder, anchors), description=f"{encoder.name}: anchors")
    assert decoder.projection is not None  # check_exportable refused absolute decoders
    return StitchedModel(
        encoder.module,
        decoder.module,
        latents,
        decoder.projection,
        encoder.input_spec,
        decoder.task,
        meta=stitched_meta(encoder, decoder, anchors),
    )


def stitched_meta(encoder: Encoder, decoder: Decoder, anchors: Anchors) -> dict[str, Any]:
    """The metadata of a ``stitched`` file: both architecture records, names and hashes, the input spec,
    the projection, the task and the anchors' hash and count."""
    assert decoder.projection is not None  # only relative pairs are exported
    return {
        "name": f"{encoder.name}→{decoder.name}",
        "encoder": {
            "name": encoder.name,
            "architecture": encoder.architecture,
            "latent_dim": encoder.latent_dim,
            "hash": encoder.hash,
        },
        "decoder": {
            "name": decoder.name,
            "architecture": decoder.architecture,
            "input_dim": decoder.input_dim,
            "hash": decoder.hash,
            "encoder_hash": decoder.encoder_hash,
        },
        "input": encoder.input_spec,
        "projection": decoder.projection.to_dict(),
        "task": decoder.task,
        "anchor_hash": anchors.hash,
        "anchor_count": len(anchors),
    }


def export_stitched(
    encoder: Encoder,
    decoder: Decoder,
    anchors: Anchors,
    output: str | os.PathLike[str],
    *,
    format: str = "safetensors",
    force: bool = False,
    inputs: tuple[str | os.PathLike[str], ...] = (),
) -> StitchedModel:
    """Write ``encoder`` stitched into ``decoder`` through ``anchors`` to ``output`` (atomically) and return
    the module written.

    ``format``: ``safetensors`` (a relstitch ``stitched`` file, read by :func:`load_stitched`) or ``onnx``
    (needs the ``onnx`` extra). ``output`` is checked before any work: it must not exist unless ``force``,
    nor be one of the input files (the three loaded files' paths, and ``inputs``).
    """
    if format not in FORMATS:
        raise unknown_choice("format", format, FORMATS)
    given = [p for p in (encoder.path, decoder.path, anchors.path, *inputs) if p is not None]
    check_outputs([output], force=force, inputs=given)
    if format == "onnx":
        _onnx_modules()  # a missing extra costs nothing
    model = stitched_model(encoder, decoder, anchors)
    if format == "onnx":
        atomic_write(output, onnx_bytes(model), force=force)
        return model
    tensors = {ENCODER_PREFIX + k: v for k, v in encoder.module.state_dict().items()}
    tensors |= {DECODER_PREFIX + k: v for k, v in decoder.module.state_dict().items()}
    tensors[ANCHOR_LATENTS] = model.anchor_latents
    model.path = save_artifact(output, "stitched", tensors, model.meta, force=force)
    return model


# ----------------------------------------------------------------------------------------------- load
def _part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_stitched(path: str | os.PathLike[str]) -> StitchedModel:
    """Read a ``stitched`` file back into a :class:`StitchedModel` (in eval mode), every part checked.

    Both architectures come from relstitch's registries by the name the file records; their weights are
    checked as a checkpoint's are (names, shapes, dtypes, finite, the recorded hash); the anchor latents must
    be finite and ``[anchor_count, latent_dim]``, and the decoder's input size the projection's output.
    """
    art = load_artifact(path, "stitched")
    meta, where = art.meta, art.path
    known = {ANCHOR_LATENTS}
    stray = sorted(
        k for k in art.tensors if k not in known and not k.startswith((ENCODER_PREFIX, DECODER_PREFIX))
    )
    if stray:
        raise RelstitchError(f"corrupt stitched file: unexpected tensor(s) {stray[:4]}", path=where)
    latents = art.tensors.get(ANCHOR_LATENTS)
    enc, dec = meta["encoder"], meta["decoder"]
    count, width = meta["anchor_count"], enc["latent_dim"]
    if latents is None or tuple(latents.shape) != (count, width) or not latents.is_floating_point():
        shape = "missing" if latents is None else f"{latents.dtype} {list(latents.shape)}"
        raise RelstitchError(
            f"corrupt stitched file: anchor_latents is {shape}, expected float [{count}, {width}]", path=where
        )
    check_finite(latents, "anchor latents", path=where)
    try:
        projection = ProjectionConfig.from_dict(meta["projection"])
    except (RelstitchError, TypeError) as exc:
        raise RelstitchError(f"corrupt stitched file: {exc}", path=where) from None
    if dec["input_dim"] != projection.output_dim(count):
        raise RelstitchError(
            f"corrupt stitched file: the decoder reads {dec['input_dim']} values but {count} anchors give "
            f"{projection.output_dim(count)}",
            path=where,
        )
    try:
        encoder = _build(
            "encoder", enc["architecture"], _part(art.tensors, ENCODER_PREFIX), where, enc.get("hash")
        )[0]
        decoder = _build(
            "decoder", dec["architecture"], _part(art.tensors, DECODER_PREFIX), where, dec.get("hash")
        )[0]
    except RuntimeError as exc:  # a shape mismatch inside load_state_dict, as load_encoder says it
        raise RelstitchError(
            f"weights do not fit the architecture: {str(exc).splitlines()[-1].strip()}", path=where
        ) from None
    model = StitchedModel(
        encoder, decoder, latents.float(), projection, meta["input"], meta["task"], meta=meta, path=where
    )
    return model.eval()


# ----------------------------------------------------------------------------------------------- onnx
def _onnx_modules() -> None:
    """Refuse ``--format onnx`` in one line when the optional extra is missing."""
    import importlib.util  # noqa: PLC0415

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(
            f"--format onnx needs {' and '.join(missing)}, which are not installed",
            hint="pip install 'relstitch[onnx]'",
        )


def onnx_bytes(model: StitchedModel) -> bytes:
    """``model`` as an ONNX graph (``torch.onnx.export``): input ``images`` (uint8, any batch size), output
    ``outputs`` (the decoder's)."""
    import tempfile  # noqa: PLC0415

    shape = model.input_spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise RelstitchError("--format onnx needs the encoder's input shape, and its input spec has none")
    example = torch.zeros((2, *shape), dtype=torch.uint8)  # what the data holds: raw uint8 images
    batch = torch.export.Dim("batch")
    with tempfile.TemporaryDirectory(prefix="relstitch-onnx-") as folder:
        target = Path(folder) / "stitched.onnx"
        try:
            torch.onnx.export(
                model.eval(),
                (example,),
                str(target),
                input_names=["images"],
                output_names=["outputs"],
                dynamic_shapes=({0: batch},),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:  # torch.onnx raises many types; the reason is its first line
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise RelstitchError(f"torch.onnx.export failed: {reason}") from None
        return target.read_bytes()


__all__ = [
    "FORMATS",
    "StitchedModel",
    "check_exportable",
    "export_stitched",
    "load_stitched",
    "onnx_bytes",
    "stitched_model",
]

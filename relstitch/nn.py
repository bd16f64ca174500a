"""A relative layer for any PyTorch model: :class:`RelativeProjection`, and :class:`RelativeHead` on it.

``RelativeProjection`` turns a batch of latents ``[B, D]`` into relative vectors ``[B, m*k]``: their
similarities to ``k`` anchor latents under a :class:`~relstitch.projection.ProjectionConfig`. It is
:func:`relstitch.projection.relative_projection` as a module, not a second implementation: relstitch's
own training (:func:`relstitch.training.train`) uses this very layer as its relative bottleneck.

The anchor latents come from one of two places:

- ``embed``: a callable (usually the encoder the layer sits behind) that embeds the anchor *inputs* at
  every forward pass, without gradient, as the authors train (Moschella et al. 2023): the anchors move
  with the encoder, and the gradient flows only through the batch;
- a fixed tensor of anchor latents (no ``embed``): for a frozen encoder, or latents computed elsewhere.

The layer's ``state_dict`` holds one entry, ``anchor_hash_bytes`` (the anchor file's content hash as ASCII
bytes), so a checkpoint knows which anchors its decoder was trained with; loading a state dict recorded
for other anchors into a layer built for these is refused in one line. The anchors themselves are
non-persistent buffers: they move with ``.to(device)`` but come from the anchor file, not the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .anchor_set import Anchors
from .architectures import create_decoder
from .errors import RelstitchError
from .io.artifacts import short
from .projection import ProjectionConfig, relative_projection

HASH_KEY = "anchor_hash_bytes"
"""The state-dict entry (under the layer's prefix) that holds the anchors' content hash."""


def _hash_tensor(digest: str | None) -> torch.Tensor:
    return torch.tensor(list((digest or "").encode("ascii")), dtype=torch.uint8)


def _hash_text(tensor: torch.Tensor) -> str | None:
    text = bytes(tensor.detach().cpu().tolist()).decode("ascii", errors="replace")
    return text or None


class RelativeProjection(nn.Module):
    """Project latents ``[B, D]`` onto anchor latents ``[k, D]`` → relative vectors ``[B, m*k]``.

    ``anchors``: an :class:`~relstitch.anchor_set.Anchors` set (its inputs are embedded by ``embed``;
    its hash is recorded) or a tensor: the anchor *inputs* when ``embed`` is given, else the fixed anchor
    *latents*. ``embed``: called on the anchor inputs at every forward pass under ``torch.no_grad()``;
    it is held as a plain reference, not a submodule, so the surrounding model's ``state_dict`` does not
    hold its weights twice. ``anchor_hash``: the anchor file's hash when ``anchors`` is a tensor (an
    ``Anchors`` set gives its own). Differentiable in the batch; runs under autocast and ``torch.compile``.
    """

    anchor_hash_bytes: torch.Tensor

    def __init__(
        self,
        anchors: Anchors | torch.Tensor,
        config: ProjectionConfig | None = None,
        *,
        embed: Callable[[Any], torch.Tensor] | None = None,
        anchor_hash: str | None = None,
    ) -> None:
        super().__init__()
        self.config = config or ProjectionConfig()
        self.config.validate()
        if isinstance(anchors, Anchors):
            if embed is None:
                raise RelstitchError(
                    "an anchor set holds inputs, not latents: give embed= (the encoder that embeds them)",
                    path=anchors.path,
                )
            if anchor_hash is not None and anchor_hash != anchors.hash:
                raise RelstitchError(
                    f"anchor_hash {short(anchor_hash)} is not the anchor set's own ({short(anchors.hash)})"
                )
            anchor_hash, inputs = anchors.hash, anchors.inputs
        else:
            inputs = anchors
        if embed is None and (not isinstance(inputs, torch.Tensor) or inputs.ndim != 2):
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            raise RelstitchError(
                f"fixed anchor latents must be a 2-d tensor [k, D], got {shape}",
                hint="pass embed= to embed anchor inputs with your encoder at each step",
            )
        self.count = len(inputs)
        if self.count < 1:
            raise RelstitchError("a relative projection needs at least one anchor")
        if isinstance(inputs, torch.Tensor):  # a buffer: it follows .to(device); not saved (the file has it)
            self.register_buffer("anchors", inputs, persistent=False)
        else:  # text views: handed to embed as they are
            self.__dict__["anchors"] = inputs
        # Not a submodule: the encoder usually belongs to the surrounding model already (registering it
        # here would save its weights twice, and loop forever were this layer inside it).
        self.__dict__["embed"] = embed
        self.register_buffer(HASH_KEY, _hash_tensor(anchor_hash))

    @property
    def anchor_hash(self) -> str | None:
        """The content hash of the anchors the layer projects onto (None when it was never given)."""
        return _hash_text(self.anchor_hash_bytes)

    @property
    def output_dim(self) -> int:
        """The length of the relative vectors: ``k`` per similarity of the config."""
        return self.config.output_dim(self.count)

    def anchor_latents(self) -> torch.Tensor:
        """The anchors' latents now: ``embed(anchor inputs)`` without gradient, or the fixed tensor."""
        embed: Callable[[Any], torch.Tensor] | None = self.__dict__["embed"]
        anchors: Any = self.anchors  # a buffer, or text views held as they are
        if embed is None:
            fixed: torch.Tensor = anchors
            return fixed
        with torch.no_grad():  # the authors' recipe: the gradient flows through the batch only
            latents = embed(anchors)
        return latents

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Relative vectors of the latents ``x [B, D]``: :func:`relative_projection` onto the anchors."""
        return relative_projection(x, self.anchor_latents(), self.config)

    def extra_repr(self) -> str:
        return f"anchors={self.count}, {self.config.describe()}, anchor_hash={short(self.anchor_hash)}"

    # The state dict's ``anchor_hash`` is checked, never silently copied over another.
    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        key = prefix + HASH_KEY
        found = state_dict.get(key)
        if isinstance(found, torch.Tensor):
            theirs, ours = _hash_text(found), self.anchor_hash
            if ours is None:  # built without a hash: adopt the recorded one (same shape, so copy works)
                self.anchor_hash_bytes = found.detach().to(torch.uint8).clone()
            elif theirs != ours:
                raise RelstitchError(
                    f"state dict was recorded for anchors {short(theirs)}, but this RelativeProjection "
                    f"projects onto anchors {short(ours)}",
                    hint="build the layer with the anchors the checkpoint was trained with",
                )
        super()._load_from_state_dict(
            dict(state_dict), prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class RelativeHead(nn.Module):
    """A relative decoder ready to train: a :class:`RelativeProjection` followed by one of the authors'
    heads from relstitch's registry (``vision-head``, ``text-head`` or ``conv-decoder``).

    ``head_args`` are the head's own arguments (``num_classes``, ``hidden``; ``out_channels``); its input
    size is the projection's output. ``save_decoder(head, path, task=...)`` saves it as a relstitch
    decoder that needs no code: the head by its registry name, the projection and anchor hash beside it.
    """

    def __init__(self, projection: RelativeProjection, head: str = "vision-head", **head_args: Any) -> None:
        super().__init__()
        self.projection = projection
        self.architecture: dict[str, Any] = {
            "name": head,
            "args": {"in_dim": projection.output_dim, **head_args},
        }
        self.head: nn.Module = create_decoder(head, **self.architecture["args"])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Task output of the latents ``z [B, D]`` (the projection, then the head)."""
        out: torch.Tensor = self.head(self.projection(z))
        return out


__all__ = ["RelativeHead", "RelativeProjection"]

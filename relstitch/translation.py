"""Latent space translation: the baseline relative stitching is measured against (Maiorca et al. 2023).

Instead of a relative decoder, fit a map from encoder i's absolute space to encoder j's on the
anchors only (both encoders embed the same anchor inputs), map i's latents with it, and feed decoder
j's own *absolute* head. As the paper does (Moschella et al. 2023):

1. standard-scale each space with its own anchors' statistics (mean and std per dimension). Other
   ``scaling`` choices: ``isotropic`` (center, then divide by one number, the anchors' RMS distance to
   their mean: a rotation + rescaling + shift between the spaces is then recovered exactly by
   ``procrustes``, which per-dimension scaling does not guarantee), ``center`` and ``none``;
2. zero-pad the smaller space so both have ``P = max(D_i, D_j)`` dimensions;
3. fit the map on the k anchor pairs with one of :data:`METHODS`:

   - ``procrustes``: the orthogonal R minimising ``|X R - Y|`` (SVD of ``XᵀY = U S Vᵀ``, ``R = U Vᵀ``; with
     fewer anchors than dimensions, ``U_r V_rᵀ`` over the rank r of ``XᵀY``: zero off the anchors' span);
   - ``lstsq``: unconstrained least squares (minimum-norm solution when k < P);
   - ``lstsq-ortho``: the least-squares matrix made orthogonal (its polar factor, ``U Vᵀ`` of its SVD);
   - ``affine``: ``x R + b`` fitted by gradient descent as the authors do (Adam, lr 1e-3, 300 full-batch
     steps from a seeded ``nn.Linear`` initialisation). Being early-stopped gradient descent, it is
     *not* the least-squares optimum: that is :data:`lstsq` (plus a bias, which the centering of step 1
     already makes zero);

4. map, drop the padding, and undo the standard scaling with encoder j's anchor statistics.

Row-vector convention throughout: latents are rows, a map is applied as ``x @ R``.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from .anchor_set import Anchors
from .components import Decoder, Encoder
from .data import Dataset
from .encoding import DEFAULT_BATCH, BatchSize, EncodedSpace, Placement, embed, encode, inputs_for
from .errors import RelstitchError, RelstitchWarning, UsageError, unknown_choice
from .io.artifacts import short
from .progress import ProgressFn, silent
from .projection import anchor_statistics, standardise
from .results import PairResult
from .stitching import decode_and_score, encoder_space_of, scored_pair

METHODS = ("procrustes", "lstsq", "lstsq-ortho", "affine")
SCALINGS = ("standard", "isotropic", "center", "none")
AFFINE_STEPS, AFFINE_LR = 300, 1e-3
# Singular values of xᵀy below this fraction of the largest count as zero. float64 rounding leaves the
# true zeros near eps·s_max (measured ~3e-16 relative on exp 3); real directions weaker than 1e-9 of the
# strongest carry no usable signal for a map fitted on k anchors either.
RANK_RTOL = 1e-9


@dataclass
class Translation:
    """A fitted map from a source space to a target space, scaling included."""

    method: str
    matrix: torch.Tensor  # [P, P]
    bias: torch.Tensor | None  # [P] (affine only)
    source_mean: torch.Tensor | None
    source_std: torch.Tensor | None
    target_mean: torch.Tensor | None
    target_std: torch.Tensor | None
    source_dim: int
    target_dim: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Map source latents ``[N, D_source]`` to target latents ``[N, D_target]``."""
        if x.shape[1] != self.source_dim:
            raise RelstitchError(f"translation expects {self.source_dim}-d latents, got {x.shape[1]}-d")
        z = (
            _pad(
                standardise(x.to(self.matrix.dtype), self.source_mean, self.source_std), self.matrix.shape[0]
            )
            @ self.matrix
        )
        if self.bias is not None:
            z = z + self.bias
        z = z[:, : self.target_dim]
        if self.target_std is not None:
            z = z * self.target_std
        if self.target_mean is not None:
            z = z + self.target_mean
        return z


def _pad(x: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad columns up to ``width`` (the smaller space gets dimensions that are always 0)."""
    return x if x.shape[1] == width else torch.nn.functional.pad(x, (0, width - x.shape[1]))


def procrustes(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The orthogonal ``R`` minimising ``|x @ R - y|_F`` (x, y: ``[k, P]``), made unique when k < P.

    ``R`` is the polar factor of ``xᵀy`` (:func:`_polar`): ``U Vᵀ`` when the anchors span the space; when
    they do not, ``U_r V_rᵀ`` on their span and zero off it (orthogonal on the span only). Computed on one
    thread, so its bytes do not depend on the caller's thread count.
    """
    with _one_thread():
        return _polar(x.T @ y)[0]


def _polar(matrix: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The polar factor ``U_r V_rᵀ`` of a square ``matrix`` over its numerical rank r, and r.

    At full rank this is ``U Vᵀ``, the orthogonal polar factor, unique. At rank r < P (k anchors in P ≥ k
    dimensions: ``xᵀy`` has rank ≤ k, or k - 1 once centred) only the part on the span the anchors
    determine is unique: the singular vectors of the zero singular values are whatever basis LAPACK's
    path produces, and with them the translation changed with the thread count (exp 3: 84.3/77.2 with
    one thread, 84.5/77.1 with two). ``U_r V_rᵀ`` is unique (whatever basis LAPACK picks inside repeated
    singular values), and off the span the map is zero: a partial isometry, the minimum-norm choice,
    which claims nothing the anchors do not show. The alternative, completing it with the orthogonal map
    between the complements closest to the identity, keeps ``R`` orthogonal and a self-translation
    exactly ``I``, but that identity is meaningless between two encoders: stitched accuracy was lower in
    every k < P case measured (exp 3: 77.5 vs 77.8; zoo CNNs, 8-40 of 64-d: by 0.04-1.3 points).
    """
    u, s, vh = torch.linalg.svd(matrix)
    rank = _rank_of(s)
    return u[:, :rank] @ vh[:rank], rank


def _rank_of(singular_values: torch.Tensor) -> int:
    """The numerical rank of a matrix from its singular values (descending): those above
    :data:`RANK_RTOL` of the largest."""
    s = singular_values
    return int((s > RANK_RTOL * s[0]).sum()) if len(s) and s[0] > 0 else 0


def _affine(x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on the mean squared error of ``x R + b`` (the authors' SGD affine translator).

    Starts from a seeded ``nn.Linear`` initialisation, as they do; PyTorch's Adam (betas 0.9/0.999, eps 1e-8).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the initialisation of nn.Linear is the only randomness
        layer = torch.nn.Linear(x.shape[1], y.shape[1], dtype=x.dtype)
    with _one_thread():
        return _adam(x, y, layer.weight.detach().T.contiguous(), layer.bias.detach().clone())


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run a k x P fit on one thread (torch's thread count is process-wide: restored after).

    For the affine fit's 300 tiny steps, handing work to a second thread costs more than the arithmetic,
    and on a busy machine many times more (measured 0.2 s vs 12 s on 2 loaded cores); for the SVD and
    lstsq fits, one thread also makes LAPACK's result the same bytes at any thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _adam(
    x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``AFFINE_STEPS`` full-batch ``torch.optim.Adam`` steps on ``mean((x W + b - y)^2)``, updating
    ``weight``/``bias``.

    The gradient is written out (two matmuls) rather than taken by autograd, whose per-step overhead
    dominated these tiny fits on the CPU; the update is torch's own Adam.
    """
    optimiser = torch.optim.Adam([weight, bias], lr=AFFINE_LR)
    scale = 2.0 / y.numel()  # d mean((xW + b - y)^2) / d residual
    for _ in range(AFFINE_STEPS):
        residual = (x @ weight + bias - y) * scale
        weight.grad, bias.grad = x.T @ residual, residual.sum(0)
        optimiser.step()
    weight.grad = bias.grad = None
    return weight, bias


def check_scaling(scaling: str | None, methods: Sequence[str | None]) -> str:
    """``--translation-scaling`` checked: a known scaling, and only where one of ``methods`` is a translation
    (silently ignoring it would mislead); None means the paper's ``standard``."""
    if scaling is None:
        return "standard"
    if not any(m in METHODS for m in methods):
        raise UsageError(
            f"--translation-scaling only means something with a translation --method ({', '.join(METHODS)})"
        )
    if scaling not in SCALINGS:
        raise unknown_choice("--translation-scaling", scaling, SCALINGS)
    return scaling


def fit_translation(
    source_anchors: torch.Tensor,
    target_anchors: torch.Tensor,
    method: str = "procrustes",
    *,
    scaling: str = "standard",
    seed: int = 0,
) -> Translation:
    """Fit a map from the source space to the target space on paired anchor latents ``[k, D_s]``,
    ``[k, D_t]``."""
    if method not in METHODS:
        raise unknown_choice("translation method", method, METHODS)
    if scaling not in SCALINGS:
        raise unknown_choice("scaling", scaling, SCALINGS)
    if source_anchors.ndim != 2 or target_anchors.ndim != 2 or len(source_anchors) != len(target_anchors):
        raise RelstitchError(
            f"translation needs the same anchors in both spaces: got {tuple(source_anchors.shape)} and "
            f"{tuple(target_anchors.shape)}",
            hint="embed one anchor file with both encoders",
        )
    # float64: the fits are k x P, tiny, and SVD/lstsq are more reliable in double precision.
    source, target = source_anchors.double(), target_anchors.double()
    s_mean, s_std = anchor_statistics(source, scaling)
    t_mean, t_std = anchor_statistics(target, scaling)
    width = max(source.shape[1], target.shape[1])
    x, y = _pad(standardise(source, s_mean, s_std), width), _pad(standardise(target, t_mean, t_std), width)
    bias, rank = None, None
    if method == "affine":
        matrix, bias = _affine(x, y, seed)
    else:
        with (
            _one_thread()
        ):  # LAPACK's result depends on the thread count: one thread, the same bytes everywhere
            if method == "procrustes":
                matrix, rank = _polar(x.T @ y)
            else:  # gelsd: the minimum-norm solution, zero off the anchors' span like procrustes below k < P
                fitted = torch.linalg.lstsq(x, y, driver="gelsd")
                matrix, rank = fitted.solution, int(fitted.rank)
                if method == "lstsq-ortho":
                    matrix, rank = _polar(matrix)
    determined = min(source.shape[1], target.shape[1])  # zero padding adds no dimension to determine
    if rank is not None and rank < determined:
        warnings.warn(
            _underdetermined(
                method, x, y, rank, determined, source.shape[1], target.shape[1], t_mean is not None
            ),
            RelstitchWarning,
            stacklevel=2,
        )
    return Translation(method, matrix, bias, s_mean, s_std, t_mean, t_std, source.shape[1], target.shape[1])


def _underdetermined(
    method: str,
    x: torch.Tensor,
    y: torch.Tensor,
    rank: int,
    determined: int,
    source_dim: int,
    target_dim: int,
    centred: bool,
) -> str:
    """The warning for a map fitted on ``x``, ``y`` (the scaled, padded anchors) that is determined on
    ``rank`` of ``determined`` dimensions only, saying why: fewer anchors than dimensions (more anchors
    would help), or anchors enough but latents that vary in fewer directions (more anchors would not)."""
    k = len(x)
    lands = "on the target anchors' mean" if centred else "at the origin"
    if (k - 1 if centred else k) < determined:  # k centred points span k - 1 dimensions at most
        return (
            f"translation ({method}): the {k} anchors determine the map on {rank} of {determined} latent "
            f"dimensions only (their span); off it, latents land {lands} — use more anchors than dimensions "
            "to determine it fully"
        )
    latents = "centred latents" if centred else "latents"
    with _one_thread():
        spans = [
            (_rank_of(torch.linalg.svdvals(z)), name, dim)
            for z, name, dim in ((x, "source", source_dim), (y, "target", target_dim))
        ]
    span, space, dim = min(spans)
    why = (
        f"the {k} anchors' {latents} span only {span} of the {space} space's {dim} dimensions (enough "
        "anchors to span them all: the latents themselves vary in fewer directions)"
        if span < determined
        else f"the two spaces' anchor {latents} share only {rank} directions"
    )
    return (
        f"translation ({method}): the map is determined on {rank} of {determined} latent dimensions only: "
        f"{why}; off that span, latents land {lands}"
    )


def evaluate_translation(
    space: EncodedSpace,
    target_anchor_absolute: torch.Tensor,
    decoder: Decoder,
    method: str,
    dataset: Dataset | None = None,
    *,
    encoder_space: str | None = None,
    scaling: str = "standard",
    seed: int = 0,
    keep_predictions: bool = False,
) -> PairResult:
    """Score ``decoder`` (absolute) on ``space`` mapped into the space of the decoder's own encoder.

    ``target_anchor_absolute`` are the anchor latents of the decoder's own encoder (the same anchor
    inputs as ``space``'s). Errors raise; the matrix records them. With ``keep_predictions`` the result
    carries the per-sample predictions.
    """
    started = time.perf_counter()
    if decoder.space != "absolute":
        raise RelstitchError(
            f"translation ({method}) feeds an absolute decoder, but {decoder.name!r} reads relative vectors",
            path=decoder.path,
            hint="use an absolute decoder, or --method relative",
        )
    if target_anchor_absolute.shape[1] != decoder.input_dim:
        raise RelstitchError(
            f"decoder {decoder.name!r} reads {decoder.input_dim}-d latents but its encoder's anchors are "
            f"{target_anchor_absolute.shape[1]}-d",
            path=decoder.path,
        )
    translation = fit_translation(
        space.anchor_absolute, target_anchor_absolute, method, scaling=scaling, seed=seed
    )
    mapped = translation(space.latents()).float()
    scores, kept = decode_and_score(decoder, mapped, space.labels, dataset, keep=keep_predictions)
    return scored_pair(
        space, decoder, scores, started, encoder_space, space_name="absolute", method=method, kept=kept
    )


def target_anchor_latents(
    target: Encoder | EncodedSpace,
    decoder: Decoder,
    anchors: Anchors | None,
    anchor_hash: str,
    *,
    batch_size: BatchSize = DEFAULT_BATCH,
    progress: ProgressFn = silent,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The anchor latents of ``target``, the decoder's own encoder (checked by hash): the space a translation
    maps into. Precomputed embeddings hold them (computed with the anchors ``anchor_hash`` names, or
    refused); an encoder embeds ``anchors`` now."""
    name, target_hash = (
        (target.encoder_name, target.encoder_hash)
        if isinstance(target, EncodedSpace)
        else (target.name, target.hash)
    )
    if decoder.encoder_hash != target_hash:
        raise RelstitchError(
            f"decoder {decoder.name!r} was trained on encoder {short(decoder.encoder_hash)}, "
            f"but the target encoder {name!r} is {short(target_hash)}",
            path=target.path,
            hint="pass the decoder's own encoder with --target-encoder",
        )
    if isinstance(target, EncodedSpace):
        if target.anchor_hash != anchor_hash:
            raise RelstitchError(
                f"the target embeddings were computed with anchors {short(target.anchor_hash)}, the source's "
                f"with {short(anchor_hash)}",
                path=target.path,
                hint="encode both with one anchor file",
            )
        return target.anchor_absolute
    if anchors is None:
        raise UsageError(f"encoder {target.name!r} embeds the anchors: pass the anchor file with --anchors")
    return embed(
        target,
        inputs_for(target, anchors),
        batch_size=batch_size,
        progress=progress,
        description=f"{target.name}: anchors",
        device=device,
        dtype=dtype,
    )


def stitch_translated(
    encoder: Encoder | EncodedSpace,
    decoder: Decoder,
    anchors: Anchors | None,
    dataset: Dataset | None,
    method: str,
    *,
    target_encoder: Encoder | EncodedSpace,
    scaling: str = "standard",
    batch_size: BatchSize = DEFAULT_BATCH,
    keep_predictions: bool = False,
    progress: ProgressFn = silent,
    encoder_space: str | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> PairResult:
    """``stitch`` through a translation: ``encoder``'s latents mapped into ``target_encoder``'s space
    (the decoder's own encoder, checked by hash) on ``anchors``, then ``decoder``'s absolute head.

    Either side may be precomputed embeddings (their anchor latents and vectors read, not computed; the
    caller checks that the source's are of ``dataset``, which is then optional); an encoder to run needs
    ``anchors`` and, for the source, ``dataset``. ``encoder_space``: the bottleneck precomputed vectors'
    encoder was trained with, for the result (an encoder's own is read from it).
    """
    if method not in METHODS:
        raise unknown_choice("translation method", method, METHODS)
    if decoder.space != "absolute":
        raise RelstitchError(
            f"translation ({method}) feeds an absolute decoder, but {decoder.name!r} reads relative vectors",
            path=decoder.path,
            hint="use an absolute decoder, or --method relative",
        )
    if isinstance(encoder, Encoder) and (anchors is None or dataset is None):
        raise UsageError(
            f"encoder {encoder.name!r} needs the anchors and the data: pass --anchors and --data"
        )
    started = time.perf_counter()
    on: Placement = {"device": device, "dtype": dtype}
    source_anchors = (
        encoder.anchor_hash if isinstance(encoder, EncodedSpace) else anchors.hash if anchors else ""
    )
    target_anchors = target_anchor_latents(
        target_encoder, decoder, anchors, source_anchors, batch_size=batch_size, progress=progress, **on
    )
    if isinstance(encoder, EncodedSpace):
        space = encoder
    else:
        assert anchors is not None and dataset is not None  # checked above
        space = encode(encoder, anchors, dataset, batch_size=batch_size, progress=progress, **on)
        encoder_space = encoder_space_of(encoder)
    result = evaluate_translation(
        space,
        target_anchors,
        decoder,
        method,
        dataset,
        encoder_space=encoder_space,
        scaling=scaling,
        keep_predictions=keep_predictions,
    )
    result.seconds = time.perf_counter() - started
    return result

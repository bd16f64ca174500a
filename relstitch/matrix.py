"""The encoder × decoder matrix: every pairing scored, each encoder run exactly once.

Encoders are loaded and encoded one at a time (data and anchors once each), then every decoder reads
the cached space; the encoder is dropped once encoded, and its space once its row is scored, so memory
holds one encoder and one encoded space at a time. A pair that cannot run (wrong anchors, unequal latent
sizes, a broken file) is recorded with its reason and the run goes on, unless ``fail_fast``.

One loop on the caller's thread: with real encoders, scoring a row is well under 1 % of the run, so
overlapping it with the next encoder saves nothing measurable (docs/PERFORMANCE.md, "Machinery on
real-size encoders").
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .anchor_set import Anchors
from .checkpoints import default_name
from .components import Decoder, Encoder
from .controls import SHUFFLED_ANCHORS, shuffled_anchor_space
from .data import Dataset
from .encoding import DEFAULT_BATCH, BatchSize, EncodedSpace, Placement, embed, inputs_for
from .errors import RelstitchError, UsageError, os_error, unknown_choice
from .hygiene import warn_zero_norm, zero_norm_count
from .io.artifacts import short
from .io.cache import cached_encode, prepare_cache
from .metrics import DIRECTIONS, MAIN_METRIC
from .progress import ProgressFn, silent
from .results import PairResult
from .stitching import encoder_space_of, evaluate_pair
from .translation import METHODS as TRANSLATIONS
from .translation import SCALINGS, evaluate_translation

if TYPE_CHECKING:
    import torch

    from .distributed import Group

NATIVE_METHODS = ("relative", "absolute")
"""Methods that feed a decoder what it was trained on: its own space, no translation."""


@dataclass
class MatrixResult:
    """All pairs of a matrix run, plus what is needed to render and reproduce it."""

    encoders: list[dict[str, Any]]
    decoders: list[dict[str, Any]]
    pairs: list[PairResult]
    task: str
    main_metric: str
    anchors: dict[str, Any]
    dataset: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, list[int]] = field(default_factory=dict)  # under torchrun: which ranks encoded whom

    def cell(self, encoder: str, decoder: str, method: str | None = None) -> PairResult | None:
        """The pair of ``encoder`` and ``decoder`` under ``method`` (default: the decoder's own space)."""
        return next(
            (
                p
                for p in self.pairs
                if p.encoder == encoder
                and p.decoder == decoder
                and (p.method == method if method else p.method == p.space)
            ),
            None,
        )


@dataclass(frozen=True)
class BrokenDecoder:
    """A decoder file that could not be loaded: in a matrix, a failed column with ``error`` in every cell."""

    name: str
    path: str
    error: str
    space: str | None = (
        None  # from the file's header when it is readable, to place the column under its method
    )


def load_decoders(
    refs: Sequence[Decoder | BrokenDecoder | str | os.PathLike[str]],
    *,
    fail_fast: bool = False,
    trust_code: bool = False,
) -> list[Decoder | BrokenDecoder]:
    """Load decoder files (loaded decoders pass through); one that fails becomes a :class:`BrokenDecoder`.

    With ``fail_fast`` the first failure raises instead, naming the file. ``trust_code``: a decoder of a
    user's own module may import its recorded factory (:func:`relstitch.checkpoints.load_decoder`).
    """
    from .checkpoints import load_decoder  # noqa: PLC0415

    out: list[Decoder | BrokenDecoder] = []
    for ref in refs:
        if isinstance(ref, (Decoder, BrokenDecoder)):
            out.append(ref)
            continue
        try:
            out.append(load_decoder(ref, trust_code=trust_code))
        except (RelstitchError, OSError) as exc:
            if fail_fast:
                raise
            reason = str(os_error(exc) if isinstance(exc, OSError) else exc)
            out.append(BrokenDecoder(default_name(ref), os.fspath(ref), reason, _header_space(ref)))
    return out


def _header_space(path: str | os.PathLike[str]) -> str | None:
    """The space a decoder file's header declares, when the header can be read and names a known one."""
    from .io.artifacts import read_header  # noqa: PLC0415

    try:
        space = read_header(path).metadata.get("space")
    except (RelstitchError, OSError):
        return None
    return space if space in NATIVE_METHODS else None


def distinct_names(names: Sequence[str], paths: Sequence[str | None]) -> list[str]:
    """``names`` with each shared one told apart: by as many of its file's parent folders as it takes
    (``zooA/cnn-rel-s0``, ``zooB/cnn-rel-s0``), then by position where that is not enough (``zooB/x [2]``).

    A report keys its matrices by these names, so two checkpoints under one name would show one's
    score in the other's cell; the result is unique, and unchanged where names already were.
    """
    out = list(names)
    for name in dict.fromkeys(names):
        clash = [i for i, n in enumerate(names) if n == name]
        if len(clash) < 2:
            continue
        parents = [Path(path).parent.parts if (path := paths[i]) else () for i in clash]
        depth = next(
            (
                d
                for d in range(1, max(map(len, parents), default=0) + 1)
                if len({p[-d:] for p in parents}) == len(parents)
            ),
            1,
        )
        for i, p in zip(clash, parents):
            out[i] = "/".join((*p[-depth:], name))
    counts = {n: out.count(n) for n in out}
    seen: dict[str, int] = {}
    for i, label in enumerate(out):
        if counts[label] > 1:  # the same folder too (or another's own name): number them
            seen[label] = seen.get(label, 0) + 1
            out[i] = f"{label} [{seen[label]}]"
    return out


def _named_apart(columns: list[Decoder | BrokenDecoder]) -> list[Decoder | BrokenDecoder]:
    """The decoders, renamed (copies) where names are shared, so every column name is one decoder."""
    import dataclasses  # noqa: PLC0415

    names = distinct_names([d.name for d in columns], [str(d.path) if d.path else None for d in columns])
    return [d if d.name == n else dataclasses.replace(d, name=n) for d, n in zip(columns, names)]


def _rows_named_apart(infos: list[dict[str, Any]], rows: list[list[PairResult]]) -> list[PairResult]:
    """Row-major pairs, encoders that share a name told apart in their ``encoders`` entry and their pairs."""
    names = distinct_names([i["name"] for i in infos], [i.get("path") for i in infos])
    for info, row, name in zip(infos, rows, names):
        if name != info["name"]:
            info["renamed_from"], info["name"] = info["name"], name
            for pair in row:
                pair.encoder = name
    return [pair for row in rows for pair in row]


def _decoder_info(d: Decoder | BrokenDecoder, own_name: str) -> dict[str, Any]:
    """A decoder's entry in the result (and the report): identity, contract, or why it could not be loaded;
    ``renamed_from`` its own name when another decoder shared it."""
    info: dict[str, Any]
    if isinstance(d, BrokenDecoder):
        info = {
            "name": d.name,
            "path": d.path,
            "hash": None,
            "space": d.space,
            "architecture": None,
            "seed": None,
            "error": d.error,
        }
    else:
        info = {
            "name": d.name,
            "path": str(d.path) if d.path else None,
            "hash": d.hash,
            "space": d.space,
            "input_dim": d.input_dim,
            "encoder_hash": d.encoder_hash,
            "anchor_hash": d.anchor_hash,
            "projection": d.projection.to_dict() if d.projection else None,
            "architecture": d.architecture.get("name"),
            "seed": _training(d.meta).get("seed"),
            "encoder_architecture": (_training(d.meta).get("config") or {}).get("arch"),
        }
    if own_name != d.name:
        info["renamed_from"] = own_name
    return info


def eval_matrix(
    encoder_paths: Sequence[str | os.PathLike[str]],
    decoders: Sequence[Decoder | BrokenDecoder | str | os.PathLike[str]],
    anchors: Anchors,
    dataset: Dataset,
    *,
    batch_size: BatchSize = DEFAULT_BATCH,
    fail_fast: bool = False,
    progress: ProgressFn = silent,
    cache: str | os.PathLike[str] | None = None,
    load: Callable[[str | os.PathLike[str]], Encoder | EncodedSpace] | None = None,
    methods: Sequence[str] = NATIVE_METHODS,
    null_baseline: bool = False,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    translation_scaling: str = "standard",
    trust_code: bool = False,
    group: Group | None = None,
) -> MatrixResult:
    """Score every encoder with every decoder on ``dataset`` through ``anchors``.

    ``encoder_paths``: references; a ``str`` is read as typed (``hf:DIR#pooling=mean``), a ``Path`` is a
    file and never parsed (a glob's match: :func:`relstitch.refs.expand_references`).
    ``decoders``: loaded decoders or decoder files; one that cannot be loaded (:func:`load_decoders`)
    is a failed column, its reason in every cell, as an encoder that fails is a failed row. Encoders
    or decoders that share a name are told apart (:func:`distinct_names`), so every name in the result
    stands for one checkpoint.
    ``cache``: a folder of embeddings files keyed by encoder, anchors and data (:mod:`relstitch.io.cache`);
    an encoder found there is not run at all.
    ``load``: turns each reference into an encoder or precomputed embeddings (default: any model source
    of :mod:`relstitch.adapters` with default options).
    ``methods``: ``relative`` scores every relative decoder, ``absolute`` every absolute decoder as is,
    and each translation method (:data:`relstitch.translation.METHODS`) every absolute decoder through a
    map from the row's encoder into the space of the decoder's own encoder, which must be among
    ``encoder_paths`` (found by its hash; the cell says why when it is not). ``null_baseline`` adds,
    for every relative and translation pair, the control with the encoder's anchors shuffled
    (method ``<method>-null``, ``control="shuffled-anchors"``).
    ``device``/``dtype``: where and in which precision the encoders run (as ``encode``'s, from
    :func:`~relstitch.encoding.resolve_device`; default: where each encoder is, float32). The heads run
    on the CPU, on the float32 vectors.
    ``translation_scaling``: how each space is scaled before a translation is fitted
    (:data:`relstitch.translation.SCALINGS`; the paper's ``standard`` by default).
    ``trust_code``: checkpoints of users' own modules may import the factories they record (the default
    ``load`` and the decoder files; a given ``load`` decides for the encoders itself).
    ``group``: under torchrun (:func:`relstitch.distributed.from_env`), rank r encodes encoders r, r+W, ...
    into ``cache``, a folder every rank can read (with more ranks than encoders, the spare ranks split an
    encoder's data: :func:`encoder_ranks`), and rank 0 scores every row as a single process does
    (:func:`_run_rows_sharded`); the other ranks return a result with no encoders and no pairs.
    """
    from functools import partial  # noqa: PLC0415

    from .adapters import load_encoder_ref

    if not encoder_paths or not decoders:
        raise RelstitchError("an eval-matrix needs at least one encoder and one decoder")
    load = load or partial(load_encoder_ref, trust_code=trust_code)
    given = load_decoders(decoders, fail_fast=fail_fast, trust_code=trust_code)
    columns = _named_apart(given)
    loaded = [d for d in columns if isinstance(d, Decoder)]
    plan = _plan(columns, methods, null_baseline)
    if (
        translation_scaling not in SCALINGS
    ):  # refused before any encoder runs, not at the first translated pair
        raise unknown_choice("translation scaling", translation_scaling, SCALINGS)
    needs_targets = any(m in TRANSLATIONS for _, m, _ in plan)
    on: Placement = {"device": device, "dtype": dtype}
    sharded = group is not None and group.world > 1
    if sharded and cache is None:
        raise UsageError("under torchrun, eval-matrix needs a cache folder every rank can read (--cache DIR)")
    scores_here = group is None or group.rank == 0  # under torchrun only rank 0 scores
    targets = (
        _own_encoder_anchors(encoder_paths, anchors, load, batch_size, **on)
        if needs_targets and scores_here
        else {}
    )
    tasks = {d.task["type"] for d in loaded} or {"classification"}  # no decoder loaded: every cell says why
    if len(tasks) > 1:
        raise RelstitchError(f"decoders mix tasks {sorted(tasks)}: run one matrix per task")
    task = tasks.pop()
    if cache is not None:
        prepare_cache(cache)  # a bad --cache is the user's mistake: refuse it before any work
    started = time.perf_counter()
    job = _Job(
        plan,
        anchors,
        dataset,
        cache,
        load or load_encoder_ref,
        batch_size,
        fail_fast,
        null_baseline,
        targets,
        on,
        translation_scaling,
    )
    if sharded:
        assert group is not None  # sharded says so
        done = _run_rows_sharded(job, encoder_paths, progress, group)
        if done is None:  # not rank 0: its rows are in the cache for rank 0 to score
            return MatrixResult([], [], [], task, MAIN_METRIC[task], {}, dataset.describe())
        encoders_info, rows, encode_seconds = done
    else:
        encoders_info, rows, encode_seconds = _run_rows(job, encoder_paths, progress)
    pairs = _rows_named_apart(encoders_info, rows)
    teams = encoder_ranks(len(encoder_paths), group.world) if sharded and group is not None else []
    return MatrixResult(
        encoders=encoders_info,
        decoders=[_decoder_info(d, own.name) for d, own in zip(columns, given)],
        pairs=pairs,
        task=task,
        main_metric=MAIN_METRIC[task],
        anchors={
            "path": str(anchors.path) if anchors.path else None,
            "hash": anchors.hash,
            "count": len(anchors),
            "strategy": anchors.meta.get("strategy"),
            "seed": anchors.meta.get("seed"),
        },
        dataset=dataset.describe(),
        timings={"total_seconds": time.perf_counter() - started, "encode_seconds": encode_seconds},
        ranks={info["name"]: ranks for info, ranks in zip(encoders_info, teams)},
    )


@dataclass(frozen=True)
class _Job:
    """What every row of one matrix run shares."""

    plan: _Plan
    anchors: Anchors
    dataset: Dataset
    cache: str | os.PathLike[str] | None
    load: Callable[[str | os.PathLike[str]], Encoder | EncodedSpace]
    batch_size: BatchSize
    fail_fast: bool
    null_baseline: bool
    targets: dict[str, Any]
    on: Placement  # device and dtype of the encoders
    scaling: str = "standard"  # of the spaces before a translation is fitted


@dataclass
class _Row:
    """One encoder's row: its ``encoders`` entry, then its space to score, or the pairs it failed with."""

    info: dict[str, Any]
    encode_seconds: float = 0.0
    space: EncodedSpace | None = None
    name: str = ""
    hash: str | None = None
    encoder_space: str | None = None
    failed: list[PairResult] = field(default_factory=list)
    precomputed: bool = False  # embeddings read from a file: nothing ran, nothing went to the cache


_Rows = tuple[list[dict[str, Any]], list[list[PairResult]], float]
"""``encoders`` entries, each row's pairs in column order, seconds spent loading and encoding."""


def _encode_row(
    job: _Job, path: str | os.PathLike[str], progress: ProgressFn, team: Group | None = None
) -> _Row | None:
    """Load and encode one encoder; a RelstitchError (or an OSError) gives a failed row.

    ``team`` (under torchrun, when there are more ranks than encoders): the ranks that encode this
    encoder together, each a shard of whole batches of the data, into its one cache entry
    (:func:`relstitch.io.cache.cached_encode`). The row is returned on the team's first rank, None on the
    others.
    """
    from .adapters.precomputed import as_encoder, check_precomputed

    together = team if team is not None and team.distributed else None
    t0 = time.perf_counter()
    try:
        encoder = _load_agreed(job, path, together) if together else job.load(path)
        if isinstance(encoder, EncodedSpace):  # precomputed: nothing to run, must be of this data
            if team is not None and team.rank != 0:
                return None
            space = check_precomputed(encoder, job.dataset.hash)
            return _encoded_row(job, path, as_encoder(space), space, t0, from_cache=False, precomputed=True)
        found = cached_encode(
            encoder,
            job.anchors,
            job.dataset,
            job.cache,  # a sharded run always has one
            batch_size=job.batch_size,
            progress=progress,
            group=together,
            **job.on,
        )
        if found is None:  # a spare rank: its shard is in the entry its team's first rank read back
            return None
        space, from_cache = found
    except (RelstitchError, OSError) as exc:
        if job.fail_fast:
            raise
        if team is not None and team.rank != 0:
            return None
        exc = (
            os_error(exc) if isinstance(exc, OSError) else exc
        )  # a path too long, a loop: one line in its row
        return _failed_row(job, path, str(exc))
    return _encoded_row(job, path, encoder, space, t0, from_cache=from_cache)


def _load_agreed(job: _Job, path: str | os.PathLike[str], team: Group) -> Encoder | EncodedSpace:
    """``job.load(path)`` on every rank of ``team``; if it fails on any, it fails on all with that reason
    (so no rank goes on to wait for a shard that will never come)."""
    loaded: Encoder | EncodedSpace | None = None
    failed: str | None = None
    try:
        loaded = job.load(path)
    except (RelstitchError, OSError) as exc:
        failed = str(os_error(exc) if isinstance(exc, OSError) else exc)
    reason = team.first_error(failed)
    if reason is not None:
        raise RelstitchError(reason)
    assert loaded is not None  # no rank failed
    return loaded


def _encoded_row(
    job: _Job,
    path: str | os.PathLike[str],
    encoder: Encoder,
    space: EncodedSpace,
    t0: float,
    *,
    from_cache: bool,
    precomputed: bool = False,
) -> _Row:
    """The row of ``encoder``, encoded into ``space`` since ``t0``: its ``encoders`` entry and its space."""
    seconds = time.perf_counter() - t0
    encoder.latent_dim = encoder.latent_dim or space.absolute.shape[1]  # adapters learn it when they run
    encoder_space = encoder_space_of(encoder)
    # Zero-norm latents have no direction (cosine 0 by projection.EPS): counted per encoder for the report.
    zero_norm = zero_norm_count(space.absolute, space.anchor_absolute)
    warn_zero_norm(zero_norm, len(space.absolute), f"sample latents of {encoder.name!r}")
    info = {
        "name": encoder.name,
        "path": str(path),
        "hash": encoder.hash,
        "zero_norm_latents": zero_norm,
        "latent_dim": encoder.latent_dim,
        "trained_space": encoder_space,
        "architecture": encoder.architecture["name"],
        "seed": _training(encoder.meta).get("seed"),
        "encode_seconds": time.perf_counter() - t0,
        "from_cache": from_cache,
    }
    if space.dataset.get("read"):  # data with text views: which modality and view this encoder read
        info["reads"] = space.dataset["read"]
    if resolved := encoder.provenance().get("resolved"):  # the folder, snapshot, weights file it came from
        info["resolved"] = resolved
    return _Row(
        info, seconds, space, encoder.name, encoder.hash, encoder_space, precomputed=precomputed
    )  # the encoder itself is dropped here


def _failed_row(job: _Job, path: str | os.PathLike[str], error: str) -> _Row:
    """The row of an encoder that could not be loaded or encoded: ``error`` in every cell."""
    name = default_name(path)
    return _Row(
        {"name": name, "path": str(path), "error": error},
        failed=[
            PairResult(name, d.name, _cell_space(d, m), True, error=error, method=_label(m, c), control=c)
            for d, m, c in job.plan
        ],
    )


def _score_row(job: _Job, row: _Row) -> list[PairResult]:
    """Every planned pair of an encoded row, in column order."""
    if row.space is None:
        return row.failed
    shuffled = shuffled_anchor_space(row.space) if job.null_baseline else None
    pairs: list[PairResult] = []
    for decoder, method, control in job.plan:
        if isinstance(decoder, BrokenDecoder):  # a failed column: its reason in every cell
            pairs.append(
                PairResult(
                    row.name,
                    decoder.name,
                    _cell_space(decoder, method),
                    True,
                    error=decoder.error,
                    encoder_hash=row.hash,
                    encoder_space=row.encoder_space,
                    method=_label(method, control),
                    control=control,
                )
            )
            continue
        space = row.space
        if control:
            assert shuffled is not None  # controls are planned only with null_baseline
            space = shuffled
        try:
            pairs.append(
                _run_pair(
                    space, decoder, method, control, job.targets, job.dataset, row.encoder_space, job.scaling
                )
            )
        except RelstitchError as exc:
            if job.fail_fast:
                raise
            pairs.append(
                PairResult(
                    row.name,
                    decoder.name,
                    decoder.space,
                    decoder.encoder_hash != row.hash,
                    error=str(exc),
                    encoder_hash=row.hash,
                    decoder_hash=decoder.hash,
                    encoder_space=row.encoder_space,
                    method=_label(method, control),
                    control=control,
                )
            )
    return pairs


def _run_rows(job: _Job, encoder_paths: Sequence[str | os.PathLike[str]], progress: ProgressFn) -> _Rows:
    """Load, encode and score each encoder in turn."""
    infos: list[dict[str, Any]] = []
    pairs: list[list[PairResult]] = []
    seconds = 0.0
    for path in encoder_paths:
        row = _encode_row(job, path, progress)
        assert row is not None  # no team: every row comes back
        infos.append(row.info)
        seconds += row.encode_seconds
        pairs.append(_score_row(job, row))
        del row  # one encoded space in memory at a time
    return infos, pairs, seconds


def _run_rows_sharded(
    job: _Job, encoder_paths: Sequence[str | os.PathLike[str]], progress: ProgressFn, group: Group
) -> _Rows | None:
    """Under torchrun: rank r loads and encodes encoders r, r+W, ... (whole encoders) into the shared cache
    and leaves a record of each row (:func:`relstitch.io.cache.write_record`): its ``encoders`` entry, or why
    it failed. Rank 0 scores its own rows as it encodes them, then each other row as its record appears,
    its space read back from the cache: the same spaces and the same scoring as one process, so the same
    pairs. No collective waits on another rank's work (a long encoder never meets a timeout): a rank that
    fails with a relstitch error records it, and one that dies makes torchrun stop the others. With more
    ranks than encoders, the spare ranks split an encoder's data with its rank (:func:`encoder_ranks`).
    Returns None on every rank but 0.
    """
    from .distributed import split  # noqa: PLC0415
    from .encoding import load_embeddings  # noqa: PLC0415
    from .io.cache import (  # noqa: PLC0415
        entry_path,
        read_record,
        records_folder,
        remove_records,
        write_record,
    )

    assert job.cache is not None  # eval_matrix refuses a sharded run without one
    records = Path(group.broadcast(str(records_folder(job.cache))))  # rank 0 names it: one per run
    teams = encoder_ranks(len(encoder_paths), group.world)
    team = split(group, teams) if group.world > len(encoder_paths) else None
    done: dict[int, tuple[dict[str, Any], list[PairResult], float]] = {}
    for i in (i for i, ranks in enumerate(teams) if group.rank in ranks):
        row = _encode_row(job, encoder_paths[i], progress, team)
        if row is None:  # a spare rank: its shard is in the cache entry its team's first rank read back
            continue
        if group.rank == 0:
            done[i] = (row.info, _score_row(job, row), row.encode_seconds)
        else:
            write_record(records, i, _record_of(row))
        del row  # one encoded space in memory at a time
    if group.rank != 0:
        return None
    waiting = [i for i in range(len(encoder_paths)) if i not in done]
    while waiting:
        record = read_record(records, waiting[0])
        if record is None:  # its rank is still encoding (torchrun stops this rank if that one dies)
            time.sleep(0.05)
            continue
        i = waiting.pop(0)
        if record.get("error") is not None:
            row = _failed_row(job, encoder_paths[i], str(record["error"]))
        elif record.get("precomputed"):  # nothing was run: read the file here, as one process does
            read = _encode_row(job, encoder_paths[i], progress)
            assert read is not None  # no team: every row comes back
            row = read
        else:
            dtype = job.on.get("dtype")
            entry = entry_path(job.cache, record["hash"], job.anchors.hash, job.dataset.hash, dtype)
            space = load_embeddings(entry)
            space.encoder_name = record["name"]
            row = _Row(
                record["info"], record["seconds"], space, record["name"], record["hash"], record["space"]
            )
        done[i] = (row.info, _score_row(job, row), row.encode_seconds)
        del row
    remove_records(records)
    ordered = [done[i] for i in range(len(encoder_paths))]
    return [r[0] for r in ordered], [r[1] for r in ordered], sum(r[2] for r in ordered)


def encoder_ranks(encoders: int, world: int) -> list[list[int]]:
    """Which ranks encode each encoder under torchrun: rank r encoders r, r+W, ... when there are at least
    as many encoders as ranks; with more ranks, each encoder i its rank i and the spare ranks i+E, i+2E, ...
    (E encoders), which split its data between them (the first of each list writes the row)."""
    if encoders >= world:
        return [[i % world] for i in range(encoders)]
    return [list(range(i, world, encoders)) for i in range(encoders)]


def _record_of(row: _Row) -> dict[str, Any]:
    """What rank 0 needs of a row another rank encoded (its space is in the cache, found by its hash)."""
    if row.space is None:
        return {"info": row.info, "error": str(row.info.get("error"))}
    return {
        "info": row.info,
        "error": None,
        "name": row.name,
        "hash": row.hash,
        "space": row.encoder_space,
        "seconds": row.encode_seconds,
        "precomputed": row.precomputed,
    }


_Plan = list[tuple["Decoder | BrokenDecoder", str, str | None]]


def _plan(decoders: Sequence[Decoder | BrokenDecoder], methods: Sequence[str], null_baseline: bool) -> _Plan:
    """Which (decoder, method, control) cells a row gets, in column order: decoders, then methods.

    A decoder that could not be loaded gets the cells its space would have (the first method asked for
    when its space is unknown: one failed cell per encoder), so its failure shows where it belongs.
    """
    unknown = [m for m in methods if m not in (*NATIVE_METHODS, *TRANSLATIONS)]
    if unknown or not methods:
        raise unknown_choice("method", ",".join(unknown) or "(none)", (*NATIVE_METHODS, *TRANSLATIONS))
    plan: _Plan = []
    for decoder in decoders:
        for method in dict.fromkeys(methods):  # keep order, drop repeats
            if decoder.space is None:  # broken beyond its header: one column, under the first method
                plan.append((decoder, method, None))
                break
            if method == decoder.space or (method in TRANSLATIONS and decoder.space == "absolute"):
                plan.append((decoder, method, None))
                if (
                    null_baseline and method != "absolute"
                ):  # raw absolute pairs use no anchors: nothing to shuffle
                    plan.append((decoder, method, SHUFFLED_ANCHORS))
    fits = any(isinstance(d, Decoder) for d, _, _ in plan)
    if not fits and any(isinstance(d, Decoder) for d in decoders):  # all broken: a matrix of reasons instead
        raise RelstitchError(
            f"no decoder fits method(s) {', '.join(methods)}",
            hint="relative needs relative decoders; absolute and translations need absolute ones",
        )
    return plan


def _cell_space(decoder: Decoder | BrokenDecoder, method: str) -> str:
    """The space a cell feeds its decoder: the decoder's own, else (unknown) the one ``method`` feeds."""
    return decoder.space or ("relative" if method == "relative" else "absolute")


def _label(method: str, control: str | None) -> str:
    """The method name a pair is reported under: a control gets its own matrix (``relative-null``)."""
    return f"{method}-null" if control else method


def _own_encoder_anchors(
    encoder_paths: Sequence[str | os.PathLike[str]],
    anchors: Anchors,
    load: Callable[[str | os.PathLike[str]], Encoder | EncodedSpace] | None,
    batch_size: BatchSize,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Anchor latents of every loadable encoder, by encoder hash: the targets translations map into.

    A cheap first pass (k anchors per encoder), so any row can map into any decoder's own encoder
    whatever the order of the encoders; what fails to load is skipped here and reported by the main loop.
    """
    from .adapters import load_encoder_ref

    targets: dict[str, Any] = {}
    for path in encoder_paths:
        try:
            loaded = (load or load_encoder_ref)(path)
            if isinstance(loaded, EncodedSpace):  # precomputed: its anchor latents are in the file
                if loaded.anchor_hash == anchors.hash:
                    targets[loaded.encoder_hash] = loaded.anchor_absolute
                continue
            targets[loaded.hash] = embed(
                loaded, inputs_for(loaded, anchors), batch_size=batch_size, device=device, dtype=dtype
            )
        except RelstitchError:
            continue
    return targets


def _run_pair(
    space: EncodedSpace,
    decoder: Decoder,
    method: str,
    control: str | None,
    targets: dict[str, Any],
    dataset: Dataset,
    encoder_space: str | None,
    scaling: str = "standard",
) -> PairResult:
    if method in TRANSLATIONS:
        target = targets.get(decoder.encoder_hash or "")
        if target is None:
            raise RelstitchError(
                f"{method} maps into the space of decoder {decoder.name!r}'s own encoder "
                f"({short(decoder.encoder_hash)}), "
                "which is not among the encoders given",
                hint="add that encoder with --encoders",
            )
        result = evaluate_translation(
            space, target, decoder, method, dataset, encoder_space=encoder_space, scaling=scaling
        )
    else:
        result = evaluate_pair(space, decoder, dataset, encoder_space)
    result.method, result.control = _label(method, control), control
    return result


def _training(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``training`` metadata of a checkpoint (seed, config), or {} for one relstitch did not train."""
    training = meta.get("training")
    return training if isinstance(training, dict) else {}


def metric_direction(metric: str) -> str:
    return DIRECTIONS.get(metric, "higher")

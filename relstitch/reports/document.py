"""The JSON report: build it from a matrix run, write it, load it back (migrating older versions).

Layout (schema version :data:`SCHEMA_VERSION`, documented field by field in
``relstitch/schemas/report.schema.json``): provenance (config, environment, hashes of anchors,
dataset, encoders and decoders), metric directions, the main score, the evaluation data's baselines
(chance and majority-class accuracy), one matrix per method and metric, every pair, the failed pairs,
the aggregated table, and ``run``. Only ``run`` (date, command
line, timings) changes between two runs of the same command, so reports can be diffed.

The derived parts (matrices, failed pairs, aggregate, main score) are computed from the pairs by one
function, :func:`_assemble`, used both for fresh runs and for migrated old reports.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import platform
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from statistics import mean, stdev
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..errors import RelstitchError, UsageError, os_error
from ..io.atomic import atomic_write
from .schema import schema_errors

if TYPE_CHECKING:  # the matrix module imports torch; re-rendering a saved report must not.
    from ..data import Dataset
    from ..matrix import MatrixResult

SCHEMA_NAME = "relstitch-report"
SCHEMA_VERSION = 3
MAIN_METHOD = "relative"  # the paper's method; its stitched mean is the report's main score
SETTINGS = ("not stitched", "stitched", "stitched (cross-space)")
ALL = "all"  # the group label that pools every group
PACKAGES = ("torch", "torchvision", "transformers", "safetensors", "typer", "rich")


def _clean(value: Any) -> Any:
    """JSON has no Infinity/NaN: store them as strings so the file stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def is_score(value: Any) -> bool:
    """A finite number (not a stored "inf"/"nan" string, not null)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pair_method(pair: Any) -> str:
    """A pair's method: its own ``method`` field when it has one, else the decoder's space."""
    method = pair.get("method") if isinstance(pair, dict) else getattr(pair, "method", None)
    chosen: str = method or (pair["space"] if isinstance(pair, dict) else pair.space)
    return chosen


def crosses_space(pair: dict[str, Any]) -> bool:
    """A native pair (method = the decoder's space) whose encoder was trained with the other bottleneck.

    Translations and controls are never cross-space: they map into the decoder's own space by design.
    """
    encoder_space = pair.get("encoder_space")
    return bool(
        pair["stitched"]
        and pair["method"] == pair["space"]
        and encoder_space is not None
        and encoder_space != pair["space"]
    )


def setting_of(pair: dict[str, Any]) -> str:
    """not stitched (the diagonal), stitched, or stitched across bottlenecks (neither the method nor its
    control)."""
    if not pair["stitched"]:
        return "not stitched"
    return "stitched (cross-space)" if pair["cross_space"] else "stitched"


# --------------------------------------------------------------------------------------- baselines
def label_baselines(labels: Iterable[int], classes: Sequence[str]) -> dict[str, Any] | None:
    """What an accuracy is worth on data with these labels: the scores of two guessers that never look.

    ``chance``: 1 / the number of classes (a uniform random guess, expected); ``majority``: the share of
    the samples in the most frequent class (always answering it; on a tie, the first such class), whose
    name is ``majority_class``. None for unlabelled data (no class names or no samples).
    """
    counts = Counter(labels)
    total = sum(counts.values())
    if not classes or not total:
        return None
    top = min(counts, key=lambda label: (-counts[label], label))
    return {
        "metric": "accuracy",
        "samples": total,
        "classes": len(classes),
        "chance": 1 / len(classes),
        "majority": counts[top] / total,
        "majority_class": str(classes[top]) if 0 <= top < len(classes) else str(top),
    }


# ------------------------------------------------------------------------------------------ groups
def parse_groups(specs: list[str] | None) -> list[tuple[str, str]]:
    """``["cnn-*=cnn", "vit-b=vit"]`` → ``[("cnn-*", "cnn"), ("vit-b", "vit")]`` (patterns are globs)."""
    parsed = []
    for spec in specs or []:
        pattern, sep, group = spec.partition("=")
        if not sep or not pattern.strip() or not group.strip():
            raise UsageError(f"--group {spec!r}: expected NAME=GROUP (NAME may be a glob such as 'cnn-*')")
        parsed.append((pattern.strip(), group.strip()))
    return parsed


def check_groups(groups: list[tuple[str, str]], names: list[str]) -> None:
    """Refuse a ``--group`` pattern that names no encoder or decoder (a typo would silently do nothing)."""
    for pattern, group in groups:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise UsageError(
                f"--group {pattern}={group} matches no encoder or decoder; "
                f"names are: {', '.join(sorted(set(names)))}"
            )


def _override(name: str, groups: list[tuple[str, str]]) -> str | None:
    # The last matching option wins, as with repeated command-line options elsewhere.
    found = None
    for pattern, group in groups:
        if fnmatch.fnmatchcase(name, pattern):
            found = group
    return found


def label_checkpoints(
    encoders: list[dict[str, Any]], decoders: list[dict[str, Any]], groups: list[tuple[str, str]]
) -> None:
    """Give every encoder and decoder a ``group`` and a ``seed`` (in place).

    Encoder group: ``--group``, else its architecture (``architecture.name`` in its metadata).
    Decoder group: ``--group``, else the group of the encoder it was trained with when that encoder is
    in the matrix, else the encoder architecture recorded in its training config, else its own
    architecture. A decoder belongs with its encoder: a head named ``vision-head`` says nothing about
    which family's space it reads.
    """
    check_groups(groups, [e["name"] for e in encoders] + [d["name"] for d in decoders])
    for e in encoders:
        e["group"] = _override(e["name"], groups) or e.get("architecture") or "unknown"
        e.setdefault("seed", None)
    by_hash = {e["hash"]: e for e in encoders if e.get("hash")}
    for d in decoders:
        own = by_hash.get(d.get("encoder_hash") or "")
        trained_with = d.pop("encoder_architecture", None)  # an input to the label, not part of the report
        d["group"] = (
            _override(d["name"], groups)
            or (own["group"] if own else None)
            or trained_with
            or d.get("architecture")
            or "unknown"
        )
        if d.get("seed") is None:
            d["seed"] = own.get("seed") if own else None


# ------------------------------------------------------------------------------------ derived parts
def _methods(pairs: list[dict[str, Any]]) -> list[str]:
    """Methods present: the main method first, the others as first seen, each control right after its
    method."""
    base: dict[str, str] = {}
    for p in pairs:
        # a control is reported as "<method>-null" (matrix._label); it sorts with the method it controls
        base.setdefault(p["method"], p["method"].removesuffix("-null") if p.get("control") else p["method"])
    first = list(dict.fromkeys(base.values()))
    return sorted(base, key=lambda m: (base[m] != MAIN_METHOD, first.index(base[m]), m != base[m]))


def _matrices(
    pairs: list[dict[str, Any]],
    encoders: list[str],
    decoders: list[str],
    methods: list[str],
    metrics: list[str],
) -> dict[str, Any]:
    index = {
        (p["encoder"], p["decoder"], p["method"]): p for p in reversed(pairs)
    }  # first pair wins on duplicates
    out: dict[str, Any] = {}
    for method in methods:
        columns = [d for d in decoders if any((e, d, method) in index for e in encoders)]
        values = {}
        for metric in metrics:
            values[metric] = [
                [
                    (p["scores"].get(metric) if (p := index.get((e, d, method))) and not p["error"] else None)
                    for d in columns
                ]
                for e in encoders
            ]
        out[method] = {"rows": list(encoders), "columns": columns, "values": values}
    return out


def _aggregate(
    pairs: list[dict[str, Any]],
    encoders: list[dict[str, Any]],
    decoders: list[dict[str, Any]],
    methods: list[str],
    metrics: list[str],
) -> list[dict[str, Any]]:
    """Mean ± sample std per (method, setting, encoder group → decoder group, metric), plus the pooled
    ``all``."""
    egroup = {e["name"]: e["group"] for e in encoders}
    dgroup = {d["name"]: d["group"] for d in decoders}
    buckets: dict[tuple[str, str, str, str, str], list[float]] = {}
    for p in pairs:
        if p["error"]:
            continue
        for metric, value in p["scores"].items():
            if not is_score(value):
                continue  # an infinite PSNR would swallow the mean; it stays visible in the matrix
            setting = setting_of(p)
            for eg, dg in (
                (ALL, ALL),
                (egroup.get(p["encoder"], "unknown"), dgroup.get(p["decoder"], "unknown")),
            ):
                buckets.setdefault((p["method"], setting, eg, dg, metric), []).append(value)
    order = {m: i for i, m in enumerate(methods)}

    def key(k: tuple[str, str, str, str, str]) -> tuple[Any, ...]:
        method, setting, eg, dg, metric = k
        return (
            order.get(method, len(order)),
            SETTINGS.index(setting),
            (eg, dg) != (ALL, ALL),
            eg,
            dg,
            metric,
        )

    return [
        {
            "method": k[0],
            "setting": k[1],
            "encoder_group": k[2],
            "decoder_group": k[3],
            "metric": k[4],
            "n": len(v),
            "mean": mean(v),
            "std": stdev(v) if len(v) > 1 else None,
        }
        for k, v in sorted(buckets.items(), key=lambda kv: key(kv[0]))
    ]


def _main_score(
    pairs: list[dict[str, Any]], methods: list[str], metric: str, direction: str
) -> dict[str, Any]:
    method = methods[0] if methods else None
    values = [
        p["scores"][metric]
        for p in pairs
        if p["method"] == method
        and not p["error"]
        and setting_of(p) == "stitched"
        and is_score(p["scores"].get(metric))
    ]
    return {
        "metric": metric,
        "direction": direction,
        "method": method,
        "setting": "stitched",
        "value": mean(values) if values else None,
        "n": len(values),
    }


def _assemble(
    *,
    relstitch_version: str,
    task: str,
    main_metric: str,
    directions: dict[str, str],
    config: dict[str, Any],
    environment: dict[str, Any],
    anchors: dict[str, Any],
    dataset: dict[str, Any],
    encoders: list[dict[str, Any]],
    decoders: list[dict[str, Any]],
    pairs: list[dict[str, Any]],
    run: dict[str, Any],
    baselines: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The full document, derived parts computed from ``pairs`` (shared by build and migration)."""
    for role, items in (("encoders", encoders), ("decoders", decoders)):
        names = [item["name"] for item in items]
        shared = sorted({n for n in names if names.count(n) > 1})
        # the matrices are keyed by name: one name for two checkpoints would show one's score as the other's
        if shared:
            raise RelstitchError(
                f"the report names two {role} {shared[0]!r}, so its matrices cannot tell them apart",
                hint="run eval-matrix again: it now tells checkpoints that share a name apart",
            )
    metrics = sorted({m for p in pairs for m in p["scores"]} | {main_metric})
    methods = _methods(pairs)
    direction = {m: directions.get(m, "higher") for m in metrics}
    report: dict[str, Any] = _clean(
        {
            "schema": SCHEMA_NAME,
            "schema_version": SCHEMA_VERSION,
            "relstitch_version": relstitch_version,
            "task": task,
            "main_metric": main_metric,
            "metrics": {m: {"direction": direction[m]} for m in metrics},
            "main_score": _main_score(pairs, methods, main_metric, direction[main_metric]),
            "baselines": baselines if task == "classification" else None,
            "config": config,
            "environment": environment,
            "anchors": anchors,
            "dataset": dataset,
            "encoders": encoders,
            "decoders": decoders,
            "methods": methods,
            "matrices": _matrices(
                pairs, [e["name"] for e in encoders], [d["name"] for d in decoders], methods, metrics
            ),
            "pairs": pairs,
            "failed_pairs": [
                {"encoder": p["encoder"], "decoder": p["decoder"], "method": p["method"], "error": p["error"]}
                for p in pairs
                if p["error"]
            ],
            "aggregate": _aggregate(pairs, encoders, decoders, methods, metrics),
            "run": run,
        }
    )
    return report


def environment() -> dict[str, Any]:
    """Python, platform and the versions of the packages that shape the numbers (no imports needed)."""
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": packages}


def _distinct(items: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for item in items:
        seen.setdefault(json.dumps(item, sort_keys=True), item)
    return list(seen.values())


# ------------------------------------------------------------------------------------------- build
def build_report(
    result: MatrixResult,
    *,
    config: dict[str, Any],
    command: list[str] | None = None,
    groups: list[tuple[str, str]] | None = None,
    dataset: Dataset | None = None,
) -> dict[str, Any]:
    """The JSON report of a matrix run (schema version :data:`SCHEMA_VERSION`).

    ``config`` is what the caller chose (data, limit, batch size, device, dtype, paths); the anchor
    identity, projections, methods and groups are filled in from the run. ``groups`` are
    ``(glob, group)`` overrides of the group labels read from the checkpoints' metadata. ``dataset`` is
    the data the run scored: its labels give a classification report its ``baselines``
    (:func:`label_baselines`); without it they are null.
    """
    from ..matrix import metric_direction  # noqa: PLC0415  (imports torch; already loaded by the run)

    if dataset is not None and dataset.hash != result.dataset.get("hash"):
        raise ValueError(f"build_report: {dataset.name} is not the data the run scored")  # a caller's bug
    groups = groups or []
    pairs: list[dict[str, Any]] = []
    run_pairs: list[dict[str, Any]] = []
    for p in result.pairs:
        row = {k: v for k, v in p.to_dict().items() if k != "seconds"}
        row["method"] = pair_method(p)
        row["cross_space"] = crosses_space(row)
        pairs.append(row)
        run_pairs.append(
            {"encoder": p.encoder, "decoder": p.decoder, "method": row["method"], "seconds": p.seconds}
        )
    volatile = ("encode_seconds", "from_cache")  # differ between two runs of one command: they go under run
    encoders = [{k: v for k, v in e.items() if k not in volatile} for e in result.encoders]
    decoders = [dict(d) for d in result.decoders]
    label_checkpoints(encoders, decoders, groups)
    full_config = {
        "data": None,
        "limit": None,
        "batch_size": None,
        "device": "cpu",
        "dtype": "float32",
        "anchors": result.anchors.get("path"),
    }
    full_config.update(config)
    full_config.update(
        projections=_distinct([d["projection"] for d in result.decoders if d.get("projection")]),
        methods=config.get("methods") or _methods(pairs),
        groups=[{"pattern": p, "group": g} for p, g in groups],
        encoders=config.get("encoders") or [e["path"] for e in result.encoders],
        decoders=config.get("decoders") or [d["path"] for d in result.decoders],
    )
    metrics = {m for p in pairs for m in p["scores"]} | {result.main_metric}
    return _assemble(
        relstitch_version=__version__,
        task=result.task,
        main_metric=result.main_metric,
        directions={m: metric_direction(m) for m in metrics},
        config=full_config,
        environment=environment(),
        anchors=result.anchors,
        dataset=result.dataset,
        encoders=encoders,
        decoders=decoders,
        pairs=pairs,
        baselines=label_baselines(dataset.y.tolist(), dataset.classes) if dataset is not None else None,
        run={
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": list(command) if command is not None else [_program(sys.argv[0]), *sys.argv[1:]],
            "timings": dict(result.timings),
            "pair_seconds": run_pairs,
            "encode_seconds": {e["name"]: e.get("encode_seconds") for e in result.encoders},
            "from_cache": {e["name"]: bool(e.get("from_cache")) for e in result.encoders},
        },
    )


def _program(argv0: str) -> str:
    """The program's name as a user would type it: not the venv path, not ``__main__.py`` of ``python -m``."""
    name = Path(argv0).name
    return "relstitch" if name == "__main__.py" and Path(argv0).parent.name == "relstitch" else name


def report_json(report: dict[str, Any]) -> str:
    """The report as text: two-space indent, keys in schema order, a final newline."""
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def write_json(report: dict[str, Any], path: str | os.PathLike[str], *, force: bool = False) -> None:
    atomic_write(path, report_json(report), force=force)


# ------------------------------------------------------------------------------------ load/migrate
def _migrate_v1(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 (relstitch 0.1.0's first reports): one mixed matrix, no methods, groups or seeds."""
    pairs = []
    for p in doc["pairs"]:
        row = dict(p)
        row["method"] = row.get("method") or row["space"]
        row["cross_space"] = crosses_space(row)
        pairs.append(row)
    encoders = [dict(e, seed=None) for e in doc["encoders"]]
    decoders = [dict(d, architecture=None, seed=None) for d in doc["decoders"]]
    label_checkpoints(encoders, decoders, [])
    old_run = doc.get("run", {})
    seconds = old_run.get("pair_seconds", {})
    config = dict(doc.get("config", {}))
    # Schema-1 reports came from a pipeline that only ran on the CPU in float32.
    config = {
        "data": config.get("data", doc["dataset"].get("name")),
        "limit": config.get("limit"),
        "batch_size": config.get("batch_size", 256),
        "device": "cpu",
        "dtype": "float32",
        "anchors": config.get("anchors", doc["anchors"].get("path")),
        "projections": _distinct([d["projection"] for d in decoders if d.get("projection")]),
        "methods": _methods(pairs),
        "groups": [],
        "encoders": config.get("encoders", [e.get("path") or e["name"] for e in encoders]),
        "decoders": config.get("decoders", [d.get("path") or d["name"] for d in decoders]),
    }
    old_env = doc.get("environment", {})
    env = {
        "python": old_env.get("python", "unknown"),
        "platform": old_env.get("platform", "unknown"),
        "packages": {"torch": old_env.get("torch")},
    }
    return _assemble(
        relstitch_version=doc.get("relstitch_version", "unknown"),
        task=doc["task"],
        main_metric=doc["main_metric"],
        directions={m: v["direction"] for m, v in doc.get("metrics", {}).items()},
        config=config,
        environment=env,
        anchors=doc["anchors"],
        dataset=doc["dataset"],
        encoders=encoders,
        decoders=decoders,
        pairs=pairs,
        run={
            "date": old_run.get("date", ""),
            "command": [str(c) for c in old_run.get("command", [])],
            "timings": old_run.get("timings", {}),
            "pair_seconds": [
                {
                    "encoder": p["encoder"],
                    "decoder": p["decoder"],
                    "method": p["method"],
                    "seconds": seconds.get(f"{p['encoder']}|{p['decoder']}"),
                }
                for p in pairs
            ],
            "encode_seconds": old_run.get("encode_seconds", {}),
        },
    )


def _migrate_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 (relstitch 0.1.0 on, before baselines): no ``baselines``; the labels they come from are not
    in the report, so null (unknown), as in a reconstruction report."""
    return dict(doc, schema_version=SCHEMA_VERSION, baselines=None)


MIGRATIONS = {1: _migrate_v1, 2: _migrate_v2}


def _shape_errors(doc: dict[str, Any]) -> list[str]:
    """What a schema cannot say: every method has a matrix, and every grid is rows × columns."""
    errors = []
    if set(doc["methods"]) != set(doc["matrices"]):
        errors.append(f"$.methods {doc['methods']} and $.matrices {sorted(doc['matrices'])} disagree")
    for method, matrix in doc["matrices"].items():
        shape = (len(matrix["rows"]), len(matrix["columns"]))
        for metric, grid in matrix["values"].items():
            if len(grid) != shape[0] or any(len(row) != shape[1] for row in grid):
                errors.append(f"$.matrices.{method}.values.{metric} is not {shape[0]} × {shape[1]}")
    for metric in {doc["main_metric"], *(m for p in doc["pairs"] for m in p["scores"])} - set(doc["metrics"]):
        errors.append(f"$.metrics has no direction for {metric!r}")
    return errors


def upgrade_report(doc: Any, *, source: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Bring a report document to the current schema and validate it; refuse what cannot be read."""
    if not isinstance(doc, dict) or "schema_version" not in doc:
        raise RelstitchError("not a relstitch report (no schema_version field)", path=source)
    version = doc["schema_version"]
    if doc.get("schema", SCHEMA_NAME) != SCHEMA_NAME:
        raise RelstitchError(f"not a relstitch report (schema {doc.get('schema')!r})", path=source)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RelstitchError(f"invalid report schema_version {version!r}", path=source)
    if version > SCHEMA_VERSION:
        raise RelstitchError(
            f"report schema version {version} is newer than this relstitch reads ({SCHEMA_VERSION})",
            path=source,
            hint=f"upgrade relstitch (this is {__version__})",
        )
    if version < SCHEMA_VERSION:
        try:
            doc = MIGRATIONS[version](doc)
        except (KeyError, TypeError, AttributeError) as exc:
            raise RelstitchError(
                f"cannot migrate this schema-{version} report: field {exc} missing or malformed", path=source
            ) from None
    errors = schema_errors(doc) or _shape_errors(doc)
    if errors:
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise RelstitchError(
            f"report does not match schema {SCHEMA_VERSION}: {'; '.join(errors[:3])}{more}", path=source
        )
    return _rederived(doc, source)


DERIVED = ("metrics", "main_score", "methods", "matrices", "failed_pairs", "aggregate")
"""The parts of a report computed from its pairs: never taken from a file on trust."""


def _rederived(doc: dict[str, Any], source: str | os.PathLike[str] | None) -> dict[str, Any]:
    """``doc`` with its derived parts computed again from its pairs, as a fresh run computes them.

    A matrix edited by hand (or by a bug) would otherwise show a score that is not its pair's; the pairs
    are the record. A disagreement is said once, as a warning, and the pairs win.
    """
    fresh = _assemble(
        relstitch_version=doc["relstitch_version"],
        task=doc["task"],
        main_metric=doc["main_metric"],
        directions={m: v["direction"] for m, v in doc["metrics"].items()},
        config=doc["config"],
        environment=doc["environment"],
        anchors=doc["anchors"],
        dataset=doc["dataset"],
        encoders=doc["encoders"],
        decoders=doc["decoders"],
        pairs=doc["pairs"],
        run=doc["run"],
        baselines=doc["baselines"],
    )
    changed = [key for key in DERIVED if fresh[key] != doc[key]]
    if changed:
        import warnings  # noqa: PLC0415

        from ..errors import RelstitchWarning  # noqa: PLC0415

        where = f"{source}: " if source is not None else ""
        warnings.warn(
            RelstitchWarning(
                f"{where}the report's {', '.join(changed)} disagree with its pairs (edited?): "
                "shown as the pairs say"
            ),
            stacklevel=2,
        )
    return fresh


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a saved report (any supported schema version) as a current-version document."""
    from ..io import userfiles  # noqa: PLC0415  (torch-free, like this module)

    source = Path(path)
    try:  # bounded, regular files only: `report /dev/zero` or a FIFO is refused, not read forever
        text = userfiles.read_text(source, limit=userfiles.MAX_REPORT_BYTES, what="a JSON report")
    except FileNotFoundError:
        raise RelstitchError("no such report file", path=source) from None
    except OSError as exc:
        raise os_error(exc, source, "cannot read report") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RelstitchError(
            f"not valid JSON ({exc.msg} at line {exc.lineno})",
            path=source,
            hint="pass the --json file eval-matrix wrote",
        ) from None
    except (
        ValueError,
        RecursionError,
    ):  # an integer too long to convert, arrays nested past the parser's depth
        raise RelstitchError(
            "not a usable JSON report (a number too long or nesting too deep)", path=source
        ) from None
    return upgrade_report(doc, source=source)


def describe_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``relstitch inspect`` of a JSON report: what it scored, on what, with what result, and when.

    Shaped like :func:`relstitch.io.artifacts.describe` (path, kind, version, size, sha256, metadata) so the
    CLI prints both the same way; the report is read (and an older schema version migrated) first.
    """
    from ..io.artifacts import file_sha256  # noqa: PLC0415

    document = load_report(path)
    source = Path(path)
    main = document["main_score"]
    value = main.get("value")
    summary = {
        "task": document["task"],
        "main_score": (
            f"{main['metric']} {value:.4f} — mean over {main.get('n')} {main.get('setting')} "
            f"{main.get('method')} pairs"
            if isinstance(value, (int, float))
            else "none (no pair scored)"
        ),
        "baselines": (
            f"{b['metric']}: chance {b['chance']:.4f}, majority class {b['majority']:.4f}"
            if (b := document["baselines"])
            else None
        ),
        "methods": document["methods"],
        "encoders": [e["name"] for e in document["encoders"]],
        "decoders": [d["name"] for d in document["decoders"]],
        "pairs": len(document["pairs"]),
        "failed_pairs": len(document["failed_pairs"]),
        "dataset": {k: document["dataset"].get(k) for k in ("name", "size", "hash")},
        "anchors": {k: document["anchors"].get(k) for k in ("path", "count", "strategy", "hash")},
        "relstitch_version": document["relstitch_version"],
        "run": {k: document["run"].get(k) for k in ("date", "command")},
    }
    return {
        "path": str(source),
        "kind": "report",
        "version": document["schema_version"],
        "size_bytes": source.stat().st_size,
        "sha256": file_sha256(source),
        "tensors": {},
        "metadata": summary,
    }

"""The ``relstitch`` command line: a thin Typer layer over the library.

Each command parses its options, calls one library function, renders the result, and maps errors to
exit codes: 0 ok, 1 a relstitch error (one line on stderr naming the file and the fix), 2 bad usage.
Heavy modules (torch, transformers) are imported inside the commands, never at start-up.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from . import __version__

app = typer.Typer(
    name="relstitch",
    help="Zero-shot model stitching with relative representations.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_ANCHORS = "checkpoints/anchors.safetensors"


def _fail(message: str, code: int) -> typer.Exit:
    # Plain write, not rich: rich would wrap a long message over several lines.
    sys.stderr.write(f"error: {message}\n")
    return typer.Exit(code)


def handles_errors(command: F) -> F:
    """Turn relstitch errors and interruptions into one-line messages and exit codes."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .errors import RelstitchError

        try:
            return command(*args, **kwargs)
        except RelstitchError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise _fail("interrupted; no partial output was written", 130) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def progress_bar() -> Iterator[Any]:
    """A rich progress callback on a terminal; silent in pipes and CI."""
    from .progress import silent

    if not err_console.is_terminal:
        yield silent
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:

        def update(description: str, advance: int, total: int) -> None:
            if description not in tasks:
                tasks[description] = bar.add_task(description, total=total)
            bar.update(tasks[description], advance=advance)

        yield update


def zoo_dir() -> Path:
    """The shipped checkpoints: ``checkpoints/`` beside the package (source checkout) or here."""
    beside = Path(__file__).resolve().parent.parent / "checkpoints"
    return beside if beside.is_dir() else Path("checkpoints")


def expand(patterns: list[str], what: str) -> list[str]:
    """Expand globs (for shells that did not) and keep order; refuse patterns matching nothing."""
    from .errors import RelstitchError

    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise RelstitchError(f"no {what} matches {pattern!r}", hint="check the path or glob")
        paths.extend(m for m in matches if m not in paths)
    return paths


def _version(value: bool) -> None:
    if value:
        typer.echo(f"relstitch {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """Zero-shot model stitching with relative representations (Moschella et al., ICLR 2023)."""


# Shared option types, so every verb spells them the same way.
DataOpt = Annotated[str, typer.Option("--data", "-d", help="Dataset: builtin:train, builtin:test, idx:DIR[:split] or a folder.")]
AnchorsOpt = Annotated[Path, typer.Option("--anchors", "-a", help="Anchor file (from `relstitch anchors`).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Samples per forward pass.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Use only the first N samples.")]

# The projection option set, shared by every verb that builds relative vectors (train, encode).
_PROJ = "Projection"
SimilarityOpt = Annotated[str, typer.Option(
    "--similarity", rich_help_panel=_PROJ,
    help="cosine, angular, euclidean, l1 or linf (distances as negative distances); several comma-separated "
         "= product of invariances.")]
CenteringOpt = Annotated[str, typer.Option(
    "--centering", rich_help_panel=_PROJ, help="none, center (anchors' mean) or standard (anchors' mean and std per dimension).")]
NormalizationOpt = Annotated[str, typer.Option(
    "--normalization", rich_help_panel=_PROJ, help="Per-sample normalisation of each block of similarities: none, l2 or standard.")]
TopKOpt = Annotated[int | None, typer.Option(
    "--top-k", min=1, rich_help_panel=_PROJ, help="Keep the k largest similarities of each sample, zero the rest.")]


def projection_config(similarity: str, centering: str, normalization: str, top_k: int | None) -> Any:
    """The :class:`~relstitch.projection.ProjectionConfig` the projection options describe (exit 2 if invalid)."""
    from .errors import RelstitchError, UsageError
    from .projection import ProjectionConfig

    config = ProjectionConfig(similarity=similarity, centering=centering, normalization=normalization, top_k=top_k)
    try:
        config.validate()
    except RelstitchError as exc:
        raise UsageError(str(exc)) from None
    return config


@app.command()
@handles_errors
def anchors(
    output: Annotated[Path, typer.Argument(help="Anchor file to write (.safetensors).")],
    data: DataOpt = "builtin:train",
    count: Annotated[int, typer.Option("--count", "-k", min=1, help="Number of anchors.")] = 300,
    strategy: Annotated[str, typer.Option(help="uniform (random) or stratified (one per class in turn).")] = "uniform",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    force: ForceOpt = False,
) -> None:
    """Pick anchors from a dataset and write the anchor file."""
    from .anchors import save_anchors, select_anchors
    from .atomic import check_output
    from .data import load_dataset

    check_output(output, force=force)
    chosen = select_anchors(load_dataset(data), count, strategy, seed)
    save_anchors(chosen, output, force=force)
    console.print(f"wrote {output}: {len(chosen)} {strategy} anchors from {data} (seed {seed}), hash {chosen.hash[:12]}")


@app.command()
@handles_errors
def train(
    output: Annotated[str, typer.Argument(help="Output prefix: writes PREFIX.encoder.safetensors and PREFIX.decoder.safetensors.")],
    arch: Annotated[str, typer.Option(help="Encoder architecture: mlp, cnn, conv-ae, resnet18.")] = "cnn",
    task: Annotated[str, typer.Option(help="classification or reconstruction.")] = "classification",
    space: Annotated[str, typer.Option(help="Bottleneck: relative (the method) or absolute (the control).")] = "relative",
    anchors_file: Annotated[Path | None, typer.Option("--anchors", "-a", help="Anchor file (needed for relative).")] = None,
    data: DataOpt = "builtin:train",
    eval_data: Annotated[str, typer.Option(help="Held-out data scored after training.")] = "builtin:test",
    seed: Annotated[int, typer.Option(help="Random seed (weights and batch order).")] = 0,
    epochs: Annotated[int, typer.Option(min=1)] = 8,
    latent_dim: Annotated[int, typer.Option(min=1, help="Latent size of the encoder.")] = 64,
    batch_size: BatchOpt = 128,
    lr: Annotated[float, typer.Option(min=0.0, help="Adam learning rate.")] = 1e-3,
    similarity: SimilarityOpt = "cosine",
    centering: CenteringOpt = "none",
    normalization: NormalizationOpt = "none",
    top_k: TopKOpt = None,
    limit: LimitOpt = None,
    force: ForceOpt = False,
) -> None:
    """Train an encoder and a decoder end to end (relative or absolute bottleneck)."""
    from .anchors import load_anchors
    from .atomic import check_output
    from .checkpoints import DECODER_SUFFIX, ENCODER_SUFFIX, default_name, save_decoder, save_encoder
    from .data import load_dataset
    from .encoding import encode
    from .stitching import evaluate_pair
    from .training import TrainConfig
    from .training import train as train_models

    enc_out, dec_out = Path(output + ENCODER_SUFFIX), Path(output + DECODER_SUFFIX)
    check_output(enc_out, force=force)
    check_output(dec_out, force=force)
    config = TrainConfig(arch=arch, task=task, space=space, latent_dim=latent_dim, epochs=epochs,
                         batch_size=batch_size, lr=lr, seed=seed,
                         projection=projection_config(similarity, centering, normalization, top_k))
    config.validate()
    chosen = load_anchors(anchors_file) if anchors_file else None
    dataset, held_out = load_dataset(data, limit=limit), load_dataset(eval_data)
    name = default_name(enc_out)
    with progress_bar() as progress:
        encoder, decoder = train_models(dataset, chosen, config, name=name, progress=progress)
    result = evaluate_pair(encode(encoder, chosen, held_out), decoder, held_out)
    for checkpoint in (encoder, decoder):
        checkpoint.meta["training"]["eval"] = {"data": held_out.describe(), "scores": result.scores}
    save_encoder(encoder, enc_out, force=force)
    save_decoder(decoder, dec_out, force=force)
    scores = ", ".join(f"{k} {v:.4f}" for k, v in result.scores.items())
    console.print(f"wrote {enc_out} and {dec_out}; on {eval_data}: {scores}")


@app.command()
@handles_errors
def encode(
    encoder: Annotated[Path, typer.Argument(help="Encoder checkpoint.")],
    anchors_file: AnchorsOpt = Path(DEFAULT_ANCHORS),
    data: DataOpt = "builtin:test",
    output: Annotated[Path, typer.Option("--output", "-o", help="Embeddings file to write.")] = Path("embeddings.safetensors"),
    similarity: SimilarityOpt = "cosine",
    centering: CenteringOpt = "none",
    normalization: NormalizationOpt = "none",
    top_k: TopKOpt = None,
    batch_size: BatchOpt = 256,
    limit: LimitOpt = None,
    force: ForceOpt = False,
) -> None:
    """Embed a dataset and the anchors with an encoder → embeddings file (absolute + relative)."""
    from .anchors import load_anchors
    from .atomic import check_output
    from .checkpoints import load_encoder
    from .data import load_dataset
    from .encoding import encode as encode_space
    from .encoding import save_embeddings

    projection = projection_config(similarity, centering, normalization, top_k)
    check_output(output, force=force)
    chosen, model, dataset = load_anchors(anchors_file), load_encoder(encoder), load_dataset(data, limit=limit)
    with progress_bar() as progress:
        space = encode_space(model, chosen, dataset, batch_size=batch_size, progress=progress)
    save_embeddings(space, output, projection=projection, force=force)
    console.print(f"wrote {output}: {len(dataset)} samples, absolute {space.absolute.shape[1]}-d, "
                  f"relative {projection.output_dim(len(chosen))}-d ({projection.describe()})")


@app.command()
@handles_errors
def fit(
    embeddings: Annotated[Path, typer.Argument(help="Embeddings file (from `relstitch encode`).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Decoder checkpoint to write.")],
    space: Annotated[str, typer.Option(help="Train on relative or absolute vectors.")] = "relative",
    head: Annotated[str, typer.Option(help="Head architecture: vision-head or text-head.")] = "vision-head",
    hidden: Annotated[int, typer.Option(min=1, help="Hidden width of the head.")] = 128,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: BatchOpt = 64,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    seed: Annotated[int, typer.Option()] = 0,
    force: ForceOpt = False,
) -> None:
    """Train a task head on a frozen encoder's embeddings → decoder checkpoint."""
    from .atomic import check_output
    from .checkpoints import default_name, save_decoder
    from .encoding import load_embeddings
    from .projection import ProjectionConfig
    from .training import FitConfig
    from .training import fit as fit_head

    check_output(output, force=force)
    loaded = load_embeddings(embeddings)
    config = FitConfig(space=space, head=head, hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    projection = ProjectionConfig.from_dict(loaded.meta.get("projection")) if space == "relative" else None
    with progress_bar() as progress:
        decoder = fit_head(loaded, config, projection=projection, name=default_name(output), progress=progress)
    save_decoder(decoder, output, force=force)
    console.print(f"wrote {output}: {space} {head} on {len(loaded.labels)} samples, final train loss "
                  f"{decoder.meta['training']['final_train_loss']:.4f}")


@app.command()
@handles_errors
def stitch(
    encoder: Annotated[Path, typer.Argument(help="Encoder checkpoint.")],
    decoder: Annotated[Path, typer.Argument(help="Decoder checkpoint.")],
    anchors_file: AnchorsOpt = Path(DEFAULT_ANCHORS),
    data: DataOpt = "builtin:test",
    batch_size: BatchOpt = 256,
    limit: LimitOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Wire one encoder into one decoder (in memory) and report the task metrics."""
    from .anchors import load_anchors
    from .checkpoints import load_decoder, load_encoder
    from .data import load_dataset
    from .stitching import stitch as stitch_pair

    head, chosen = load_decoder(decoder), load_anchors(anchors_file)
    result = stitch_pair(load_encoder(encoder), head, chosen, load_dataset(data, limit=limit), batch_size=batch_size)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    kind = "stitched" if result.stitched else "not stitched (the decoder's own encoder)"
    scores = ", ".join(f"{k} {v:.4f}" for k, v in result.scores.items())
    console.print(f"{result.encoder} → {result.decoder} ({result.space}, {kind}): {scores}", markup=False)


@app.command("eval-matrix")
@handles_errors
def eval_matrix(
    encoders: Annotated[list[str] | None, typer.Option("--encoders", "-e", help="Encoder checkpoints or globs (repeatable).")] = None,
    decoders: Annotated[list[str] | None, typer.Option("--decoders", "-D", help="Decoder checkpoints or globs (repeatable).")] = None,
    anchors_file: Annotated[Path | None, typer.Option("--anchors", "-a", help="Anchor file [default: the shipped zoo's].")] = None,
    data: DataOpt = "builtin:test",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the long-form CSV here.")] = None,
    metric: Annotated[str | None, typer.Option(help="Metric shown in the table [default: the task's main metric].")] = None,
    batch_size: BatchOpt = 256,
    limit: LimitOpt = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failing pair.")] = False,
    force: ForceOpt = False,
) -> None:
    """Score every encoder with every decoder; the non-stitched diagonal is marked.

    With no arguments it runs on the built-in data and the shipped checkpoints.
    """
    from .anchors import load_anchors
    from .atomic import check_output
    from .checkpoints import load_decoder
    from .data import load_dataset
    from .errors import UsageError
    from .matrix import eval_matrix as run_matrix
    from .report import build_report, matrix_table, summary_table, write_csv, write_json

    for out in (json_out, csv_out):
        if out is not None:
            check_output(out, force=force)
    zoo = zoo_dir()
    encoder_paths = expand(encoders or [str(zoo / "*.encoder.safetensors")], "encoder")
    decoder_paths = expand(decoders or [str(zoo / "*.decoder.safetensors")], "decoder")
    heads = [load_decoder(p) for p in decoder_paths]
    chosen = load_anchors(anchors_file or zoo / "anchors.safetensors")
    dataset = load_dataset(data, limit=limit)
    with progress_bar() as progress:
        result = run_matrix(encoder_paths, heads, chosen, dataset, batch_size=batch_size, fail_fast=fail_fast,
                            progress=progress)
    known = {m for p in result.pairs for m in p.scores}
    if metric is not None and metric not in known:
        raise UsageError(f"unknown metric {metric!r} for this task; choose one of {', '.join(sorted(known))}")
    table, notes = matrix_table(result, metric)
    console.print(table)
    for note in notes:
        console.print(note, style="dim", soft_wrap=True)
    console.print(summary_table(result))
    config = {"data": data, "limit": limit, "batch_size": batch_size, "anchors": str(chosen.path),
              "encoders": encoder_paths, "decoders": decoder_paths}
    report = build_report(result, config=config)
    if json_out:
        write_json(report, json_out, force=force)
    if csv_out:
        write_csv(report, csv_out, force=force)
    if json_out or csv_out:
        console.print("wrote " + " and ".join(str(p) for p in (json_out, csv_out) if p))


@app.command()
@handles_errors
def inspect(
    file: Annotated[Path, typer.Argument(help="Any relstitch (or safetensors) file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Say what a file is: kind, tensors, metadata, hashes. Reads only the header."""
    from .artifacts import describe

    info = describe(file)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    from rich.table import Table

    console.print(f"[bold]{info['path']}[/bold]: relstitch [bold]{info['kind']}[/bold] file, format {info['version']}, "
                  f"{info['size_bytes']:,} bytes, sha256 {info['sha256'][:16]}…")
    tensors = Table("tensor", "dtype", "shape", title="tensors", title_justify="left")
    for name, t in info["tensors"].items():
        tensors.add_row(name, t["dtype"], "×".join(map(str, t["shape"])) or "scalar")
    console.print(tensors)
    meta = Table("key", "value", title="metadata", title_justify="left")
    for key, value in info["metadata"].items():
        text = json.dumps(value) if not isinstance(value, str) else value
        meta.add_row(key, text if len(text) <= 200 else text[:197] + "...")
    console.print(meta)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

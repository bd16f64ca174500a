"""The ``relstitch`` command line: a thin Typer layer over the library.

Each command parses its options, calls one library function, renders the result, and maps errors to
exit codes: 0 ok, 1 a relstitch error (one line on stderr naming the file and the fix), 2 bad usage.
Heavy modules (torch, transformers) are imported inside the commands, never at start-up.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, ParamSpec, TypeVar, overload

import typer
from rich.console import Console
from typer.core import TyperGroup

from ._version import __version__

if TYPE_CHECKING:  # the heavy modules stay out of start-up (see the module docstring)
    from .components import Encoder
    from .encoding import EncodedSpace
    from .evaluation import Precomputed
    from .refs import Reference
    from .results import PairResult


class OneLineErrors(TyperGroup):
    """Click's own usage errors (unknown option, bad value) as one ``error:`` line and exit 2, like
    relstitch's."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        run = functools.partial(
            super().main,
            args,
            prog_name,
            complete_var,
            standalone_mode=False,
            windows_expand_args=windows_expand_args,
            **extra,
        )
        if not standalone_mode:
            return run()
        try:
            code = run()
            sys.stdout.flush()  # here, not at interpreter exit, where a closed pipe could not be caught
        except BrokenPipeError:  # output piped into `head`: stop quietly, as Unix tools do
            sys.exit(quiet_broken_pipe())
        except SystemExit as done:
            # Click met the closed pipe itself (printing --help): it wrapped stdout, recognised by shape, and
            # exits 1; the same quiet exit as a command's instead
            if done.code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":
                sys.exit(quiet_broken_pipe())
            raise
        except typer.Abort:
            sys.stderr.write("error: aborted\n")
            sys.exit(1)
        except Exception as exc:
            # Typer vendors its own click, so its ClickException is recognised by shape, not by import.
            format_message, exit_code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
            if not (callable(format_message) and isinstance(exit_code, int)):
                raise  # a bug: keep its traceback
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed: not an error to restate
                sys.exit(exit_code)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            sys.stderr.write(f"error: {format_message()}{hint}".replace("\n", " ") + "\n")
            sys.exit(exit_code)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="relstitch",
    help="Zero-shot model stitching with relative representations.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts are plain: "[default: ...]" must not be read as markup
)
BROKEN_PIPE_EXIT = 141
"""Exit status when the reader of our output went away (``relstitch eval-matrix | head``): 128 + SIGPIPE,
what a shell reports for a Unix tool that SIGPIPE stopped."""


def quiet_broken_pipe() -> int:
    """After stdout's reader closed the pipe: point stdout at /dev/null (the interpreter's last flush must not
    fail again and complain) and return :data:`BROKEN_PIPE_EXIT`; nothing is printed."""
    with contextlib.suppress(OSError, ValueError):  # stdout already closed or detached: nothing to flush
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return BROKEN_PIPE_EXIT


class PipeConsole(Console):
    """A rich console that lets a closed pipe reach :func:`handles_errors` as a ``BrokenPipeError`` (rich's
    own handling exits 1, which reads as a failure, and skips the command's cleanup)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more to write to a reader that is gone
        raise BrokenPipeError


console = PipeConsole()
err_console = PipeConsole(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def _fail(message: str, code: int) -> typer.Exit:
    # Plain write, not rich: rich would wrap a long message over several lines.
    sys.stderr.write(f"error: {message}\n")
    return typer.Exit(code)


READS_ONLY = frozenset({"inspect", "report", "cache_ls", "cache_clear"})
"""Commands that only read headers and JSON, no model runs: the allocator tuning buys them nothing
(measured)."""


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn relstitch errors and interruptions into one-line messages and exit codes."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from .errors import RelstitchError, Terminated, os_error
        from .runtime import held_budget, tune_allocator

        if command.__name__ not in READS_ONLY:
            # before any tensor exists: freed activations are reused, not faulted back in per batch
            tune_allocator()
        try:
            if command.__name__ not in READS_ONLY:
                held_budget()  # RELSTITCH_MAX_HELD_MB checked before any work, not halfway through it
            with sigterm_as_interrupt(), warnings_as_lines():
                return command(*args, **kwargs)
        except RelstitchError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except BrokenPipeError:  # our reader went away (`| head`): stop quietly, as Unix tools do
            raise typer.Exit(quiet_broken_pipe()) from None
        except OSError as exc:  # a path the user chose: too long, a symlink loop, no permission... one line
            raise _fail(str(os_error(exc)), 1) from None
        except Terminated as exc:  # 128 + signal number, as a shell reports a killed process
            raise _fail("terminated; no partial output was written", 128 + exc.signal_number) from None
        except KeyboardInterrupt:
            raise _fail("interrupted; no partial output was written", 130) from None

    return wrapper


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Print each distinct :class:`~relstitch.errors.RelstitchWarning` once, as one ``warning:`` line on
    stderr."""
    import warnings

    from .errors import RelstitchWarning

    seen: set[str] = set()
    default_show = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *rest: Any, **kw: Any) -> None:
        if not issubclass(category, RelstitchWarning):
            default_show(message, category, *rest, **kw)
        elif str(message) not in seen:  # a matrix can raise one warning per pair: say it once
            seen.add(str(message))
            sys.stderr.write(f"warning: {str(message).replace(chr(10), ' ')}\n")

    with warnings.catch_warnings():
        warnings.simplefilter("always", RelstitchWarning)
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`~relstitch.errors.Terminated` (a KeyboardInterrupt),
    so temporary files are removed and the exit is the one-line message Ctrl-C gives."""
    import signal
    import threading

    from .errors import Terminated

    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return

    def raise_terminated(number: int, frame: object) -> None:
        # Ignore further SIGTERMs while unwinding: a second kill must not interrupt the cleanup itself.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated(number)

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def progress_bar() -> Iterator[Any]:
    """A progress callback drawing on stderr when it is a terminal (bar, done/total, samples/s, elapsed,
    time left); silent, not one byte, in pipes and CI. See :func:`relstitch.progress.terminal_bar`."""
    from .progress import terminal_bar

    with terminal_bar(err_console) as update:
        yield update


def anchors_or_zoo(anchors_file: Path | None) -> Path:
    """The anchor file the user named, else the shipped zoo's."""
    return anchors_file if anchors_file is not None else zoo_dir() / "anchors.safetensors"


BUILTIN_TEST = "builtin:test"
"""The data the demo scores on; the default ``--data`` wherever the inputs given are the built-in set's."""


def is_builtin(data: str) -> bool:
    """Whether a data reference (or a recorded data name) is the built-in set the zoo was trained on:
    ``builtin:train``/``builtin:test``, a ``[:N]`` subset too, without captions or other options."""
    return data.startswith("builtin:") and "#" not in data


def default_inputs(
    data: str | None,
    anchors_file: Path | None,
    *,
    needs_data: bool = True,
    needs_anchors: bool = True,
    recorded: Precomputed | None = None,
) -> tuple[str | None, Path | None]:
    """``--data`` and ``--anchors``, each one left out filled in with the built-in default only where it fits
    what was given, else one line naming the option to pass (exit 2).

    The data defaults to ``builtin:test`` when the anchor file given (and ``recorded``, the
    :class:`~relstitch.evaluation.Precomputed` record of precomputed embeddings among the models) comes from
    the built-in set; the anchors default to the zoo's when the data is the built-in set: never for data of
    your own, whose anchors the zoo's (built-in images) cannot be. What the command does not need
    (``needs_*`` False: precomputed embeddings carry it) stays as given, None included.
    """
    import shlex

    from .errors import UsageError

    if needs_data and data is None:
        if recorded is not None and not is_builtin(str(recorded.dataset.get("name"))):
            raise UsageError(
                f"the embeddings {recorded.path} were computed on data {recorded.data}, and the other models "
                "need that data to run on",
                hint="pass it with --data",
            )
        picked = _picked_from(anchors_file)
        if picked is not None and not is_builtin(picked):
            raise UsageError(
                f"the anchors {anchors_file} were picked from {picked}, not the built-in set, so the default "
                f"data ({BUILTIN_TEST}) does not go with them",
                hint="pass the data to score on with --data",
            )
        data = BUILTIN_TEST
    if needs_anchors and anchors_file is None:
        on = data if data is not None else str(recorded.dataset.get("name")) if recorded is not None else "?"
        if not is_builtin(on):
            hint = (
                f"make one with `relstitch anchors anchors.safetensors --data {shlex.quote(on)}` and pass "
                "--anchors anchors.safetensors"
                if data is not None
                else "pass the anchor file the embeddings were computed with (--anchors)"
            )
            raise UsageError(
                f"data {on} needs an anchor file of its own (the zoo's anchors are built-in images)",
                hint=hint,
            )
        anchors_file = anchors_or_zoo(None)
    return data, anchors_file


def _picked_from(anchors_file: Path | None) -> str | None:
    """The name of the data an anchor file records it was picked from (its header only); None when it is not
    given, not readable (its loader will say why) or silent about it."""
    from .errors import RelstitchError
    from .io.artifacts import read_header

    if anchors_file is None:
        return None
    try:
        picked = read_header(anchors_file).metadata.get("dataset")
    except (RelstitchError, OSError):
        return None
    name = picked.get("name") if isinstance(picked, dict) else None
    return name if isinstance(name, str) else None


def _other_anchors(given: Path, zoo: Path) -> bool:
    """Whether an anchor file records another content hash than the zoo's (headers only; a file that cannot
    be read is not known to differ: its loader says what is wrong with it)."""
    from .errors import RelstitchError
    from .io.artifacts import read_header

    try:
        return bool(read_header(given).metadata.get("hash") != read_header(zoo).metadata.get("hash"))
    except (RelstitchError, OSError):
        return False


def zoo_dir() -> Path:
    """The shipped checkpoints: ``checkpoints/`` beside the package (source checkout) or here."""
    beside = Path(__file__).resolve().parent.parent / "checkpoints"
    return beside if beside.is_dir() else Path("checkpoints")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"relstitch {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Zero-shot model stitching with relative representations (Moschella et al., ICLR 2023)."""


# Shared option types, so every verb spells them the same way.
_DATA_HELP = (
    "Dataset: builtin:train|test, idx:DIR[:split] (or a folder), imagefolder:DIR, tensors:FILE, npy:FILE, "
    "npz:FILE, jsonl:FILE, csv:FILE, tsv:FILE, parquet:FILE, hfds:DIR[:split] (text: FILE#text=COL[,COL],"
    "label=COL). See docs/sources.md."
)
DataOpt = Annotated[str, typer.Option("--data", "-d", help=_DATA_HELP)]
# Verbs that embed or score: the built-in defaults apply only where they fit what was given (default_inputs).
ScoredDataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        "-d",
        help=_DATA_HELP
        + " [default: builtin:test, unless the anchors given were picked from other data; for "
        "embeddings:FILE, the data they were computed on].",
    ),
]
_ANCHORS_HELP = (
    "Anchor file (from `relstitch anchors`) [default: the shipped zoo's checkpoints/anchors.safetensors, for "
    "the built-in data only; for embeddings:FILE, the anchors they were computed with]."
)
AnchorsOpt = Annotated[Path | None, typer.Option("--anchors", "-a", help=_ANCHORS_HELP)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Samples per forward pass.")]


def _encoder_batch(value: str | int) -> int | Literal["auto"]:
    """``--batch-size`` of the encoding verbs: a positive int or ``"auto"``. Typer calls it as the option's
    callback (the option is typed ``str`` for Typer); the commands call it again, as is, to hand the library
    a typed value."""
    if str(value) == "auto":
        return "auto"
    try:
        size = int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither a positive integer nor 'auto'") from None
    if size < 1:
        raise typer.BadParameter(f"{size} is not a positive number of samples")
    return size


EncoderBatchOpt = Annotated[
    str,
    typer.Option(
        "--batch-size",
        metavar="N|auto",
        callback=_encoder_batch,
        help="Samples per encoder forward pass; auto: as many as fit half the GPU's free memory (on the CPU, "
        "the largest power of two ≤ 256 whose activations stay under 32 MiB).",
    ),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Use only the first N samples.")]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="Where encoders run: auto (CUDA when present), cpu, cuda or cuda:N.")
]
DtypeOpt = Annotated[
    str, typer.Option("--dtype", help="Encoder precision under autocast: float32, bfloat16, float16.")
]
# Model-source options, shared by every verb that loads encoders (encode, stitch, eval-matrix).
_SRC = "Model sources"
EncoderRefHelp = (
    "Encoder: a relstitch checkpoint, hf:DIR or hf:ORG/NAME (from the Hugging Face cache), torchvision:NAME, "
    "timm:NAME, python:package.module:function[(k=v)] or embeddings:FILE; per-reference options after # "
    "(hf:DIR#view=fr,pooling=mean)."
)
ViewOpt = Annotated[
    str | None,
    typer.Option(
        "--view",
        rich_help_panel=_SRC,
        help="Text view the text encoders read (e.g. en, fr, or images' captions) "
        "[default: the data's first text view]; image encoders read the images.",
    ),
]
SourceOptionsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--source-option",
        "-O",
        rich_help_panel=_SRC,
        help="KEY=VALUE for model sources (repeatable): pooling=cls|mean|max|weightedmean|lasttoken|"
        "mean_sqrt_len_tokens, normalize=true|false, max_length=N, dtype=float32|bfloat16|float16 (hf; a "
        "sentence-transformers folder's own by default); weights=FILE|ENUM, layer=NAME[:input], resize=H,W, "
        "crop=H,W, channels=1|3, mean=.., std=.. (torchvision, timm, python); name=NAME.",
    ),
]
ScalingOpt = Annotated[
    str | None,
    typer.Option(
        "--translation-scaling",
        help="With a translation --method: how each space is scaled before the map is fitted: "
        "standard (the paper's, the default), isotropic, center or none.",
    ),
]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code",
        rich_help_panel=_SRC,
        help="Let hf: models run the Python code shipped in their folder.",
    ),
]
TrustCodeOpt = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        rich_help_panel=_SRC,
        help="Let checkpoints of your own modules import the Python factory they record (save_encoder/"
        "save_decoder with factory=): that runs its code.",
    ),
]


@overload
def model_loader(
    view: str | None,
    source_options: list[str] | None,
    trust_remote_code: bool,
    *,
    allow_embeddings: Literal[False],
    refs: Sequence[str | os.PathLike[str]] | None = None,
    trust_code: bool = False,
) -> Callable[[str | os.PathLike[str]], Encoder]: ...


@overload
def model_loader(
    view: str | None,
    source_options: list[str] | None,
    trust_remote_code: bool,
    *,
    allow_embeddings: bool = True,
    refs: Sequence[str | os.PathLike[str]] | None = None,
    trust_code: bool = False,
) -> Callable[[str | os.PathLike[str]], Encoder | EncodedSpace]: ...


def model_loader(
    view: str | None,
    source_options: list[str] | None,
    trust_remote_code: bool,
    *,
    allow_embeddings: bool = True,
    refs: Sequence[str | os.PathLike[str]] | None = None,
    trust_code: bool = False,
) -> Callable[[str | os.PathLike[str]], Encoder | EncodedSpace]:
    """A function loading one encoder reference with the command line's source options as defaults
    (one ``warning:`` line, before any work, for an option none of ``refs``, the references it will load,
    reads)."""
    from .adapters import check_options_apply, load_encoder_ref, parse_options

    options = parse_options(",".join(source_options or []))
    if refs is not None:
        check_options_apply(refs, options)
    if view:
        options["view"] = view
    return functools.partial(
        load_encoder_ref,
        trust_remote_code=trust_remote_code,
        trust_code=trust_code,
        allow_embeddings=allow_embeddings,
        **options,
    )


# The projection option set, shared by every verb that builds relative vectors (train, encode).
_PROJ = "Projection"
_SIMILARITY = typer.Option(
    "--similarity",
    rich_help_panel=_PROJ,
    help="cosine, angular, euclidean, l1 or linf (distances as negative distances); several comma-separated "
    "= product of invariances.",
)
_CENTERING = typer.Option(
    "--centering",
    rich_help_panel=_PROJ,
    help="none, center (anchors' mean) or standard (anchors' mean and std per dimension).",
)
_NORMALIZATION = typer.Option(
    "--normalization",
    rich_help_panel=_PROJ,
    help="Per-sample normalisation of each block of similarities: none, l2 or standard.",
)
SimilarityOpt = Annotated[str, _SIMILARITY]
CenteringOpt = Annotated[str, _CENTERING]
NormalizationOpt = Annotated[str, _NORMALIZATION]
TopKOpt = Annotated[
    int | None,
    typer.Option(
        "--top-k",
        min=1,
        rich_help_panel=_PROJ,
        help="Keep the k largest similarities of each sample, zero the rest.",
    ),
]


def projection_config(similarity: str, centering: str, normalization: str, top_k: int | None) -> Any:
    """The :class:`~relstitch.projection.ProjectionConfig` the projection options describe (exit 2 if
    invalid)."""
    from .errors import RelstitchError, UsageError
    from .projection import ProjectionConfig

    config = ProjectionConfig(
        similarity=similarity, centering=centering, normalization=normalization, top_k=top_k
    )
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
    count: Annotated[
        int | None, typer.Option("--count", "-k", min=1, help="Number of anchors [default: 300].")
    ] = None,
    strategy: Annotated[
        str,
        typer.Option(
            help="uniform (random), stratified (one per class in turn), farthest-point, "
            "kmeans (sample nearest each centroid) or ids (--ids)."
        ),
    ] = "uniform",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    ids: Annotated[
        str | None,
        typer.Option(
            "--ids",
            help="Anchor sample ids: a file (one per line or comma-separated) or an inline list 3,17,42.",
        ),
    ] = None,
    space_encoder: Annotated[
        str | None,
        typer.Option(
            "--space-encoder",
            help="farthest-point/kmeans: measure distances in this encoder's latents (a checkpoint or any "
            "model reference) [default: input pixels].",
        ),
    ] = None,
    view: ViewOpt = None,
    source_options: SourceOptionsOpt = None,
    trust_remote_code: TrustOpt = False,
    trust_code: TrustCodeOpt = False,
    force: ForceOpt = False,
) -> None:
    """Pick anchors from a dataset and write the anchor file."""
    from .anchors import parse_ids, save_anchors
    from .api import select_anchors
    from .io.atomic import check_outputs
    from .refs import reference_files

    check_outputs([output], force=force, inputs=reference_files(data, space_encoder, ids))
    if ids is not None and strategy == "uniform":
        strategy = "ids"  # --ids alone says which strategy is meant
    refs = [space_encoder] if space_encoder else []
    load = model_loader(
        view, source_options, trust_remote_code, allow_embeddings=False, refs=refs, trust_code=trust_code
    )
    space_model = load(space_encoder) if space_encoder else None
    with progress_bar() as progress:
        chosen = select_anchors(
            data,
            count,
            strategy,
            seed,
            ids=parse_ids(ids) if ids is not None else None,
            space_encoder=space_model,
            progress=progress,
        )
    save_anchors(chosen, output, force=force)
    console.print(
        f"wrote {output}: {len(chosen)} {strategy} anchors from {data} (seed {seed}), hash {chosen.hash[:12]}"
    )


@app.command()
@handles_errors
def train(
    output: Annotated[
        str,
        typer.Argument(
            help="Output prefix: writes PREFIX.encoder.safetensors and PREFIX.decoder.safetensors."
        ),
    ],
    arch: Annotated[str, typer.Option(help="Encoder architecture: mlp, cnn, conv-ae, resnet18.")] = "cnn",
    task: Annotated[str, typer.Option(help="classification or reconstruction.")] = "classification",
    space: Annotated[
        str, typer.Option(help="Bottleneck: relative (the method) or absolute (the control).")
    ] = "relative",
    anchors_file: Annotated[
        Path | None,
        typer.Option(
            "--anchors",
            "-a",
            help="Anchor file for a relative bottleneck "
            "[default: the shipped zoo's checkpoints/anchors.safetensors, for the built-in data only].",
        ),
    ] = None,
    data: DataOpt = "builtin:train",
    eval_data: Annotated[
        str | None,
        typer.Option(
            help="Data scored after training [default: the test split of --data when it has one "
            "(builtin:train → builtin:test, idx:DIR → idx:DIR:test), else 10 % of --data held out, "
            "seeded by --seed, and not trained on].",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (weights, batch order and a held-out split).")] = 0,
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
    from .checkpoints import DECODER_SUFFIX, ENCODER_SUFFIX, default_name, save_decoder, save_encoder
    from .data import load_dataset
    from .encoding import encode
    from .errors import UsageError
    from .io.atomic import check_outputs
    from .refs import reference_files
    from .reports.common import baseline_summary
    from .reports.document import label_baselines
    from .stitching import evaluate_pair
    from .training import TrainConfig, plan_evaluation
    from .training import train as train_models

    enc_out, dec_out = Path(output + ENCODER_SUFFIX), Path(output + DECODER_SUFFIX)
    plan = plan_evaluation(data, eval_data, seed=seed)
    check_outputs([enc_out, dec_out], force=force, inputs=reference_files(data, plan.reference, anchors_file))
    config = TrainConfig(
        arch=arch,
        task=task,
        space=space,
        latent_dim=latent_dim,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        projection=projection_config(similarity, centering, normalization, top_k),
    )
    config.validate()
    if space == "absolute" and anchors_file is not None:
        raise UsageError("an absolute bottleneck uses no anchors: drop --anchors (or train --space relative)")
    # the zoo's anchors only go with the built-in data: data of your own needs an anchor file of its own
    _, anchors_file = default_inputs(data, anchors_file, needs_data=False, needs_anchors=space == "relative")
    chosen = load_anchors(anchors_file) if anchors_file is not None else None
    # the held-out share (when the data has no test split) is cut from the training data, never trained on
    dataset, held_out = plan.split(load_dataset(data, limit=limit))
    name = default_name(enc_out)
    with progress_bar() as progress:
        encoder, decoder = train_models(dataset, chosen, config, name=name, progress=progress)
    result = evaluate_pair(encode(encoder, chosen, held_out), decoder, held_out)
    baselines = label_baselines(held_out.y.tolist(), held_out.classes) if task == "classification" else None
    for checkpoint in (encoder, decoder):
        checkpoint.meta["training"]["eval"] = dict(
            plan.record(held_out), scores=result.scores, baselines=baselines
        )
    save_encoder(encoder, enc_out, force=force)
    save_decoder(decoder, dec_out, force=force)
    scores = ", ".join(f"{k} {v:.4f}" for k, v in result.scores.items())
    judged = f"; {baseline_summary(baselines)}" if baselines else ""
    console.print(
        f"wrote {enc_out} and {dec_out}; on {plan.describe(held_out)}: {scores}{judged}", soft_wrap=True
    )


@app.command()
@handles_errors
def encode(
    encoder: Annotated[str, typer.Argument(help=EncoderRefHelp)],
    anchors_file: AnchorsOpt = None,
    data: ScoredDataOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Embeddings file to write.")] = Path(
        "embeddings.safetensors"
    ),
    similarity: SimilarityOpt = "cosine",
    centering: CenteringOpt = "none",
    normalization: NormalizationOpt = "none",
    top_k: TopKOpt = None,
    batch_size: EncoderBatchOpt = "256",
    limit: LimitOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    view: ViewOpt = None,
    source_options: SourceOptionsOpt = None,
    trust_remote_code: TrustOpt = False,
    trust_code: TrustCodeOpt = False,
    force: ForceOpt = False,
) -> None:
    """Embed a dataset and the anchors with an encoder → embeddings file (absolute + relative).

    Streams batch by batch into the file. Under torchrun
    (`torchrun --nproc-per-node P -m relstitch encode ...`) each process encodes a shard and the shards
    land in one file, equal to a single-process run.
    """
    from .anchors import load_anchors
    from .data import load_dataset
    from .distributed import from_env
    from .encoding import resolve_device
    from .io.atomic import check_outputs
    from .refs import reference_files
    from .streaming import encode_to_file

    projection = projection_config(similarity, centering, normalization, top_k)
    where, precision = resolve_device(device, dtype)
    group = from_env(where.type)
    try:
        # every rank checks, so all stop together; an input named as the output is refused even with --force
        given, anchors_file = default_inputs(data, anchors_file)
        assert given is not None and anchors_file is not None  # both needed: filled in or refused
        data = given
        check_outputs([output], force=force, inputs=reference_files(encoder, data, anchors_file))
        if where.type == "cuda" and group.distributed:
            where = resolve_device(f"cuda:{group.local_rank}", dtype)[0]
        load = model_loader(
            view,
            source_options,
            trust_remote_code,
            allow_embeddings=False,
            refs=[encoder],
            trust_code=trust_code,
        )
        chosen, model, dataset = load_anchors(anchors_file), load(encoder), load_dataset(data, limit=limit)
        with progress_bar() as progress:
            done = encode_to_file(
                model,
                chosen,
                dataset,
                output,
                projection=projection,
                batch_size=_encoder_batch(batch_size),
                device=where,
                dtype=precision,
                force=force,
                progress=progress,
                group=group,
            )
    finally:
        group.close()
    if group.rank == 0:
        ranks = f" by {group.world} processes" if group.world > 1 else ""
        console.print(
            f"wrote {output}{ranks}: {done['samples']} samples, absolute {done['latent_dim']}-d, "
            f"relative {done['relative_dim']}-d ({projection.describe()}) on {where.type} {dtype}, "
            f"batch {done['batch_size']}{' (auto)' if batch_size == 'auto' else ''}"
        )


@app.command()
@handles_errors
def fit(
    embeddings: Annotated[Path, typer.Argument(help="Embeddings file (from `relstitch encode`).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Decoder checkpoint to write.")],
    space: Annotated[str, typer.Option(help="Train on relative or absolute vectors.")] = "relative",
    head: Annotated[
        str | None,
        typer.Option(
            help="Head architecture: vision-head or text-head "
            "[default: text-head when the encoder read text (text data or captions), else vision-head]."
        ),
    ] = None,
    hidden: Annotated[int, typer.Option(min=1, help="Hidden width of the head.")] = 128,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: BatchOpt = 64,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    seed: Annotated[int, typer.Option(help="Random seed (weights, batch order and the --val split).")] = 0,
    val: Annotated[
        float,
        typer.Option(
            help="Share of the samples held out (seeded by --seed), not trained on, and scored after "
            "training; 0 trains on every sample.",
        ),
    ] = 0.1,
    # encode's projection options; None = not given, so the file's own projection stays the default.
    similarity: Annotated[str | None, _SIMILARITY] = None,
    centering: Annotated[str | None, _CENTERING] = None,
    normalization: Annotated[str | None, _NORMALIZATION] = None,
    top_k: TopKOpt = None,
    force: ForceOpt = False,
) -> None:
    """Train a task head on a frozen encoder's embeddings → decoder checkpoint.

    A relative head reads the projection the file was written with, unless projection options are
    given: then they say the whole projection, as in encode (unnamed ones take encode's defaults),
    computed from the file's absolute and anchor latents with no re-encoding.
    """
    from .api import fit as fit_head
    from .checkpoints import default_name, save_decoder
    from .encoding import load_embeddings
    from .errors import UsageError
    from .io.atomic import check_outputs
    from .refs import reference_files
    from .reports.common import baseline_summary
    from .training import percent

    asked = None
    if any(option is not None for option in (similarity, centering, normalization, top_k)):
        if space == "absolute":
            raise UsageError(
                "--similarity/--centering/--normalization/--top-k shape relative vectors; an absolute head "
                "reads the latents: drop them (or fit --space relative)"
            )
        asked = projection_config(similarity or "cosine", centering or "none", normalization or "none", top_k)
    check_outputs([output], force=force, inputs=reference_files(embeddings))
    loaded = load_embeddings(str(embeddings).removeprefix("embeddings:"))
    with progress_bar() as progress:
        decoder = fit_head(
            loaded,
            space=space,
            head=head,
            hidden=hidden,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            val=val,
            projection=asked,
            name=default_name(output),
            progress=progress,
        )
    save_decoder(decoder, output, force=force)
    head, projection = decoder.architecture["name"], decoder.projection
    reads = f"{space} ({projection.describe()})" if projection else space
    training = decoder.meta["training"]
    line = (
        f"wrote {output}: {reads} {head} on {training['train_samples']} samples, final train loss "
        f"{training['final_train_loss']:.4f}"
    )
    if (held := training["validation"]) is not None:
        scored = ", ".join(f"{k} {v:.4f}" for k, v in held["scores"].items())
        judged = f"; {baseline_summary(held['baselines'])}" if held["baselines"] else ""
        where = f"{held['samples']} held-out samples ({percent(val)}, seed {seed})"
        line += f"; validation on {where}: {scored}{judged}"
    console.print(line, soft_wrap=True)


@app.command()
@handles_errors
def stitch(
    encoder: Annotated[str, typer.Argument(help=EncoderRefHelp)],
    decoder: Annotated[Path, typer.Argument(help="Decoder checkpoint.")],
    anchors_file: AnchorsOpt = None,
    data: ScoredDataOpt = None,
    batch_size: EncoderBatchOpt = "256",
    limit: LimitOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="As in eval-matrix: relative or absolute (the decoder's own space, the default), or a "
            "translation (procrustes, lstsq, lstsq-ortho, affine) into its own encoder's space.",
        ),
    ] = None,
    target_encoder: Annotated[
        str | None,
        typer.Option(
            "--target-encoder",
            help="With a translation --method: the decoder's own encoder, any model reference (read with "
            "the same --view and -O as ENCODER) or embeddings:FILE [default: PREFIX.encoder.safetensors "
            "beside PREFIX.decoder.safetensors].",
        ),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            help="Also write the per-sample predictions here: FILE.csv (one row per sample) or "
            "FILE.safetensors (ids, labels, predictions, raw outputs and provenance).",
        ),
    ] = None,
    view: ViewOpt = None,
    source_options: SourceOptionsOpt = None,
    scaling: ScalingOpt = None,
    trust_remote_code: TrustOpt = False,
    trust_code: TrustCodeOpt = False,
    force: ForceOpt = False,
) -> None:
    """Wire one encoder into one decoder (in memory) and report the task metrics (and, on request, the
    predictions).

    Scored as eval-matrix scores the same pair, with the same references and options: the same numbers.
    """
    from .api import stitch as stitch_pair
    from .checkpoints import load_decoder
    from .errors import unknown_choice
    from .evaluation import precomputed_record
    from .translation import METHODS

    if method not in (None, "relative", "absolute", *METHODS):  # before any file is read
        raise unknown_choice("method", method, ("relative", "absolute", *METHODS))
    target: Reference | None = target_encoder
    if method in METHODS and target is None:  # known before any work: --predictions cannot overwrite it
        target = _own_encoder_beside(decoder, method)
    models = [encoder, *([target] if target is not None else [])]
    records = [precomputed_record(m) for m in models]
    # what the run needs named: data for an encoder to run, anchors for any encoder (precomputed embeddings
    # carry their own, and those given must be theirs)
    data, anchors_file = default_inputs(
        data, anchors_file, needs_data=records[0] is None, needs_anchors=None in records, recorded=records[0]
    )
    if predictions is not None:  # before any work: a wrong extension or an existing file costs nothing
        from .predictions import check_predictions_output
        from .refs import reference_files

        # the default anchor file is an input too: --force must not replace the shipped zoo's anchors
        inputs = reference_files(encoder, decoder, anchors_file, target, data)
        check_predictions_output(predictions, force=force, inputs=inputs)
    load = model_loader(view, source_options, trust_remote_code, refs=models, trust_code=trust_code)
    head, source = load_decoder(decoder, trust_code=trust_code), load(encoder)
    with progress_bar() as progress:
        result = stitch_pair(
            source,
            head,
            anchors_file,
            data,
            method=method,
            target_encoder=load(target) if target is not None else None,
            scaling=scaling,
            limit=limit,
            batch_size=_encoder_batch(batch_size),
            device=device,
            dtype=dtype,
            keep_predictions=predictions is not None,
            progress=progress,
        )
    if predictions is not None:
        from .predictions import save_predictions

        save_predictions(result, predictions, force=force)
    _print_pair(result, data, predictions, as_json)


def _print_pair(result: PairResult, data: str | None, predictions: Path | None, as_json: bool) -> None:
    """``stitch``'s output: the pair's scores in one line (or as JSON), and the predictions file written."""
    if as_json:
        info = result.to_dict()
        if predictions is not None:
            info["predictions_file"] = str(predictions)
        typer.echo(json.dumps(info, indent=2))
        return
    kind = "stitched" if result.stitched else "not stitched (the decoder's own encoder)"
    scores = ", ".join(f"{k} {v:.4f}" for k, v in result.scores.items())
    via = f"{result.method} → " if result.method != result.space else ""
    on = data or "the data the embeddings were computed on"
    console.print(
        f"{result.encoder} → {result.decoder} ({via}{result.space}, {kind}) on {on}: {scores}", markup=False
    )
    if result.predictions is not None:
        console.print(f"wrote {predictions}: {len(result.predictions.ids)} predictions", markup=False)


def _own_encoder_beside(decoder: Path, method: str) -> Path | None:
    """The default ``--target-encoder``: ``PREFIX.encoder.safetensors`` beside ``PREFIX.decoder.safetensors``
    (a file, never parsed as a reference), or one line saying to name it (None when the decoder itself is
    missing: reading it says so)."""
    from .checkpoints import DECODER_SUFFIX, ENCODER_SUFFIX
    from .errors import UsageError

    if not decoder.exists():
        return None
    beside = (
        decoder.with_name(decoder.name[: -len(DECODER_SUFFIX)] + ENCODER_SUFFIX)
        if decoder.name.endswith(DECODER_SUFFIX)
        else None
    )
    if beside is None or not beside.exists():
        where = f"there is no {beside} beside it" if beside is not None else "its file name does not say it"
        raise UsageError(
            f"--method {method} maps into the space of the decoder's own encoder, and {where}",
            hint="pass that encoder with --target-encoder REF (a checkpoint, hf:DIR, embeddings:FILE...)",
        )
    return beside


@app.command("eval-matrix")
@handles_errors
def eval_matrix(
    encoders: Annotated[
        list[str] | None,
        typer.Option(
            "--encoders",
            "-e",
            help=(
                "Encoders (repeatable): checkpoints or globs, hf:DIR or hf:ORG/NAME, torchvision:NAME, "
                "timm:NAME, python:MOD:FN, embeddings:FILE."
            ),
        ),
    ] = None,
    decoders: Annotated[
        list[str] | None, typer.Option("--decoders", "-D", help="Decoder checkpoints or globs (repeatable).")
    ] = None,
    anchors_file: AnchorsOpt = None,
    data: ScoredDataOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the long-form CSV here.")] = None,
    markdown_out: Annotated[
        Path | None, typer.Option("--markdown", help="Write the Markdown report here.")
    ] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write the self-contained HTML report here.")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            help="Metric shown in the table and the Markdown/HTML [default: the task's main metric]."
        ),
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group",
            help="NAME=GROUP: label encoders/decoders matching the glob NAME (repeatable) "
            "[default: architecture].",
        ),
    ] = None,
    batch_size: EncoderBatchOpt = "256",
    limit: LimitOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    by_group: Annotated[
        bool,
        typer.Option(
            "--by-group",
            help="Also show the mean ± std per encoder group → decoder group (groups: --group, else the "
            "architecture); the --json/--markdown/--html reports always hold it.",
        ),
    ] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failing pair.")] = False,
    allow_failures: Annotated[
        bool,
        typer.Option(
            "--allow-failures",
            help="Exit 0 even when some pairs failed (they are still recorded; by default any failed "
            "pair makes the exit status 1).",
        ),
    ] = False,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Folder of cached embeddings (by encoder, anchors, data).")
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="Comma-separated: relative, absolute, and translations procrustes, lstsq, lstsq-ortho, "
            "affine (an absolute decoder fed the row's encoder mapped into its own encoder's space).",
        ),
    ] = "relative,absolute",
    null_baseline: Annotated[
        bool,
        typer.Option(
            "--null-baseline",
            help="Add the control with the encoder's anchors shuffled (method NAME-null): "
            "it collapses toward or below chance.",
        ),
    ] = False,
    view: ViewOpt = None,
    source_options: SourceOptionsOpt = None,
    scaling: ScalingOpt = None,
    trust_remote_code: TrustOpt = False,
    trust_code: TrustCodeOpt = False,
    force: ForceOpt = False,
) -> None:
    """Score every encoder with every decoder; the non-stitched diagonal is marked.

    With no arguments it runs on the built-in data and the shipped checkpoints (the demo); the zoo's
    encoders and decoders are the default only together, and only with its anchors. Precomputed
    embeddings bring their own data and anchors. The terminal shows one
    heatmap per method, a summary (mean ± std (n) of each method not stitched, stitched, and stitched
    across bottlenecks) and the main score; --by-group adds the breakdown per encoder group → decoder
    group. --json/--csv/--markdown/--html write the report, breakdown included (re-render a saved JSON
    later with `relstitch report`). On a terminal a progress bar (samples/s, time left) shows on stderr;
    nothing when stderr is a pipe or a file. A pair, encoder or decoder
    that fails is recorded with its reason and the run goes on; the exit status is then 1 (after the
    report is written) unless --allow-failures.
    """
    from .api import eval_matrix as run_matrix
    from .distributed import from_env
    from .encoding import resolve_device
    from .errors import UsageError
    from .io.cache import discard_if_empty, remove_run
    from .progress import silent
    from .reports import parse_groups, print_report, write_reports
    from .translation import check_scaling

    if fail_fast and allow_failures:
        raise UsageError(
            "--fail-fast stops at the first failure and --allow-failures lets failures pass: choose one"
        )
    outputs = {"json": json_out, "csv": csv_out, "md": markdown_out, "html": html_out}
    encoder_refs, decoder_refs, data, anchors_file = _matrix_inputs(encoders, decoders, data, anchors_file)
    methods = [m.strip() for m in method.split(",") if m.strip()]
    ranks = from_env(resolve_device(device, dtype)[0].type)  # torchrun: this process's rank; else one
    # Each finished encoder is kept (--cache, or a per-run folder removed once the report is written), so a
    # run cut short loses none of them; under torchrun the ranks hand their rows to rank 0 through it.
    identity = [os.getcwd(), *map(_as_typed, encoder_refs), _as_typed(anchors_file), str(data), str(limit)]
    kept = cache or _run_folder(ranks, [*identity, dtype, str(view), str(source_options)])
    try:
        with progress_bar() as progress, contextlib.closing(ranks):
            done = run_matrix(
                encoder_refs,
                decoder_refs,
                anchors_file,
                data,
                limit=limit,
                methods=methods,
                null_baseline=null_baseline,
                translation_scaling=check_scaling(scaling, methods),
                groups=parse_groups(group),
                metric=metric,
                batch_size=_encoder_batch(batch_size),
                device=device,
                dtype=dtype,
                cache=kept,
                group=ranks if ranks.distributed else None,
                fail_fast=fail_fast,
                progress=progress if ranks.rank == 0 else silent,
                force=force,
                load=model_loader(
                    view, source_options, trust_remote_code, refs=encoder_refs, trust_code=trust_code
                ),
                trust_code=trust_code,
                outputs=[p for p in outputs.values() if p is not None],
            )
    except BaseException:  # refused, interrupted, killed by torchrun: keep what finished, not an empty folder
        if cache is None and kept is not None and ranks.rank == 0:
            discard_if_empty(kept)
        raise
    if ranks.rank != 0:  # its encoders are in the cache; rank 0 scores them and writes the report
        return
    if reused := [e["name"] for e in done.result.encoders if e.get("from_cache")]:
        sys.stderr.write(f"reused {len(reused)} encoder(s) from {kept}: {', '.join(reused)}\n")
    # the files first: a reader of the table that goes away (`| head`) must not cost the reports
    written = write_reports(done.report, outputs, metric=metric, force=force)
    if cache is None and kept is not None:  # the report is written: the per-run folder has done its job
        remove_run(kept)
    print_report(console, done.report, metric, by_group=by_group)
    if written:
        console.print("wrote " + ", ".join(written))
    _exit_on_failures(done.failure_summary(), allow_failures)


def _matrix_inputs(
    encoders: list[str] | None, decoders: list[str] | None, data: str | None, anchors_file: Path | None
) -> tuple[list[Reference], list[Reference], str | None, Path | None]:
    """``eval-matrix``'s encoder and decoder references (globs expanded; the shipped zoo's when none are
    given, and only with its anchors), and its data and anchors (:func:`default_inputs`; precomputed
    embeddings alone know their own: None stays None then)."""
    import glob

    from .evaluation import agreed_record, precomputed_record
    from .refs import expand_references

    _check_zoo_models(encoders, decoders, anchors_file)
    zoo = glob.escape(str(zoo_dir()))  # the default is a folder on disk: its name is never a pattern
    encoder_refs = expand_references(encoders or [f"{zoo}/*.encoder.safetensors"], "encoder")
    decoder_refs = expand_references(decoders or [f"{zoo}/*.decoder.safetensors"], "decoder")
    records = [precomputed_record(e) for e in encoder_refs]
    live = None in records
    recorded = agreed_record([r for r in records if r is not None])
    data, anchors_file = default_inputs(
        data, anchors_file, needs_data=live, needs_anchors=live, recorded=recorded
    )
    return encoder_refs, decoder_refs, data, anchors_file


def _exit_on_failures(summary: str | None, allow_failures: bool) -> None:
    """One policy scripts can rely on: any failed pair is exit 1, said last, after the report is written
    (``--allow-failures``: said, exit 0)."""
    from .errors import RelstitchError

    if summary is None:
        return
    if not allow_failures:
        raise RelstitchError(
            summary, hint="each reason is in the table and the report; --allow-failures exits 0"
        )
    sys.stderr.write(f"{summary} (--allow-failures: exit 0)\n")


def _as_typed(ref: str | os.PathLike[str] | None) -> str:
    """A reference in a run's identity: a file by its absolute path, anything typed as typed."""
    return os.path.abspath(ref) if isinstance(ref, os.PathLike) else str(ref)


def _run_folder(ranks: Any, identity: list[str]) -> Path | None:
    """``eval-matrix`` without ``--cache``: the per-run folder under the user cache directory that keeps each
    finished encoder's embeddings until the report is written, found again by the same command
    (:func:`relstitch.io.cache.run_folder`); rank 0 makes it and every rank uses it. None where the cache
    directory cannot be written (nothing is kept then; under torchrun the run is refused)."""
    from .io.cache import run_folder

    made = run_folder(identity, ["relstitch", *sys.argv[1:]]) if ranks.rank == 0 else None
    named = ranks.broadcast(None if made is None else str(made))
    return None if named is None else Path(named)


def _check_zoo_models(
    encoders: list[str] | None, decoders: list[str] | None, anchors_file: Path | None
) -> None:
    """The zoo's encoders and decoders are eval-matrix's default together or not at all, and only with the
    anchors they were trained with: any other mix is one line naming the option to pass (exit 2)."""
    from .errors import UsageError

    if encoders and not decoders:
        raise UsageError(
            "--encoders given without --decoders: name the decoders to score them with (-D FILE or GLOB)",
            hint="the shipped zoo's are the default only when neither is given",
        )
    if decoders and not encoders:
        raise UsageError(
            "--decoders given without --encoders: name the encoders to score (-e REF or GLOB)",
            hint="the shipped zoo's are the default only when neither is given",
        )
    if not encoders and anchors_file is not None and _other_anchors(anchors_file, anchors_or_zoo(None)):
        raise UsageError(
            f"the shipped zoo's checkpoints were trained with its own anchors, not {anchors_file}: name the "
            "encoders and decoders to score with them (--encoders, --decoders)"
        )


@app.command()
@handles_errors
def report(
    file: Annotated[Path, typer.Argument(help="A JSON report (from `eval-matrix --json`).")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table (terminal heatmap), md, csv, html or json.")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of printing.")
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="Metric to show [default: the report's main metric].")
    ] = None,
    by_group: Annotated[
        bool,
        typer.Option(
            "--by-group",
            help="--format table: also show the mean ± std per encoder group → decoder group (md and html "
            "always hold it).",
        ),
    ] = False,
    force: ForceOpt = False,
) -> None:
    """Re-render a saved report without recomputing anything (older report versions are migrated).

    --format table shows what eval-matrix printed: the heatmaps, the summary and the main score
    (--by-group adds the breakdown per group pair); with --output, as a 100-column terminal without colour.
    """
    from .errors import UsageError
    from .io.atomic import atomic_write, check_outputs
    from .reports import FORMATS, load_report, print_report, render

    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if output is not None:
        check_outputs([output], force=force, inputs=(file,))
    document = load_report(file)
    if fmt == "table":
        if output is None:
            print_report(console, document, metric, by_group=by_group)
            return
        # A file gets what a plain 100-column terminal would show: no colour codes.
        captured = io.StringIO()
        buffer = Console(file=captured, width=100, color_system=None)
        print_report(buffer, document, metric, by_group=by_group)
        text = "".join(
            line.rstrip() + "\n" for line in captured.getvalue().splitlines()
        )  # rich pads lines to the table
    else:
        text = render(document, fmt, metric=metric)
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write(output, text, force=force)
        err_console.print(f"wrote {output}")


@app.command()
@handles_errors
def compare(
    spaces: Annotated[
        list[str], typer.Argument(help="Two or more embeddings files (from `relstitch encode`) or encoders.")
    ],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Neighbours for Jaccard@k and MRR@k.")] = 10,
    anchors_file: Annotated[
        Path | None,
        typer.Option(
            "--anchors",
            "-a",
            help="Anchor file, to encode the encoders given [default: the shipped zoo's, for the built-in "
            "data only].",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="Dataset the encoders given encode (as for encode) [default: builtin:test, unless the "
            "anchors or the embeddings files given are of other data].",
        ),
    ] = None,
    limit: LimitOpt = None,
    similarity: SimilarityOpt = "cosine",
    centering: CenteringOpt = "none",
    normalization: NormalizationOpt = "none",
    top_k: TopKOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the scores as JSON here.")] = None,
    view: ViewOpt = None,
    source_options: SourceOptionsOpt = None,
    trust_remote_code: TrustOpt = False,
    trust_code: TrustCodeOpt = False,
    force: ForceOpt = False,
) -> None:
    """Label-free similarity of latent spaces: Jaccard@k, MRR@k, mean cosine and linear CKA,
    in absolute and relative space (a matrix per metric for more than two)."""
    from .anchors import load_anchors
    from .api import compare as compare_models
    from .data import load_dataset
    from .errors import UsageError
    from .evaluation import agreed_record, check_records, precomputed_record
    from .io.atomic import atomic_write, check_outputs
    from .refs import reference_files

    if len(spaces) < 2:
        raise UsageError("compare needs at least two embeddings files or encoders")
    projection = projection_config(similarity, centering, normalization, top_k)
    records = [precomputed_record(ref) for ref in spaces]
    precomputed = [r for r in records if r is not None]
    live = None in records  # encoders to run need data and anchors; embeddings files carry their own
    data, anchors_file = default_inputs(
        data, anchors_file, needs_data=live, needs_anchors=live, recorded=agreed_record(precomputed)
    )
    if json_out is not None:
        check_outputs([json_out], force=force, inputs=reference_files(*spaces, data, anchors_file))
    load = model_loader(view, source_options, trust_remote_code, refs=spaces, trust_code=trust_code)
    chosen = load_anchors(anchors_file) if live and anchors_file is not None else None
    dataset = load_dataset(data, limit=limit) if live and data is not None else None
    check_records(precomputed, dataset, chosen)  # embeddings of other data or anchors: one line, no work
    with progress_bar() as progress:
        loaded = [load(ref) for ref in spaces]
        result = compare_models(
            loaded, anchors=chosen, data=dataset, k=k, projection=projection, progress=progress
        )
    _print_comparison(result)
    if json_out is not None:
        atomic_write(json_out, json.dumps(result.to_dict(), indent=2) + "\n", force=force)
        console.print(f"wrote {json_out}")


def _print_comparison(result: Any) -> None:
    """Two spaces: one table, A→B and B→A side by side. More: one source × target matrix per space and
    metric."""
    from rich.table import Table

    from .comparison import METRICS, SPACES

    def fmt(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    labels = {
        "jaccard": f"Jaccard@{result.k} ↑",
        "mrr": f"MRR@{result.k} ↑",
        "cosine": "mean cosine ↑",
        "cka": "linear CKA ↑",
    }
    names = result.names
    if len(names) == 2:
        a, b = names
        table = Table(
            "space",
            "metric",
            f"{a} → {b}",
            f"{b} → {a}",
            title=f"compare (relative: {result.projection['similarity']}, {len(names)} spaces)",
            title_justify="left",
        )
        for space in SPACES:
            for metric in METRICS:
                table.add_row(
                    space,
                    labels[metric],
                    fmt(result.value(a, b, space, metric)),
                    fmt(result.value(b, a, space, metric)),
                )
        console.print(table)
    else:
        for space in SPACES:
            for metric in METRICS:
                table = Table(
                    "source \\ target", *names, title=f"{space} · {labels[metric]}", title_justify="left"
                )
                for source in names:
                    table.add_row(
                        source,
                        *(
                            "1.000" if source == target else fmt(result.value(source, target, space, metric))
                            for target in names
                        ),
                    )
                console.print(table)
    notes = sorted({r["note"] for r in result.rows if r["note"]})
    for note in notes:
        console.print(f"— : {note}", style="dim", markup=False)


@app.command()
@handles_errors
def export(
    encoder: Annotated[
        str, typer.Argument(help="Encoder checkpoint (one of relstitch's own architectures).")
    ],
    decoder: Annotated[Path, typer.Argument(help="Relative decoder checkpoint.")],
    anchors_file: Annotated[
        Path, typer.Option("--anchors", "-a", help="The anchor file the decoder was trained with.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Stitched model file to write.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="safetensors (a relstitch stitched file, read by relstitch.load_stitched) or onnx "
            "(needs the onnx extra).",
        ),
    ] = "safetensors",
    force: ForceOpt = False,
) -> None:
    """Ship ENCODER stitched into DECODER as one file: both models and the encoder's own anchor latents,
    computed once now (no anchor inputs needed at run time)."""
    from .api import export_stitched

    model = export_stitched(encoder, decoder, anchors_file, output, format=fmt, force=force)
    k, task = model.anchor_latents.shape[0], model.task
    what = f"{len(model.classes)} classes" if model.classes else str(task.get("type"))
    console.print(
        f"wrote {output} ({fmt}): {model.meta['name']}, {k} anchor latents ({model.projection.describe()}), "
        f"{what}",
        markup=False,
        soft_wrap=True,
    )


@app.command()
@handles_errors
def inspect(
    file: Annotated[Path, typer.Argument(help="Any relstitch (or safetensors) file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Say what a file is: kind, tensors, metadata, hashes. Reads only the header (a JSON report: its
    summary)."""
    from .io.artifacts import describe

    if _starts_like_json(file):
        from .reports.document import describe_report

        info = describe_report(file)
    else:
        info = describe(file)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    from rich.table import Table

    console.print(
        f"[bold]{info['path']}[/bold]: relstitch [bold]{info['kind']}[/bold] file, format {info['version']}, "
        f"{info['size_bytes']:,} bytes, sha256 {info['sha256'][:16]}…"
    )
    if info["kind"] == "stitched":
        console.print(_stitched_summary(info["metadata"]), markup=False, soft_wrap=True)
    if info["tensors"]:
        tensors = Table("tensor", "dtype", "shape", title="tensors", title_justify="left")
        for name, t in info["tensors"].items():
            tensors.add_row(name, t["dtype"], "×".join(map(str, t["shape"])) or "scalar")
        console.print(tensors)
    meta = Table("key", "value", title="metadata", title_justify="left")
    for key, value in info["metadata"].items():
        text = json.dumps(value) if not isinstance(value, str) else value
        meta.add_row(key, text if len(text) <= 200 else text[:197] + "...")
    console.print(meta)


def _stitched_summary(meta: dict[str, Any]) -> str:
    """One line on a stitched file from its header alone (read as written: a field may be missing or odd)."""
    from .errors import printable

    def field(owner: object, key: str) -> str:
        value = owner.get(key) if isinstance(owner, dict) else None
        return printable(str(value))[:80] if value is not None else "?"

    task = meta.get("task")
    classes = task.get("classes") if isinstance(task, dict) else None
    what = f"{len(classes)} classes" if isinstance(classes, list) else field(task, "type")
    projection = meta.get("projection")
    similarity = field(projection, "similarity")
    encoder, decoder = meta.get("encoder"), meta.get("decoder")
    return (
        f"stitched: encoder {field(encoder, 'name')} ({field(encoder, 'hash')[:12]}) → "
        f"decoder {field(decoder, 'name')} ({field(decoder, 'hash')[:12]}), "
        f"{field(meta, 'anchor_count')} anchors {field(meta, 'anchor_hash')[:12]} ({similarity}), {what}"
    )


def _starts_like_json(path: Path) -> bool:
    """Whether a file's first non-blank byte opens a JSON object (a report), without reading the rest."""
    from .errors import RelstitchError
    from .io.userfiles import read_head

    try:
        return read_head(path, 64).lstrip()[:1] == b"{"
    except (OSError, RelstitchError):
        return False  # the safetensors reader says what is wrong with the path (a FIFO is never opened)


cache_app = typer.Typer(
    name="cache",
    help="What eval-matrix keeps: list or clear cached embeddings.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(cache_app)
CacheDirsArg = Annotated[
    list[Path] | None,
    typer.Argument(help="--cache folders to include [default: only the per-run folders]."),
]


@cache_app.command("ls")
@handles_errors
def cache_ls(folders: CacheDirsArg = None) -> None:
    """List the per-run folders eval-matrix keeps under $XDG_CACHE_HOME/relstitch/runs (those of runs that
    were interrupted, or are running) and the --cache FOLDERS named: entries, size, age, command."""
    import time

    from .io.cache import age_label, check_cache_folder, describe_folder, run_folders, runs_root, size_label

    found = [describe_folder(f) for f in [*run_folders(), *map(check_cache_folder, folders or [])]]
    if not found:
        console.print(f"no cached embeddings in {runs_root()}", soft_wrap=True)
        return
    now = time.time()
    for f in found:
        age = age_label(now - f.newest) if f.newest is not None else "empty"
        what = " ".join(f.command) if f.command else ("--cache folder" if f.command is None else "")
        console.print(
            f"{f.path}  {f.entries} entries  {size_label(f.size)}  {age}  {what}".rstrip(),
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    total = sum(f.size for f in found)
    console.print(
        f"total: {len(found)} folder(s), {sum(f.entries for f in found)} entries, {size_label(total)}"
    )


@cache_app.command("clear")
@handles_errors
def cache_clear(
    folders: CacheDirsArg = None,
    runs: Annotated[
        bool, typer.Option("--runs", help="Also the per-run folders (the default when no FOLDERS are named).")
    ] = False,
) -> None:
    """Delete cached embeddings: the per-run folders interrupted eval-matrix runs left, or the entries in the
    --cache FOLDERS named. Only files relstitch wrote there (matched by name) are removed; links are never
    followed, and anything else stays."""
    from .io.cache import check_cache_folder, clear_folder, run_folders, size_label

    named = [check_cache_folder(f) for f in folders or []]  # every folder checked before anything goes
    files = size = 0
    for folder in run_folders() if runs or not named else []:
        n, b = clear_folder(folder, remove_folder=True)
        files, size = files + n, size + b
    for folder in named:
        n, b = clear_folder(folder)
        files, size = files + n, size + b
    console.print(f"removed {files} file(s), {size_label(size)}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

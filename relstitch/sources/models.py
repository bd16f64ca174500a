"""Model sources: one registry of kinds, each reference written ``kind:locator[#option=value,...]``.

=================================  ==========================================================================
``PATH`` or ``relstitch:PATH``     a relstitch encoder checkpoint (or an embeddings file, read as precomputed)
``hf:DIR``                         a Hugging Face ``transformers`` model saved in a local folder (text)
``torchvision:NAME``               a torchvision architecture with a local weights file (images)
``python:pkg.mod:function``        any ``torch.nn.Module`` a Python function builds, ``function(k=v)`` for kwargs
``embeddings:FILE``                vectors computed elsewhere: a relstitch embeddings file, no encoder to run
=================================  ==========================================================================

Every loader returns an :class:`~relstitch.checkpoints.Encoder` (the seam the rest of relstitch uses:
``embed_batch(raw_batch)``), or an :class:`~relstitch.encoding.EncodedSpace` for precomputed vectors.
An encoder's hash stays content based (weights + the config that changes its output: pooling, maximum
length, tokenizer files, latent layer, preprocessing), never its path, so a decoder fitted on one
still recognises it as its own encoder (the matrix diagonal) wherever the files are moved.

Options come from keyword arguments (the CLI's ``--view`` and ``-O key=value``) and, per reference,
after ``#``: ``hf:models/fr#view=fr,pooling=mean``; a reference's own options win. Lists are written
with commas: ``mean=0.485,0.456,0.406``. Remote code is never enabled by an option string: only
``trust_remote_code=True`` (the CLI's ``--trust-remote-code``).
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib
import inspect
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
from torch import nn

from ..checkpoints import Encoder, check_shapes, check_weights, load_encoder
from ..encoding import DTYPES
from ..errors import RelstitchError, RelstitchWarning, UsageError, printable, unknown_choice
from ..registry import Registry
from ..userfiles import MAX_CONFIG_BYTES, check_folder_files, open_regular, read_text
from .refs import parse_size, split_fragment, split_options
from .text import TextViews

if TYPE_CHECKING:
    from ..checkpoints import Decoder
    from ..data import Dataset
    from ..encoding import EncodedSpace
    from ..results import PairResult

POOLINGS = ("cls", "mean")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CLASSIFIER_NAMES = ("fc", "classifier", "heads", "head")
"""Where torchvision models keep their classifier; the default latent is that module's input."""

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "spiece.model", "sentencepiece.bpe.model", "added_tokens.json")


# ------------------------------------------------------------------------------------- options
def _floats(text: str) -> float | list[float]:
    values = [float(p) for p in text.split(",") if p.strip()]
    return values[0] if len(values) == 1 else values


OPTION_TYPES: dict[str, Callable[[str], Any]] = {
    "view": str, "pooling": str, "max_length": int, "dtype": str, "name": str,
    "weights": str, "layer": str, "resize": parse_size, "channels": int, "mean": _floats, "std": _floats,
}
"""Source options and how each is read from text."""


def parse_options(text: str) -> dict[str, Any]:
    """``"pooling=mean,mean=0.5,0.5,0.5"`` → ``{"pooling": "mean", "mean": [0.5, 0.5, 0.5]}``."""
    return {key: _coerce(key, value) for key, value in split_options(text).items()}


def _coerce(key: str, value: Any) -> Any:
    if key == "trust_remote_code":
        raise UsageError("remote code is enabled only by the --trust-remote-code flag (trust_remote_code=True), not an option")
    if key not in OPTION_TYPES:
        close = difflib.get_close_matches(key, OPTION_TYPES, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known options: {', '.join(OPTION_TYPES)}"
        raise UsageError(f"unknown source option {key!r}", hint=hint)
    if not isinstance(value, str):
        return value
    try:
        return OPTION_TYPES[key](value)
    except ValueError:
        raise UsageError(f"bad value {value!r} for source option {key!r}") from None


@dataclass(frozen=True)
class SourceOptions:
    """How to load and feed one model source (each kind reads the options that concern it)."""

    view: str | None = None
    pooling: str = "cls"
    max_length: int | None = None
    dtype: str | None = None
    name: str | None = None
    weights: str | None = None
    layer: str | None = None
    resize: list[int] | None = None
    channels: int | None = None
    mean: float | list[float] | None = None
    std: float | list[float] | None = None
    trust_remote_code: bool = False


def _parse_call(locator: str) -> tuple[str, dict[str, Any]]:
    """``pkg.mod:build(width=8)`` → (``pkg.mod:build``, ``{"width": 8}``); literal keyword arguments only."""
    if not locator.endswith(")") or "(" not in locator:
        return locator, {}
    target, _, args = locator.partition("(")
    refused = UsageError(f"cannot read the arguments of {locator!r}",
                         hint="write keyword arguments with literal values, e.g. build(width=8, name='a')")
    try:
        call = ast.parse(f"f({args}", mode="eval").body
        # checked with if, not assert: under python -O an assert vanishes and build(3, width=8) would drop the 3
        if not isinstance(call, ast.Call) or call.args or any(kw.arg is None for kw in call.keywords):
            raise refused
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    except (SyntaxError, ValueError):
        raise refused from None
    return target, kwargs


# ------------------------------------------------------------------------------------ registry
SourceLoader = Callable[[str, SourceOptions], "Encoder | EncodedSpace"]


@dataclass(frozen=True)
class ModelSource:
    """One kind of model reference: its loader, the options it reads, and a one-line description."""

    load: SourceLoader
    reads: frozenset[str]
    help: str


MODEL_SOURCES: Registry[ModelSource] = Registry("model source kind")
"""Model reference kind -> :class:`ModelSource`; ``register_model_source`` adds one."""


def register_model_source(kind: str, reads: tuple[str, ...], help: str) -> Callable[[SourceLoader], SourceLoader]:
    """Register a loader for references ``kind:locator``."""

    def decorator(load: SourceLoader) -> SourceLoader:
        MODEL_SOURCES.register(kind, ModelSource(load, frozenset(reads + ("name",)), help))
        return load

    return decorator


@overload
def load_encoder_ref(ref: str | os.PathLike[str], *, trust_remote_code: bool = ..., allow_embeddings: Literal[False],
                     **options: Any) -> Encoder: ...


@overload
def load_encoder_ref(ref: str | os.PathLike[str], *, trust_remote_code: bool = ..., allow_embeddings: bool = ...,
                     **options: Any) -> Encoder | EncodedSpace: ...


def load_encoder_ref(ref: str | os.PathLike[str], *, trust_remote_code: bool = False, allow_embeddings: bool = True,
                     **options: Any) -> Encoder | EncodedSpace:
    """Load the model a reference names (any registered kind; a plain path is a relstitch file).

    A ``str`` is a reference the user typed: its kind and ``#key=value`` options are read from it. A
    :class:`~pathlib.Path` (a glob's match, a default, anything found on disk) is a relstitch file and is
    never parsed, whatever its name says (:mod:`relstitch.sources.refs`).
    ``options`` are defaults (strings are parsed as on the command line); the reference's own
    ``#key=value`` options override them. ``allow_embeddings=False`` refuses precomputed vectors
    (for verbs that must run an encoder).
    """
    merged = {key: _coerce(key.replace("-", "_"), value) for key, value in options.items() if value is not None}
    kind, source, locator, own = _source_of(ref)
    ignored = sorted(set(own) - source.reads)
    if ignored:
        raise UsageError(f"option(s) {', '.join(ignored)} do not apply to {kind}: references",
                         hint=f"{kind}: reads {', '.join(sorted(source.reads))}")
    opts = SourceOptions(**{k: v for k, v in {**merged, **own}.items() if k in source.reads},
                         trust_remote_code=trust_remote_code)
    if not locator:
        raise UsageError(f"{kind}: reference without a locator", hint=f"write {kind}:{_EXAMPLES.get(kind, 'LOCATOR')}")
    loaded = source.load(locator, opts)
    if not allow_embeddings and not isinstance(loaded, Encoder):
        raise RelstitchError(f"{ref} holds precomputed embeddings, not an encoder to run",
                             hint="use it directly in fit, stitch or eval-matrix")
    return loaded


def check_options_apply(refs: Sequence[str | os.PathLike[str]], options: Mapping[str, Any]) -> None:
    """Warn about a default source option (the CLI's ``-O``) that none of ``refs`` reads: it does nothing.

    Each reference takes only the options its kind reads (``pooling`` for ``hf:``, ``weights`` for
    ``torchvision:``/``python:``...), so one ``-O`` serves a mixed matrix and a script looping over
    encoders of several kinds; one that no reference reads (``encode CKPT -O weights=w.pt``) is said in
    one ``warning:`` line before any work, not silently dropped. (A reference's own ``#key=value`` that
    its kind does not read is refused: it was written for that reference.)
    """
    import warnings  # noqa: PLC0415

    kinds = {_source_of(ref)[0] for ref in refs}
    for key, value in options.items():
        if not any(key in MODEL_SOURCES[kind].reads for kind in kinds):
            readers = sorted(kind + ":" for kind, source in MODEL_SOURCES.items() if key in source.reads)
            warnings.warn(RelstitchWarning(
                f"-O {key}={value} does nothing here: no model given is a {' or '.join(readers) or 'kind that reads it'}"
                f" reference (given: {', '.join(sorted(kinds))})"), stacklevel=2)


def _source_of(ref: str | os.PathLike[str]) -> tuple[str, ModelSource, str, dict[str, Any]]:
    """The kind, source, locator and own ``#options`` of a reference; a ``Path`` is a relstitch file, unparsed."""
    if isinstance(ref, os.PathLike):  # a file: its name is never read as a kind, options or a call
        return "relstitch", MODEL_SOURCES["relstitch"], os.fspath(ref), {}
    text, fragment = split_fragment(ref)
    own = parse_options(fragment)
    kind, sep, locator = text.partition(":")
    if kind in MODEL_SOURCES:
        return kind, MODEL_SOURCES[kind], locator, own
    if Path(text).exists() or not sep or "/" in kind or "\\" in kind or "." in kind:
        return "relstitch", MODEL_SOURCES["relstitch"], text, own
    close = difflib.get_close_matches(kind, MODEL_SOURCES, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(k + ':' for k in MODEL_SOURCES)} or a path"
    raise RelstitchError(f"unknown model source kind {kind!r} in {ref!r}", hint=hint)


_EXAMPLES = {"hf": "DIR", "torchvision": "resnet18#weights=FILE", "python": "package.module:function",
             "embeddings": "FILE", "relstitch": "FILE"}


# ---------------------------------------------------------------------------------- relstitch
@register_model_source("relstitch", (), "a relstitch encoder checkpoint (the default for a plain path)")
def _load_relstitch(locator: str, opts: SourceOptions) -> Encoder | EncodedSpace:
    from ..artifacts import read_header

    if read_header(locator).kind == "embeddings":  # a plain path to vectors: treat as embeddings:FILE
        return _load_embeddings(locator, opts)
    encoder = load_encoder(locator)
    if opts.name:
        encoder.name = opts.name
    return encoder


@register_model_source("embeddings", (), "vectors computed elsewhere: a relstitch embeddings file")
def _load_embeddings(locator: str, opts: SourceOptions) -> EncodedSpace:
    from ..encoding import load_embeddings

    space = load_embeddings(locator)
    if opts.name:
        space.encoder_name = opts.name
    return space


@dataclass
class PrecomputedEncoder(Encoder):
    """Stands for the encoder that produced precomputed vectors: its name and hash, nothing to run."""

    encoder_hash: str = ""

    @property
    def hash(self) -> str:  # recorded, not recomputed: there are no weights here
        return self.encoder_hash

    def embed_batch(self, raw_batch: Any) -> torch.Tensor:
        raise RelstitchError(f"{self.name!r} is precomputed embeddings: it cannot embed new inputs", path=self.path)


def as_encoder(space: EncodedSpace) -> PrecomputedEncoder:
    """The encoder record of precomputed vectors (for reports: name, hash, latent size)."""
    made_by = found if isinstance(found := space.meta.get("encoder"), dict) else {}
    training = found if isinstance(found := made_by.get("training"), dict) else {}
    return PrecomputedEncoder(module=nn.Identity(), architecture={"name": made_by.get("architecture") or "embeddings"},
                              input_spec={}, latent_dim=int(space.absolute.shape[1]), name=space.encoder_name,
                              meta={"source": f"embeddings:{space.path}", "training": training}, path=space.path,
                              encoder_hash=space.encoder_hash)


def check_precomputed(space: EncodedSpace, dataset_hash: str | None) -> EncodedSpace:
    """Refuse precomputed vectors of other data than the run's (their labels would not be the run's)."""
    recorded = space.dataset.get("hash")
    if dataset_hash is not None and recorded != dataset_hash:
        raise RelstitchError(
            f"embeddings were computed on data {space.dataset.get('name')!r} ({str(recorded)[:12]}), "
            f"not on the data of this run ({dataset_hash[:12]})",
            path=space.path, hint="use the same --data and --limit as `relstitch encode` did",
        )
    return space


def stitch_precomputed(space: EncodedSpace, decoder: Decoder, dataset: Dataset | None = None, *,
                       keep_predictions: bool = False) -> PairResult:
    """Score ``decoder`` on precomputed vectors (``stitch embeddings:FILE DECODER``).

    ``dataset``, when given, must be the data the vectors were computed on; reconstruction decoders
    need it (they score against the images). ``keep_predictions`` as in :func:`relstitch.stitching.evaluate_pair`.
    """
    from ..stitching import evaluate_pair

    check_precomputed(space, dataset.hash if dataset is not None else None)
    return evaluate_pair(space, decoder, dataset, keep_predictions=keep_predictions)


# ----------------------------------------------------------------------------------------- hf
@dataclass
class TextEncoder(Encoder):
    """A Hugging Face model + tokenizer: texts of one view → pooled hidden states ``[B, hidden]``."""

    tokenizer: Any = None
    pooling: str = "cls"
    max_length: int = 512
    view: str | None = None

    def prepare(self, raw_batch: Any) -> Mapping[str, torch.Tensor]:
        if not isinstance(raw_batch, TextViews):
            raise RelstitchError(f"text encoder {self.name!r} was given image data", path=self.path,
                                 hint="give it text data (jsonl:FILE or csv:FILE)")
        texts = raw_batch.view(self.view)
        tokens: Mapping[str, torch.Tensor] = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                                            return_tensors="pt")  # a BatchEncoding
        return tokens

    @cached_property
    def _takes(self) -> frozenset[str] | None:
        """The tokenizer outputs the model's forward accepts (None: any, it takes ``**kwargs``)."""
        params = inspect.signature(self.module.forward).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return frozenset(p.name for p in params)

    def embed_batch(self, raw_batch: Any) -> torch.Tensor:
        tokens = self.prepare(raw_batch)
        # Tokenizers add token_type_ids that custom (remote-code) models often do not take: pass only what forward reads.
        feed = tokens if self._takes is None else {k: v for k, v in tokens.items() if k in self._takes}
        hidden: torch.Tensor = self.module(**feed)[0]  # last hidden state [B, T, H]
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # padding must not count in the mean
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def _files_hash(folder: Path, names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in names:
        if (folder / name).is_file():
            digest.update(name.encode() + b"\0")
            with open_regular(folder / name) as handle:  # in chunks: the same digest, memory bounded
                while block := handle.read(1 << 20):
                    digest.update(block)
    return digest.hexdigest()


def _remote_code(folder: Path, config: dict[str, Any]) -> list[str]:
    """The Python files a model folder asks transformers to import (``auto_map`` in config.json or
    tokenizer_config.json); empty when it needs none."""
    maps = [config.get("auto_map")]
    try:
        tokenizer_config = json.loads(read_text(folder / "tokenizer_config.json", limit=MAX_CONFIG_BYTES,
                                                what="a model's JSON configuration"))
        maps.append(tokenizer_config.get("auto_map") if isinstance(tokenizer_config, dict) else None)
    except (OSError, ValueError, RecursionError):  # ValueError: JSONDecodeError, or a number too long to convert
        pass  # no (readable) tokenizer config: AutoTokenizer reports it when loading
    files: set[str] = set()
    for auto_map in (m for m in maps if m is not None):
        refs = list(auto_map.values()) if isinstance(auto_map, dict) else [auto_map]
        for ref in refs:  # "modeling_x.Class", a [slow, fast] pair for tokenizers, or "org/repo--modeling_x.Class"
            for one in ref if isinstance(ref, list) else [ref]:
                if isinstance(one, str) and "." in one:
                    files.add(one.rpartition(".")[0] + ".py")
        if not files:  # an auto_map relstitch cannot read still asks for code
            files.add("auto_map")
    return sorted(files)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def hf_architecture_name(config: Any) -> str:
    """The architecture name of an ``hf:`` model, and so its default report group: ``hf:bert-L6-H384``.

    Its ``model_type`` plus depth and width (the ``L``/``H`` of BERT's own size names): two seeds or
    fine-tunes of one architecture share a group as the zoo's CNN seeds do, while different
    architectures (all-MiniLM-L6 vs paraphrase-MiniLM-L3, both ``bert``) get their own. The folder name
    is the encoder's *name* already; as a group it would put every model alone. ``--group`` overrides.
    """
    parts = [str(getattr(config, "model_type", None) or "model")]
    for letter, key in (("L", "num_hidden_layers"), ("H", "hidden_size")):
        value = getattr(config, key, None)  # configs map their own names (n_layer, d_model) onto these keys
        if isinstance(value, int):
            parts.append(f"{letter}{value}")
    return "hf:" + "-".join(parts)


@register_model_source("hf", ("view", "pooling", "max_length", "dtype"), "a Hugging Face transformers model in a local folder")
def _load_hf(locator: str, opts: SourceOptions) -> TextEncoder:
    folder = Path(locator)
    if not folder.is_dir():
        raise RelstitchError("no such model folder", path=folder, hint="name a folder written by save_pretrained")
    check_folder_files(folder)  # transformers opens the folder's files by path: a FIFO there would block it forever
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise RelstitchError("not a Hugging Face model folder: no config.json", path=folder,
                             hint="save the model with model.save_pretrained(DIR)")
    try:
        config = json.loads(read_text(config_file, limit=MAX_CONFIG_BYTES, what="a model's JSON configuration"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, or a number too long
        raise RelstitchError(f"cannot read config.json: {_first_line(exc)}", path=config_file) from None
    code = _remote_code(folder, config)
    if code and not opts.trust_remote_code:
        # Refused here, before transformers sees the folder: its own refusal is a long, Hub-worded message and,
        # on a terminal, an interactive prompt.
        raise RelstitchError(f"the model runs Python code shipped in its folder ({', '.join(code)}, named by auto_map)",
                             path=folder, hint="read that code, then pass --trust-remote-code (trust_remote_code=True) "
                                               "only if you trust it")
    if opts.pooling not in POOLINGS:
        raise unknown_choice("pooling", opts.pooling, POOLINGS)
    if opts.dtype is not None and opts.dtype not in DTYPES:
        raise unknown_choice("dtype", opts.dtype, DTYPES)
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    common = {"local_files_only": True, "trust_remote_code": opts.trust_remote_code}
    shown, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()  # relstitch reports what matters itself: no loading bars or load reports
    hf_logging.set_verbosity_error()
    try:
        model_class: Any = AutoModel
        custom_class = (config.get("auto_map") or {}).get("AutoModel") if isinstance(config.get("auto_map"), dict) else None
        if code and isinstance(custom_class, str):
            # The folder's own class, imported by the hash of its code. Through AutoModel, a second folder whose
            # configuration code matches an earlier one's would get that earlier folder's model class in this process.
            from transformers.dynamic_module_utils import get_class_from_dynamic_module

            model_class = get_class_from_dynamic_module(custom_class, str(folder), local_files_only=True)
        model, info = model_class.from_pretrained(folder, dtype=DTYPES[opts.dtype or "float32"], output_loading_info=True,
                                                  **common)
        tokenizer = AutoTokenizer.from_pretrained(folder, **common)
    except Exception as exc:  # transformers raises OSError/ValueError/KeyError/...: all mean "this folder will not load"
        raise RelstitchError(f"cannot load the model: {_first_line(exc)}", path=folder) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if shown:
            hf_logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys") or [])
    if missing and all(k.startswith("pooler.") for k in missing) and getattr(model, "pooler", None) is not None:
        # Sentence encoders often ship without the pooler head; relstitch never uses it (cls = first token's
        # state). Left in, its random initialisation would make the encoder's hash differ at every load.
        model.pooler = None
    elif missing:
        raise RelstitchError(f"the weights lack {len(missing)} tensor(s) the model needs ({', '.join(missing[:4])}): they would be "
                             "random", path=folder, hint="save the complete model with save_pretrained")
    limits = [n for n in (getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length) if n]
    max_length = opts.max_length or min([512, *limits])
    settings = json.loads(model.config.to_json_string(use_diff=False))
    for volatile in ("_name_or_path", "transformers_version", "_commit_hash", "dtype", "torch_dtype"):
        settings.pop(volatile, None)  # paths and versions are not content; dtype shows in the weights
    architecture = {"name": hf_architecture_name(model.config), "model_type": settings.get("model_type"), "config": settings,
                    "pooling": opts.pooling, "max_length": max_length, "tokenizer_sha256": _files_hash(folder, TOKENIZER_FILES)}
    if opts.view:
        architecture["view"] = opts.view  # the same weights reading another language are another encoder
    if code:  # the code computes the latents: other code, other encoder (and another diagonal)
        architecture["code_sha256"] = _files_hash(folder, tuple(sorted(p.name for p in folder.glob("*.py"))))
    hidden_size = getattr(model.config, "hidden_size", None)  # custom configs may name it otherwise
    return TextEncoder(
        module=model.eval(),
        architecture=architecture,
        input_spec={"modality": "text", "view": opts.view, "pooling": opts.pooling, "max_length": max_length},
        latent_dim=hidden_size if isinstance(hidden_size, int) else 0,  # 0: learnt on the first batch
        name=opts.name or printable(folder.resolve().name),
        meta={"source": f"hf:{folder}"},
        path=folder,
        tokenizer=tokenizer,
        pooling=opts.pooling,
        max_length=max_length,
        view=opts.view,
    )


# ----------------------------------------------------------------------- torchvision and python
class _Tapped(Exception):
    """Carries a layer's activation out of the forward pass (the rest of the network is skipped)."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _to_vector(out: Any) -> torch.Tensor:
    """Model output → ``[B, D]``: first element of tuples, 4-d maps average-pooled, anything else flattened."""
    if isinstance(out, Mapping):
        out = next(iter(out.values()))
    if isinstance(out, list | tuple):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise RelstitchError(f"the model returned {type(out).__name__}, not a tensor", hint="pick a layer with -O layer=NAME")
    vectors: torch.Tensor = out.mean(dim=(2, 3)) if out.ndim == 4 else out
    return vectors.flatten(1)


class LatentTap(nn.Module):
    """Wrap a network so its forward returns one layer's activation (``NAME`` output, ``NAME:input`` input)."""

    def __init__(self, model: nn.Module, layer: str | None) -> None:
        super().__init__()
        self.model = model
        self.layer = layer
        if layer:
            name, _, where = layer.partition(":")
            modules = dict(model.named_modules())
            modules.pop("", None)
            if name not in modules:
                close = difflib.get_close_matches(name, modules, n=3)
                top = ", ".join(n for n in modules if "." not in n)
                hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"top-level layers: {top}"
                raise RelstitchError(f"the model has no layer {name!r}", hint=hint)
            if where not in ("", "output", "input"):
                raise UsageError(f"layer {layer!r}: write NAME, NAME:output or NAME:input")
        self._target, self._on_input = layer.partition(":")[0] if layer else "", layer is not None and layer.endswith(":input")

    @staticmethod
    def _grab_input(module: nn.Module, args: tuple[Any, ...]) -> None:
        raise _Tapped(args[0])

    @staticmethod
    def _grab_output(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        raise _Tapped(output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.layer:
            return _to_vector(self.model(x))
        # The hook lives only during this call, so the wrapped network behaves normally anywhere else.
        target = self.model.get_submodule(self._target)
        if self._on_input:
            hook = target.register_forward_pre_hook(self._grab_input)
        else:
            hook = target.register_forward_hook(self._grab_output)
        try:
            self.model(x)
        except _Tapped as tapped:
            return _to_vector(tapped.value)
        finally:
            hook.remove()
        raise RelstitchError(f"layer {self.layer!r} did not run in the forward pass", hint="pick another layer")


def fit_weights(model: nn.Module, path: str | Path, what: str) -> None:
    """Load a weights file into ``model``, refusing any missing, unexpected or misshapen tensor by name.

    The file is read by :func:`relstitch.safe_load.load_weights`: safetensors, or ``.pt/.pth/.bin``
    through ``torch.load(weights_only=True)`` only. A tensor of another kind of dtype than the model's
    (integers for float weights) or holding NaN/±Inf is refused too; float16/bfloat16 weights for a float32
    model are fine (:func:`relstitch.checkpoints.check_weights`).
    """
    from ..safe_load import load_weights

    state = load_weights(path)
    own = model.state_dict()
    try:
        check_shapes(own, state, what)
        # Foreign files: a float→float cast is allowed (half-precision releases are common), a change of kind is not.
        check_weights(own, state, what, exact=False,
                      hint="re-export the weights from the model they belong to (safetensors.torch.save_file)",
                      finite_hint="use an intact copy of the weights (NaN/Inf: a diverged training run?)")
    except RelstitchError as exc:
        raise RelstitchError(str(exc), path=path) from None
    for name, tensor in state.items():  # a narrowing cast (a float32 file, a float16 model) can overflow to ±Inf
        dtype = own[name].dtype
        if tensor.is_floating_point() and torch.finfo(dtype).max < torch.finfo(tensor.dtype).max:
            overflow = int((~torch.isfinite(tensor.to(dtype))).sum())
            if overflow:
                raise RelstitchError(f"weight {name!r} has {overflow} value(s) beyond the range of {what}'s "
                                     f"{str(dtype).removeprefix('torch.')}", path=path,
                                     hint="build the model in a wider dtype (float32)")
    model.load_state_dict(state)


def _image_encoder(model: nn.Module, architecture: dict[str, Any], spec: dict[str, Any], name: str,
                   source: str) -> Encoder:
    architecture = dict(architecture, input=spec)  # preprocessing changes the latents: it is part of identity
    return Encoder(module=LatentTap(model, architecture.get("layer")).eval(), architecture=architecture, input_spec=spec,
                   latent_dim=0, name=name, meta={"source": source})  # latent size: learnt on the first batch


def _image_spec(opts: SourceOptions, *, resize: list[int] | None, channels: int | None, mean: Any, std: Any) -> dict[str, Any]:
    spec = {"modality": "image", "scale": 255.0, "resize": opts.resize or resize, "channels": opts.channels or channels,
            "mean": opts.mean if opts.mean is not None else mean, "std": opts.std if opts.std is not None else std}
    return {k: v for k, v in spec.items() if v is not None}


@register_model_source("torchvision", ("weights", "layer", "resize", "channels", "mean", "std"),
                       "a torchvision architecture with a local weights file")
def _load_torchvision(locator: str, opts: SourceOptions) -> Encoder:
    arch, kwargs = _parse_call(locator)
    import torchvision

    known = torchvision.models.list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=1)
        raise RelstitchError(f"torchvision has no model {arch!r}",
                             hint=f"did you mean {close[0]!r}?" if close else "see torchvision.models.list_models()")
    if not opts.weights:
        raise UsageError(f"torchvision:{arch} needs a local weights file (relstitch never downloads)",
                         hint=f"write torchvision:{arch}#weights=FILE or pass -O weights=FILE")
    try:
        model = torchvision.models.get_model(arch, weights=None, **kwargs)
    except (TypeError, ValueError) as exc:
        raise RelstitchError(f"cannot build torchvision:{arch}: {_first_line(exc)}") from None
    fit_weights(model, opts.weights, f"torchvision:{arch}")
    layer = opts.layer or next((f"{n}:input" for n in CLASSIFIER_NAMES if isinstance(getattr(model, n, None), nn.Module)), None)
    if layer is None:
        raise UsageError(f"torchvision:{arch} has no fc/classifier/head: say which layer is the latent", hint="-O layer=NAME")
    spec = _image_spec(opts, resize=[224, 224], channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    architecture = {"name": f"torchvision:{arch}", "args": kwargs, "layer": layer}
    return _image_encoder(model, architecture, spec, opts.name or arch, f"torchvision:{arch}")


@register_model_source("python", ("weights", "layer", "resize", "channels", "mean", "std"),
                       "a torch.nn.Module built by a Python function: package.module:function(key=value)")
def _load_python(locator: str, opts: SourceOptions) -> Encoder:
    target, kwargs = _parse_call(locator)
    module_name, sep, function_name = target.rpartition(":")
    if not sep or not module_name or not function_name:
        raise UsageError(f"python:{locator}: expected python:package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise RelstitchError(f"cannot import {module_name!r}: {_first_line(exc)}",
                             hint="check the module path and that it is installed") from None
    factory: Any = module
    for part in function_name.split("."):  # Class.classmethod works too (EfficientNet.from_name)
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise RelstitchError(f"module {module_name!r} has no function {function_name!r}")
    try:
        model = factory(**kwargs)
    except Exception as exc:  # the user's factory failed: report it in one line
        raise RelstitchError(f"{target}({', '.join(kwargs)}) raised {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise RelstitchError(f"{target} returned {type(model).__name__}, not a torch.nn.Module")
    if opts.weights:
        fit_weights(model, opts.weights, target)
    spec = _image_spec(opts, resize=None, channels=None, mean=0.0, std=1.0)
    architecture = {"name": f"python:{target}", "args": kwargs, "layer": opts.layer}
    return _image_encoder(model, architecture, spec, opts.name or function_name, f"python:{target}")


def list_model_sources() -> dict[str, str]:
    """Kind → one-line description, for help texts."""
    return {kind: source.help for kind, source in MODEL_SOURCES.items()}


__all__ = ["MODEL_SOURCES", "LatentTap", "PrecomputedEncoder", "SourceOptions", "TextEncoder", "as_encoder",
           "check_options_apply", "check_precomputed", "fit_weights", "list_model_sources", "load_encoder_ref", "parse_options",
           "register_model_source", "stitch_precomputed"]

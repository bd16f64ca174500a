"""``hf:DIR`` or ``hf:ORG/NAME[@REVISION]``: a Hugging Face ``transformers`` text encoder from a local folder
or the local Hugging Face cache.

An existing folder wins; otherwise an ``ORG/NAME`` locator is looked up in the Hugging Face cache by
``huggingface_hub`` itself (:mod:`.hub`), never on the network. The model and tokenizer are loaded with
``local_files_only``; the latent is the pooled last hidden state (``cls``, ``mean``, ...). A
sentence-transformers folder (``modules.json``) is read as sentence-transformers reads it: its pooling,
``Normalize`` module, maximum length and lower-casing are the defaults, options override them. Remote code
(``auto_map``) is refused unless ``trust_remote_code``.

The encoder's identity covers the weights, the config, pooling, normalisation, maximum length and the
tokenizer's *behaviour* (vocabulary, special tokens, the ids it gives a fixed probe set), never the folder's
path nor which files carry the tokenizer: the same snapshot found by id or by folder is the same encoder.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from ..data.text import TextViews
from ..encoding import DTYPES
from ..errors import RelstitchError, UsageError, printable, unknown_choice
from ..io.userfiles import MAX_CONFIG_BYTES, check_folder_files, open_regular, read_text
from .base import SourceEncoder, SourceOptions, first_line, register_model_source
from .hub import cached_snapshot, split_hub_id

POOLINGS = ("cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
"""sentence-transformers' pooling modes, in the order it concatenates several."""


@dataclass
class TextEncoder(SourceEncoder):
    """A Hugging Face model + tokenizer: texts of one view → pooled hidden states ``[B, hidden]`` (one
    ``hidden`` per pooling mode, concatenated), unit-norm when ``normalize``."""

    tokenizer: Any = None
    pooling: tuple[str, ...] = ("cls",)
    normalize: bool = False
    max_length: int = 512
    view: str | None = None

    def prepare(self, raw_batch: Any) -> Mapping[str, torch.Tensor]:
        if not isinstance(raw_batch, TextViews):
            raise RelstitchError(
                f"text encoder {self.name!r} was given image data",
                path=self.path,
                hint="give it text data (jsonl:FILE or csv:FILE)",
            )
        texts = raw_batch.view(self.view)
        tokens: Mapping[str, torch.Tensor] = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )  # a BatchEncoding
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
        # Tokenizers add token_type_ids that custom (remote-code) models often do not take: pass only what
        # forward reads.
        # ... on the model's device (the tokenizer makes CPU tensors; embed may have moved the model)
        device = next(self.module.parameters(), torch.empty(0)).device
        feed = {k: v.to(device) for k, v in tokens.items() if self._takes is None or k in self._takes}
        hidden: torch.Tensor = self.module(**feed)[0]  # last hidden state [B, T, H]
        mask = tokens.get("attention_mask")
        pooled = pool(hidden, torch.ones(hidden.shape[:2]) if mask is None else mask, self.pooling)
        return torch.nn.functional.normalize(pooled, p=2, dim=-1) if self.normalize else pooled


def pool(hidden: torch.Tensor, mask: torch.Tensor, modes: tuple[str, ...]) -> torch.Tensor:
    """Token states ``[B, T, H]`` → ``[B, H * len(modes)]``, as sentence-transformers' ``Pooling`` computes
    each mode (padding never counts; half precision is summed in float32)."""
    work = hidden.float() if hidden.dtype in (torch.float16, torch.bfloat16) else hidden
    weights = mask.to(work.device, work.dtype).unsqueeze(-1)  # [B, T, 1]: 1 for real tokens
    rows, length = torch.arange(len(work), device=work.device), work.shape[1]
    first = mask.to(torch.int32).argmax(dim=1)  # the first real token (left padding has it further on)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(work[rows, first.to(work.device)])
        elif mode == "lasttoken":
            found, back = mask.flip(1).max(1)
            back = torch.where(found == 0, length - 1, back)
            out.append((work * weights)[rows, (length - back - 1).to(work.device)])
        elif mode == "max":
            out.append(work.masked_fill(weights == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            count = weights.sum(1).clamp(min=1e-9)
            out.append((work * weights).sum(1) / (count if mode == "mean" else count.sqrt()))
        else:  # weightedmean: position weights 1, 2, ... from the first real token
            position = torch.arange(1, length + 1, device=work.device, dtype=work.dtype).view(1, -1, 1)
            weighted = weights * (position - first.to(work.device, work.dtype).view(-1, 1, 1))
            out.append((work * weighted).sum(1) / weighted.sum(1).clamp(min=1e-9))
    return torch.cat(out, dim=-1).to(hidden.dtype)


PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS; tHe QuIcK bRoWn",
    "Café, naïve résumé; Ñandú — façade Straße",
    "e\u0301 e\u0300 a\u0308 vs é è ä",  # combining accents: Unicode normalisation changes the ids
    "don't can't it's O'Neil e-mail well-known semi:colon (parens) [brackets] {braces} \"quoted\"",
    "3.14159 1,000,000 $100 50% #1 @user http://example.com/a?b=c",
    "  leading and   repeated\tspaces\nnew line\u00a0no-break\u200bzero-width ",
    "日本語のテキスト 中文文本 한국어 ภาษาไทย",
    "Привет мир Γειά σου κόσμε مرحبا بالعالم שלום עולם",
    "emoji 😀👍🏽 and symbols ©®™ ∑∞≠ ½",
    "[CLS] [SEP] [PAD] [MASK] [UNK] <s> </s> <pad> <mask> <unk> <|endoftext|>",
    "a" * 120 + " " + "supercalifragilisticexpialidocious" * 4,
    "",
)
"""Texts whose ids show how a tokenizer normalises, splits and wraps text (case, accents, punctuation,
scripts, whitespace, special-token look-alikes, over-long words)."""


def tokenizer_sha256(tokenizer: Any) -> str:
    """The hash of what a tokenizer does, not of the files that carry it (issue #17).

    It covers the vocabulary (token → id), the special tokens, the padding and truncation sides, and the
    ids it gives :data:`PROBE_TEXTS` plus probes made of its own vocabulary (as written, upper-case and
    title-case: lower-casing shows there even in a tiny vocabulary). The same tokenizer saved as
    ``vocab.txt`` or as ``tokenizer.json`` hashes the same; another vocabulary or normalisation does not.
    """
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: (item[1], item[0]))
    step = max(1, len(vocab) // 256)
    words = [token.lstrip("#").replace("Ġ", " ").replace("▁", " ").strip() for token, _ in vocab[::step]]
    words = [w for w in words if w][:256]
    chunks = [" ".join(words[i : i + 32]) for i in range(0, len(words), 32)]
    probes = [*PROBE_TEXTS, *chunks, *(c.upper() for c in chunks), *(c.title() for c in chunks)]
    ids = tokenizer(probes, add_special_tokens=True, truncation=False, padding=False)["input_ids"]
    record = {
        "vocab": vocab,
        "special": dict(sorted(tokenizer.special_tokens_map.items())),
        "padding_side": getattr(tokenizer, "padding_side", None),
        "truncation_side": getattr(tokenizer, "truncation_side", None),
        "probes": [list(map(int, row)) for row in ids],
    }
    return hashlib.sha256(json.dumps(record, ensure_ascii=False, default=str).encode()).hexdigest()


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
        tokenizer_config = json.loads(
            read_text(
                folder / "tokenizer_config.json", limit=MAX_CONFIG_BYTES, what="a model's JSON configuration"
            )
        )
        maps.append(tokenizer_config.get("auto_map") if isinstance(tokenizer_config, dict) else None)
    except (
        OSError,
        ValueError,
        RecursionError,
    ):  # ValueError: JSONDecodeError, or a number too long to convert
        pass  # no (readable) tokenizer config: AutoTokenizer reports it when loading
    files: set[str] = set()
    for auto_map in (m for m in maps if m is not None):
        refs = list(auto_map.values()) if isinstance(auto_map, dict) else [auto_map]
        for (
            ref
        ) in refs:  # "modeling_x.Class", a [slow, fast] pair for tokenizers, or "org/repo--modeling_x.Class"
            for one in ref if isinstance(ref, list) else [ref]:
                if isinstance(one, str) and "." in one:
                    files.add(one.rpartition(".")[0] + ".py")
        if not files:  # an auto_map relstitch cannot read still asks for code
            files.add("auto_map")
    return sorted(files)


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


# -------------------------------------------------------------------------- sentence-transformers
ST_MODULES = ("Transformer", "Pooling", "Normalize")
"""The sentence-transformers modules relstitch reads (by their class name, as data: never imported)."""
_LEGACY_POOLING_KEYS = {  # sentence-transformers < 6: one boolean per mode, in its concatenation order
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class SentenceSettings:
    """What a sentence-transformers folder says about feeding and pooling its transformer."""

    transformer: str  # the Transformer module's subfolder ("" = the folder itself, "0_Transformer" of old)
    pooling: tuple[str, ...]
    normalize: bool
    max_length: int | None
    lower_case: bool
    modules: tuple[str, ...]


def _read_json(path: Path, what: str, *, required: bool = True) -> Any:
    if not path.exists() and not required:
        return None
    try:
        return json.loads(read_text(path, limit=MAX_CONFIG_BYTES, what=what))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, a number too long
        raise RelstitchError(f"cannot read {what}: {first_line(exc)}", path=path) from None


def _module_folder(folder: Path, entry: Mapping[str, Any], modules_file: Path) -> Path:
    """A module's folder, inside ``folder`` only (``modules.json`` is data: it never points elsewhere)."""
    sub = PurePosixPath(str(entry.get("path") or ""))
    if sub.is_absolute() or ".." in sub.parts or "\\" in str(sub):
        raise RelstitchError(f"module path {str(sub)!r} leaves the model folder", path=modules_file)
    return folder / sub


def read_sentence_transformers(folder: Path) -> SentenceSettings:
    """Read a sentence-transformers folder's ``modules.json`` and module configs, as sentence-transformers
    does: Transformer (``sentence_bert_config.json``: ``max_seq_length``, ``do_lower_case``), Pooling
    (``config.json``: ``pooling_mode`` or the older ``pooling_mode_*`` flags) and an optional Normalize.

    Any other module (Dense, a router, ...) or a default prompt is refused: relstitch would compute other
    vectors than sentence-transformers does, so it says so instead.
    """
    modules_file = folder / "modules.json"
    entries = _read_json(modules_file, "sentence-transformers modules.json")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("type"), str) and isinstance(e.get("path", ""), str)
        for e in entries
    ):
        raise RelstitchError("modules.json is not a list of {idx, path, type} modules", path=modules_file)
    entries = sorted(entries, key=lambda e: e.get("idx", 0) if isinstance(e.get("idx", 0), int) else 0)
    kinds = tuple(str(e["type"]).rpartition(".")[2] for e in entries)
    foreign = [
        printable(str(e["type"]))
        for e, kind in zip(entries, kinds)
        if kind not in ST_MODULES or not str(e["type"]).startswith("sentence_transformers.")
    ]
    if foreign or kinds[:2] != ("Transformer", "Pooling") or kinds[2:] not in ((), ("Normalize",)):
        raise RelstitchError(
            f"relstitch reads sentence-transformers models made of Transformer, Pooling and an optional "
            f"Normalize; this one has {', '.join(foreign) or ' → '.join(kinds)}",
            path=modules_file,
            hint="encode it with sentence-transformers and pass the vectors as embeddings:FILE",
        )
    transformer, pooler = (_module_folder(folder, e, modules_file) for e in entries[:2])
    sbert_file = transformer / "sentence_bert_config.json"
    sbert = _read_json(sbert_file, "sentence_bert_config.json", required=False) or {}
    if not isinstance(sbert, dict):
        raise RelstitchError("sentence_bert_config.json is not a JSON object", path=sbert_file)
    max_length, lower = sbert.get("max_seq_length"), sbert.get("do_lower_case", False)
    if not (max_length is None or type(max_length) is int and max_length > 0):
        raise RelstitchError("max_seq_length must be a positive integer", path=sbert_file)
    if not isinstance(lower, bool):
        raise RelstitchError("do_lower_case must be true or false", path=sbert_file)
    task = sbert.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise RelstitchError(
            f"a transformer for {printable(str(task))[:60]!r}: relstitch reads feature-extraction models",
            path=sbert_file,
        )
    pooling_file = pooler / "config.json"
    pooling = _read_json(pooling_file, "the Pooling module's config.json")
    modes = pooling.get("pooling_mode") if isinstance(pooling, dict) else None
    if isinstance(pooling, dict) and modes is None:
        modes = [mode for key, mode in _LEGACY_POOLING_KEYS.items() if pooling.get(key) is True] or ["mean"]
    modes = [modes] if isinstance(modes, str) else modes
    if not isinstance(modes, list) or not modes or any(m not in POOLINGS for m in modes):
        raise RelstitchError(
            f"unknown pooling mode(s) {printable(str(modes))[:100]}; "
            f"sentence-transformers knows {', '.join(POOLINGS)}",
            path=pooling_file,
        )
    if len(entries) == 3:
        normalize = _read_json(
            _module_folder(folder, entries[2], modules_file) / "config.json",
            "the Normalize module's config.json",
            required=False,
        )
        if isinstance(normalize, dict) and normalize.get("module_input_name", "sentence_embedding") != (
            "sentence_embedding"
        ):
            raise RelstitchError(
                "a Normalize module on token embeddings: relstitch reads sentence embeddings",
                path=_module_folder(folder, entries[2], modules_file),
            )
    settings_file = folder / "config_sentence_transformers.json"
    settings = _read_json(settings_file, "config_sentence_transformers.json", required=False) or {}
    prompt_name = settings.get("default_prompt_name") if isinstance(settings, dict) else None
    prompts = settings.get("prompts") if isinstance(settings, dict) else None
    prompt = prompts.get(prompt_name) if isinstance(prompts, dict) and isinstance(prompt_name, str) else None
    if prompt:  # sentence-transformers would prefix every text with it: other vectors than relstitch's
        raise RelstitchError(
            f"the model prefixes every text with its default prompt {printable(str(prompt_name))!r}, "
            "which relstitch does not",
            path=settings_file,
            hint="set default_prompt_name to null there to encode the texts as they are",
        )
    return SentenceSettings(
        transformer="" if transformer == folder else transformer.relative_to(folder).as_posix(),
        pooling=tuple(modes),
        normalize=len(entries) == 3,
        max_length=max_length,
        lower_case=lower,
        modules=kinds,
    )


def _lower_case(tokenizer: Any) -> None:
    """Make a tokenizer lower-case its input, as sentence-transformers does for ``do_lower_case``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer: its own flag
        tokenizer.do_lower_case = True
        return
    from tokenizers.normalizers import Lowercase, Sequence

    normalizer: Any = backend.normalizer
    members: Any = normalizer  # a Sequence iterates over its parts (its stubs do not say so)
    parts = list(members) if isinstance(normalizer, Sequence) else [normalizer] if normalizer else []
    if not any(isinstance(part, Lowercase) for part in parts):
        backend.normalizer = Sequence([Lowercase(), *parts])


# ------------------------------------------------------------------------------------- loading
def resolve_model_folder(locator: str) -> tuple[Path, dict[str, Any], str]:
    """``hf:`` locator → (folder, what it resolved to, default name).

    An existing folder wins. Otherwise an ``ORG/NAME[@REVISION]`` locator is a Hub id, looked up in the
    local Hugging Face cache by ``huggingface_hub`` (never the network); anything else is a missing folder.
    """
    folder = Path(locator)
    if folder.is_dir():
        return folder, {"folder": str(folder.resolve())}, printable(folder.resolve().name)
    hub = split_hub_id(locator)
    if hub is None or folder.exists():
        raise RelstitchError(
            "no such model folder" if not folder.exists() else "not a folder",
            path=folder,
            hint="name a folder written by save_pretrained, or a Hub id ORG/NAME[@REVISION] in your "
            "Hugging Face cache",
        )
    repo_id, revision = hub
    snapshot, resolved = cached_snapshot(repo_id, revision, also_a_folder=True)
    return snapshot, {**resolved, "folder": str(snapshot)}, printable(repo_id.rpartition("/")[2])


@register_model_source(
    "hf",
    ("view", "pooling", "normalize", "max_length", "dtype"),
    "a Hugging Face transformers model: a local folder, or ORG/NAME[@REVISION] from the Hugging Face cache",
)
def _load_hf(locator: str, opts: SourceOptions) -> TextEncoder:
    folder, resolved, default_name = resolve_model_folder(locator)
    check_folder_files(
        folder
    )  # transformers opens the folder's files by path: a FIFO there would block it forever
    sentence = read_sentence_transformers(folder) if (folder / "modules.json").exists() else None
    model_folder = folder / sentence.transformer if sentence and sentence.transformer else folder
    if sentence:
        resolved["sentence_transformers"] = list(sentence.modules)
        check_folder_files(model_folder)
    config_file = model_folder / "config.json"
    if not config_file.is_file():
        raise RelstitchError(
            "not a Hugging Face model folder: no config.json",
            path=model_folder,
            hint="save the model with model.save_pretrained(DIR)",
        )
    config = _read_json(config_file, "a model's JSON configuration")
    if not isinstance(config, dict):
        raise RelstitchError("config.json is not a JSON object", path=config_file)
    code = _remote_code(model_folder, config)
    if code and not opts.trust_remote_code:
        # Refused here, before transformers sees the folder: its own refusal is a long, Hub-worded message
        # and, on a terminal, an interactive prompt.
        raise RelstitchError(
            f"the model runs Python code shipped in its folder ({', '.join(code)}, named by auto_map)",
            path=model_folder,
            hint="read that code, then pass --trust-remote-code (trust_remote_code=True) "
            "only if you trust it",
        )
    if opts.pooling is not None and opts.pooling not in POOLINGS:
        raise unknown_choice("pooling", opts.pooling, POOLINGS)
    pooling = (opts.pooling,) if opts.pooling else sentence.pooling if sentence else ("cls",)
    normalize = opts.normalize if opts.normalize is not None else bool(sentence and sentence.normalize)
    if opts.dtype is not None and opts.dtype not in DTYPES:
        raise unknown_choice("dtype", opts.dtype, DTYPES)
    if opts.max_length is not None and opts.max_length < 1:
        raise UsageError(f"max_length must be at least 1, not {opts.max_length}")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    common = {"local_files_only": True, "trust_remote_code": opts.trust_remote_code}
    shown, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    # relstitch reports what matters itself: no loading bars or load reports
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        model_class: Any = AutoModel
        custom_class = (
            (config.get("auto_map") or {}).get("AutoModel")
            if isinstance(config.get("auto_map"), dict)
            else None
        )
        if code and isinstance(custom_class, str):
            # The folder's own class, imported by the hash of its code. Through AutoModel, a second folder
            # whose configuration code matches an earlier one's would get that earlier folder's model class
            # in this process.
            from transformers.dynamic_module_utils import get_class_from_dynamic_module

            model_class = get_class_from_dynamic_module(
                custom_class, str(model_folder), local_files_only=True
            )
        model, info = model_class.from_pretrained(
            model_folder, dtype=DTYPES[opts.dtype or "float32"], output_loading_info=True, **common
        )
        tokenizer = AutoTokenizer.from_pretrained(model_folder, **common)
        if sentence and sentence.lower_case:
            _lower_case(tokenizer)
        tokenizer_hash = tokenizer_sha256(tokenizer)  # here: its probes may pass the maximum length quietly
    except (
        Exception
    ) as exc:  # transformers raises OSError/ValueError/KeyError/...: all mean "this folder will not load"
        raise RelstitchError(f"cannot load the model: {first_line(exc)}", path=model_folder) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if shown:
            hf_logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys") or [])
    if (
        missing
        and all(k.startswith("pooler.") for k in missing)
        and getattr(model, "pooler", None) is not None
    ):
        # Sentence encoders often ship without the pooler head; relstitch never uses it (cls = first token's
        # state). Left in, its random initialisation would make the encoder's hash differ at every load.
        model.pooler = None
    elif missing:
        raise RelstitchError(
            f"the weights lack {len(missing)} tensor(s) the model needs ({', '.join(missing[:4])}): "
            "they would be random",
            path=model_folder,
            hint="save the complete model with save_pretrained",
        )
    limits = [
        n for n in (getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length) if n
    ]
    # sentence-transformers truncates at its max_seq_length, else at the tokenizer's limit capped by the
    # model's positions; a plain folder keeps relstitch's cap of 512
    default_length = (sentence.max_length or min(limits)) if sentence and limits else min([512, *limits])
    max_length = opts.max_length or (sentence.max_length if sentence else None) or default_length
    settings = json.loads(model.config.to_json_string(use_diff=False))
    # paths and versions are not content; dtype shows in the weights; use_cache (a key/value cache for
    # generation, which sentence-transformers turns off when it saves) changes no hidden state
    for volatile in (
        "_name_or_path",
        "transformers_version",
        "_commit_hash",
        "dtype",
        "torch_dtype",
        "use_cache",
    ):
        settings.pop(volatile, None)
    pooling_label: str | list[str] = pooling[0] if len(pooling) == 1 else list(pooling)
    architecture = {
        "name": hf_architecture_name(model.config),
        "model_type": settings.get("model_type"),
        "config": settings,
        "pooling": pooling_label,
        "normalize": normalize,  # unit-norm latents: cosine projections ignore it, absolute decoders do not
        "max_length": max_length,
        "tokenizer_sha256": tokenizer_hash,
    }
    if opts.view:
        architecture["view"] = opts.view  # the same weights reading another language are another encoder
    if code:  # the code computes the latents: other code, other encoder (and another diagonal)
        architecture["code_sha256"] = _files_hash(
            model_folder, tuple(sorted(p.name for p in model_folder.glob("*.py")))
        )
    hidden_size = getattr(model.config, "hidden_size", None)  # custom configs may name it otherwise
    return TextEncoder(
        module=model.eval(),
        architecture=architecture,
        input_spec={
            "modality": "text",
            "view": opts.view,
            "pooling": pooling_label,
            "normalize": normalize,
            "max_length": max_length,
        },
        latent_dim=hidden_size * len(pooling) if isinstance(hidden_size, int) else 0,  # 0: learnt later
        name=opts.name or default_name,
        meta={"source": f"hf:{locator}"},
        path=folder,
        resolved=resolved,
        tokenizer=tokenizer,
        pooling=pooling,
        normalize=normalize,
        max_length=max_length,
        view=opts.view,
    )

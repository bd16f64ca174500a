"""``hf:DIR``: a Hugging Face ``transformers`` model saved in a local folder (text encoders).

The folder's model and tokenizer are loaded with ``local_files_only``; the latent is the pooled last
hidden state (``cls`` or ``mean``). Remote code (``auto_map``) is refused unless ``trust_remote_code``.
The encoder's identity covers the weights, the config, pooling, maximum length and tokenizer files, never
the folder's path.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from ..components import Encoder
from ..data.text import TextViews
from ..encoding import DTYPES
from ..errors import RelstitchError, printable, unknown_choice
from ..io.userfiles import MAX_CONFIG_BYTES, check_folder_files, open_regular, read_text
from .base import SourceOptions, first_line, register_model_source

POOLINGS = ("cls", "mean")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "added_tokens.json",
)


@dataclass
class TextEncoder(Encoder):
    """A Hugging Face model + tokenizer: texts of one view → pooled hidden states ``[B, hidden]``."""

    tokenizer: Any = None
    pooling: str = "cls"
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


@register_model_source(
    "hf", ("view", "pooling", "max_length", "dtype"), "a Hugging Face transformers model in a local folder"
)
def _load_hf(locator: str, opts: SourceOptions) -> TextEncoder:
    folder = Path(locator)
    if not folder.is_dir():
        raise RelstitchError(
            "no such model folder", path=folder, hint="name a folder written by save_pretrained"
        )
    check_folder_files(
        folder
    )  # transformers opens the folder's files by path: a FIFO there would block it forever
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise RelstitchError(
            "not a Hugging Face model folder: no config.json",
            path=folder,
            hint="save the model with model.save_pretrained(DIR)",
        )
    try:
        config = json.loads(
            read_text(config_file, limit=MAX_CONFIG_BYTES, what="a model's JSON configuration")
        )
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, or a number too long
        raise RelstitchError(f"cannot read config.json: {first_line(exc)}", path=config_file) from None
    code = _remote_code(folder, config)
    if code and not opts.trust_remote_code:
        # Refused here, before transformers sees the folder: its own refusal is a long, Hub-worded message
        # and, on a terminal, an interactive prompt.
        raise RelstitchError(
            f"the model runs Python code shipped in its folder ({', '.join(code)}, named by auto_map)",
            path=folder,
            hint="read that code, then pass --trust-remote-code (trust_remote_code=True) "
            "only if you trust it",
        )
    if opts.pooling not in POOLINGS:
        raise unknown_choice("pooling", opts.pooling, POOLINGS)
    if opts.dtype is not None and opts.dtype not in DTYPES:
        raise unknown_choice("dtype", opts.dtype, DTYPES)
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

            model_class = get_class_from_dynamic_module(custom_class, str(folder), local_files_only=True)
        model, info = model_class.from_pretrained(
            folder, dtype=DTYPES[opts.dtype or "float32"], output_loading_info=True, **common
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, **common)
    except (
        Exception
    ) as exc:  # transformers raises OSError/ValueError/KeyError/...: all mean "this folder will not load"
        raise RelstitchError(f"cannot load the model: {first_line(exc)}", path=folder) from None
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
            path=folder,
            hint="save the complete model with save_pretrained",
        )
    limits = [
        n for n in (getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length) if n
    ]
    max_length = opts.max_length or min([512, *limits])
    settings = json.loads(model.config.to_json_string(use_diff=False))
    for volatile in ("_name_or_path", "transformers_version", "_commit_hash", "dtype", "torch_dtype"):
        settings.pop(volatile, None)  # paths and versions are not content; dtype shows in the weights
    architecture = {
        "name": hf_architecture_name(model.config),
        "model_type": settings.get("model_type"),
        "config": settings,
        "pooling": opts.pooling,
        "max_length": max_length,
        "tokenizer_sha256": _files_hash(folder, TOKENIZER_FILES),
    }
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

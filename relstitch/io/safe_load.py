"""Loading weights from files nobody vouched for, without running code hidden in them.

``.safetensors`` files hold no code: their header is validated (:func:`relstitch.io.artifacts.read_header`)
before any tensor is read. ``.pt``/``.pth``/``.bin`` files are pickles; they are opened only with
``torch.load(weights_only=True)``, whose unpickler refuses every global outside a small allow-list. A
refused file is reported with the globals it asked for and is never retried with ``weights_only=False``.
"""

from __future__ import annotations

import os
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

from ..errors import RelstitchError
from .artifacts import read_header
from .userfiles import check_regular, open_regular

if TYPE_CHECKING:
    import torch

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin")
# Training checkpoints often wrap the state dict; these are the wrappers we unwrap, nothing else.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_GLOBAL_IN_ERROR = re.compile(r"GLOBAL ([\w.]+)")


def load_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a weights file (``.safetensors``, ``.pt``, ``.pth``, ``.bin``), loaded on CPU without
    pickle code.

    Raises :class:`RelstitchError` for a missing, corrupt or unsafe file; the message of an unsafe
    pickle names the globals it wanted to import.
    """
    p = check_regular(path, expected="a weights file")
    suffix = p.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _load_safetensors(p)
    if suffix in PICKLE_SUFFIXES:
        return _load_pickle(p)
    known = ", ".join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)
    raise RelstitchError(
        f"unknown weights format {suffix or '(no suffix)'!r}", path=p, hint=f"expected one of {known}"
    )


def _load_safetensors(p: Path) -> dict[str, torch.Tensor]:
    read_header(p)  # refuses hostile headers (sizes, offsets, dtypes) before safetensors touches the data
    from safetensors.torch import load_file  # noqa: PLC0415  (lazy: torch stays out of start-up)

    check_regular(p)  # read_header read it through a descriptor; load_file reopens the path
    try:
        return load_file(str(p))
    except Exception as exc:  # safetensors' own error types; the header already passed our checks
        raise RelstitchError(f"cannot read tensors: {exc}", path=p) from None


def _load_pickle(p: Path) -> dict[str, torch.Tensor]:
    import pickle  # noqa: PLC0415  (only for its exception type: nothing here unpickles outside torch)

    import torch  # noqa: PLC0415

    try:
        with warnings.catch_warnings():
            # torch warns about unusual pickle protocols; the refusal below is the message that matters.
            warnings.simplefilter("ignore")
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = unsafe_globals(p, str(exc))
        if found:
            raise RelstitchError(
                f"refused: the file imports code ({', '.join(found)}), which a weights file must not",
                path=p,
                hint="convert it to .safetensors where you trust its source",
            ) from None
        raise RelstitchError(
            "refused: not a plain-tensor PyTorch file (torch's safe loader rejected it)", path=p
        ) from None
    except (
        Exception
    ) as exc:  # torch raises RuntimeError/EOFError/ValueError/... for files that are not its own
        text = str(exc).strip()
        reason = text.splitlines()[0][:200] if text and not isinstance(exc, KeyError) else type(exc).__name__
        raise RelstitchError(f"not a readable PyTorch weights file ({reason})", path=p) from None
    return _tensor_dict(p, obj)


def unsafe_globals(path: str | os.PathLike[str], error_text: str = "") -> list[str]:
    """The globals (``module.name``) a pickle-based file asks for that torch's safe loader refuses.

    Read from torch's error text first, then from the pickle opcodes themselves (never executed).
    """
    found = _GLOBAL_IN_ERROR.findall(error_text)
    if not found:
        found = _scan_pickle_globals(Path(path))
    return sorted(set(found))


def _scan_pickle_globals(p: Path) -> list[str]:
    """GLOBAL/STACK_GLOBAL targets of the pickle(s) in a file, by static disassembly (no execution)."""
    import torch  # noqa: PLC0415

    try:
        if zipfile.is_zipfile(p):
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(p)))
        with open_regular(p) as handle:
            return _opcode_globals(handle.read())
    except Exception:  # a scan is best effort: the refusal stands even when the file is too mangled to read
        return []


def _opcode_globals(data: bytes) -> list[str]:
    allowed = _allowed_globals()
    found: list[str] = []
    strings: list[str] = []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            found.append(str(arg).replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append(f"{strings[-2]}.{strings[-1]}")
        elif isinstance(arg, str):
            strings.append(arg)
    return [g for g in found if g not in allowed]


def _allowed_globals() -> set[str]:
    """torch's own allow-list, so the report names only what torch refuses (private API: best effort)."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals  # noqa: PLC0415

        return set(_get_allowed_globals())
    except (
        Exception
    ):  # an older/newer torch without it: report every global, which over-states but never hides
        return set()


def _tensor_dict(p: Path, obj: object) -> dict[str, torch.Tensor]:
    import torch  # noqa: PLC0415

    def all_tensors(m: object) -> TypeGuard[Mapping[str, torch.Tensor]]:
        return isinstance(m, Mapping) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in m.items()
        )

    if isinstance(obj, Mapping) and not all_tensors(obj):
        wrapped = [obj[k] for k in _WRAPPER_KEYS if k in obj and all_tensors(obj[k])]
        if wrapped:
            obj = wrapped[0]
    if not all_tensors(obj) or not obj:
        what = "an empty mapping" if isinstance(obj, Mapping) and not obj else f"a {type(obj).__name__}"
        raise RelstitchError(f"holds {what}, expected a mapping of names to tensors (a state dict)", path=p)
    return dict(obj)

"""Process-level tuning that the CLI applies before any work: how freed memory is kept.

glibc's malloc hands large blocks back to the kernel as soon as they are freed (blocks over its mmap
threshold are unmapped; the top of the heap is trimmed past 2x that threshold). An encoder's forward
pass frees and re-allocates the same activation buffers batch after batch, so with the defaults every
batch page-faults its activations back in: on the shipped CNN that is two thirds of the forward time
(``bench/allocator.py``). Keeping freed memory for reuse removes those faults without raising the
peak: the process never holds more than it needed at once, it just does not give it back between
batches.

A library must not change its host process's allocator behind its back, so only the ``relstitch``
command calls :func:`tune_allocator`; library users call it themselves if they want the same.
"""

from __future__ import annotations

import os
import sys

MMAP_THRESHOLD = 32 * 1024**2
"""Blocks up to this size come from the heap and are reused (32 MiB is the most glibc accepts on 64-bit)."""
TRIM_THRESHOLD = 256 * 1024**2
"""Free memory kept at the top of the heap before glibc returns it to the kernel."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
OPT_OUT = "RELSTITCH_ALLOCATOR"
"""Set to ``system`` to leave the allocator as it is."""
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "LD_PRELOAD")

_applied: bool | None = None


def tune_allocator() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring); True when applied.

    Does nothing (and returns False) off Linux/glibc, when ``RELSTITCH_ALLOCATOR=system``, or when the
    user already tuned malloc (``MALLOC_*_`` variables) or preloaded another allocator (``LD_PRELOAD``,
    e.g. jemalloc or tcmalloc): their choice wins. Idempotent.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT, "").lower() == "system":
        return False
    if any(os.environ.get(name) for name in _USER_SETTINGS):
        return False
    import ctypes  # noqa: PLC0415  (only here: --help never needs it)

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: no mallopt, nothing to tune
        return False
    # Both or neither: setting the trim threshold alone also freezes the mmap threshold at 128 KiB,
    # which is slower than the defaults (every activation would be unmapped after use).
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1:
        _applied = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return _applied


MAX_HELD_BYTES = 512 * 1024**2
"""The largest N-row array a space holds whole: its latents (read from an embeddings file) and its relative
vectors under one projection (computed once, read by every decoder of that projection). Past it (a million
samples on ten thousand anchors are 40 GB of relative vectors) the latents stay in their file
(:class:`~relstitch.io.rows.StoredRows`) and the relative vectors are computed slice by slice as each
decoder reads them (:class:`~relstitch.projection.ProjectedRows`), so memory stays flat in N.
``RELSTITCH_MAX_HELD_MB`` in the environment overrides it (:func:`held_budget`)."""
HELD_BUDGET_VARIABLE = "RELSTITCH_MAX_HELD_MB"


def held_budget() -> int:
    """:data:`MAX_HELD_BYTES`, or ``RELSTITCH_MAX_HELD_MB`` MiB when that is set (0: hold nothing N-sized).

    A value that is not a whole number is bad usage (exit 2); the ``relstitch`` command checks it before any
    work, so a typo never surfaces halfway through a matrix.
    """
    from .errors import UsageError  # noqa: PLC0415  (this module stays import-light)

    text = os.environ.get(HELD_BUDGET_VARIABLE, "").strip()
    if not text:
        return MAX_HELD_BYTES
    if not text.isdigit():
        raise UsageError(
            f"{HELD_BUDGET_VARIABLE} is {text[:40]!r}, expected a whole number of MiB (0 or more)",
            hint=f"unset it for the default ({MAX_HELD_BYTES // 1024**2}), or give e.g. 256",
        )
    return int(text) * 1024**2

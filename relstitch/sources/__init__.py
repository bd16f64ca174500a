"""Where models and data come from: one registry of source kinds, each named ``kind:locator``.

- :mod:`relstitch.sources.models` — encoders: relstitch checkpoints (the default), ``hf:DIR``,
  ``torchvision:NAME``, ``python:package.module:function`` and precomputed ``embeddings:FILE``.
- :mod:`relstitch.sources.datasets` — data: ``imagefolder:DIR``, ``tensors:FILE``, ``jsonl:FILE``,
  ``csv:FILE`` (registered in :data:`relstitch.data.DATA_SOURCES` beside ``builtin`` and ``idx``).
- :mod:`relstitch.sources.text` — parallel text views stored as UTF-8 bytes + offsets.

This package imports nothing heavy at import time (``relstitch.data`` imports :mod:`.text`).
"""

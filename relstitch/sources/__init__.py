"""Where models come from: one registry of model source kinds, each named ``kind:locator``.

- :mod:`relstitch.sources.models` — encoders: relstitch checkpoints (the default), ``hf:DIR``,
  ``torchvision:NAME``, ``python:package.module:function`` and precomputed ``embeddings:FILE``.
- :mod:`relstitch.sources.refs` — reading references (``kind:locator#key=value``), shared with the data
  sources of :mod:`relstitch.data.sources`; a ``Path`` is a file and is never parsed.
- :mod:`relstitch.sources.text` — parallel text views stored as UTF-8 bytes + offsets.

This package imports nothing heavy at import time (``relstitch.data`` imports :mod:`.text`).
"""

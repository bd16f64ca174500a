"""Files: the safetensors artifacts and their metadata schema, atomic writes, safe weight loading,
the embeddings cache, and opening the user's files within limits.

- :mod:`.artifacts` — relstitch files (safetensors + ``relstitch.*`` metadata), content hashes, ``inspect``;
- :mod:`.metadata_schema` — what each kind of file's metadata must hold, checked before any tensor is read;
- :mod:`.schema` — the one JSON-schema validator, for reports and file metadata alike;
- :mod:`.atomic` — writes that appear whole or not at all;
- :mod:`.safe_load` — weights from files nobody vouched for, without running code hidden in them;
- :mod:`.cache` — ``eval-matrix --cache``: encode once per (encoder, anchors, data);
- :mod:`.userfiles` — regular files only, never blocking, text read within stated limits.
"""

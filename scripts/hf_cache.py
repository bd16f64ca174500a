"""Put a model folder into a Hugging Face cache, laid out as a download by ``huggingface_hub`` leaves it.

``CACHE/models--ORG--NAME/``: ``blobs/<sha256>`` (the files), ``snapshots/<commit>/...`` (each file a
relative link to its blob, through ``huggingface_hub``'s own ``_create_symlink``) and ``refs/main`` naming
the commit (its own ``_cache_commit_hash_for_specific_revision``). ``hf:ORG/NAME`` then finds the model
with ``HF_HUB_CACHE=CACHE``, exactly as it finds a real download: relstitch never reads the layout itself.

A folder that did not come from the Hub has no commit: the default one is a content hash (sha1 over the
files' paths and sha256), so the same files always give the same snapshot, and other files another one.
Blobs are hard links to the folder's files where the file system allows it (no copy of a 440 MB model),
else copies. Idempotent: a blob already there is kept.

    .venv/bin/python scripts/hf_cache.py FOLDER ORG/NAME --cache CACHE [--commit HEX40]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
from pathlib import Path


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks (a model's weights never sit in memory twice)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def put_in_hf_cache(
    folder: Path, cache: Path, repo_id: str, commit: str | None = None, ref: str | None = "main"
) -> Path:
    """Lay ``folder`` out in ``cache`` as ``huggingface_hub`` lays out a download of ``repo_id``; returns the
    snapshot folder. ``commit`` defaults to a hash of the folder's content; ``ref`` (``main``) names it."""
    from huggingface_hub.file_download import (
        _cache_commit_hash_for_specific_revision,
        _create_symlink,
        repo_folder_name,
    )

    if commit is not None and not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise SystemExit(f"--commit {commit!r}: a commit is 40 lower-case hex digits")
    folder = folder.resolve()  # an assets/ entry is often a link into site-packages
    if not folder.is_dir():
        raise SystemExit(f"{folder}: not a folder (run scripts/fetch-assets.sh first)")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    hashes = {file: file_sha256(file) for file in files}
    if commit is None:
        listing = "".join(f"{f.relative_to(folder).as_posix()}\0{h}\n" for f, h in hashes.items())
        commit = hashlib.sha1(listing.encode()).hexdigest()
    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    for file, sha in hashes.items():
        blob = storage / "blobs" / sha
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            try:
                os.link(file, blob)
            except OSError:  # another file system, or no hard links there
                shutil.copyfile(file, blob)
        pointer = storage / "snapshots" / commit / file.relative_to(folder)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if not pointer.is_symlink():
            _create_symlink(str(blob), str(pointer), new_blob=False)
    if ref is not None:
        _cache_commit_hash_for_specific_revision(str(storage), ref, commit)
    return storage / "snapshots" / commit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="the model's folder (config, weights, tokenizer)")
    p.add_argument("repo_id", help="the Hub id it is found by: ORG/NAME")
    p.add_argument("--cache", type=Path, required=True, help="the cache folder (what HF_HUB_CACHE names)")
    p.add_argument("--commit", help="40 hex digits [default: a hash of the folder's content]")
    p.add_argument("--ref", default="main", help="the branch or tag naming the commit [default: main]")
    args = p.parse_args()
    print(put_in_hf_cache(args.folder, args.cache, args.repo_id, args.commit, args.ref))


if __name__ == "__main__":
    main()

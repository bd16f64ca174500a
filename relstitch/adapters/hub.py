"""Models in the local Hugging Face cache, found by Hub id (``hf:ORG/NAME[@REVISION]``, ``timm:`` weights).

The lookup is ``huggingface_hub``'s own (``snapshot_download(local_files_only=True)``): relstitch never
reads the cache layout itself and never downloads. The cache folder is the one ``huggingface_hub`` uses,
``HF_HUB_CACHE`` (default ``$HF_HOME/hub``, ``~/.cache/huggingface/hub``), as that library read it when it
was imported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import RelstitchError, UsageError, printable

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
"""``ORG/NAME`` as the Hub spells repository ids (letters, digits, ``-``, ``_``, ``.``)."""


def split_hub_id(locator: str) -> tuple[str, str | None] | None:
    """``ORG/NAME`` or ``ORG/NAME@REVISION`` → (id, revision or None); anything else → None (a path).

    Only the shape of what the user typed is read here; whether a folder of that name exists is the
    caller's question (an existing folder wins).
    """
    repo_id, at, revision = locator.partition("@")
    if not HUB_ID.fullmatch(repo_id) or (at and not revision.strip()):
        return None
    if repo_id.startswith(".") or "/." in repo_id or ".." in repo_id:  # ./x, ../x: paths, never ids
        return None
    return repo_id, (revision.strip() or None)


def hub_cache_dir() -> Path:
    """The folder ``huggingface_hub`` looks in (``HF_HUB_CACHE``, default ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def fetch_hint(repo_id: str, revision: str | None) -> str:
    """How to get a Hub model into the cache on a machine with network access."""
    rev = f" --revision {revision}" if revision else ""
    return (
        f"on a machine with network access run `hf download {repo_id}{rev}`, then copy the model's folder "
        "from that machine's Hugging Face cache into this one (or point HF_HUB_CACHE at a copy); "
        "relstitch never downloads"
    )


def cached_snapshot(
    repo_id: str, revision: str | None, *, also_a_folder: bool = False
) -> tuple[Path, dict[str, Any]]:
    """The snapshot folder of a Hub model in the local cache, and what it resolved to.

    Returns (folder, ``{"repo_id", "revision": the commit, "requested_revision", "cache"}``). A model or
    revision that is not cached (or only partly: an interrupted download) is one :class:`RelstitchError`
    naming the id, the cache folder searched and how to fetch it (and, with ``also_a_folder``, that no
    folder of that name exists either).
    """
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    shown = repo_id + (f"@{revision}" if revision else "")
    if revision is not None and (revision.startswith("/") or "\\" in revision or ".." in revision.split("/")):
        # huggingface_hub joins a revision onto the cache's refs/ folder: `..` would read another file there
        raise UsageError(
            f"hf:{printable(shown)}: a revision is a branch, tag or commit, not a path",
            hint="e.g. hf:ORG/NAME@main, @v1.0 or @<commit>",
        )
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True))
    except ValueError as exc:  # HFValidationError: an id or revision the Hub would refuse
        raise RelstitchError(f"not a valid Hugging Face Hub id: {shown!r} ({exc})") from None
    except OSError as exc:  # LocalEntryNotFoundError (a FileNotFoundError), IncompleteSnapshotError
        if "ncomplete" in type(exc).__name__:
            message = f"the Hugging Face cache holds only part of {shown} (an interrupted download?)"
        elif revision is not None and (known := cached_revisions(cache, repo_id)):
            message = f"revision {revision!r} of {repo_id} is not in the Hugging Face cache (cached: {known})"
        else:
            message = f"{shown} is not in the Hugging Face cache"
        if also_a_folder:
            message = f"no folder {shown!r}, and " + message.replace(
                "the Hugging Face cache holds", "it holds"
            )
        raise RelstitchError(message, path=cache, hint=fetch_hint(repo_id, revision)) from None
    if not folder.resolve().is_relative_to(cache.resolve()):  # an edited ref or a linked snapshot folder
        raise RelstitchError(
            f"the cached snapshot of {shown} leads outside the Hugging Face cache ({printable(str(folder))})",
            path=cache,
            hint=fetch_hint(repo_id, revision),
        )
    return folder, {
        "repo_id": repo_id,
        "revision": folder.name,  # the snapshot folder is named by its commit
        "requested_revision": revision or "main",
        "cache": str(cache.resolve()),
    }


def cached_revisions(cache: Path, repo_id: str) -> str:
    """The revisions of ``repo_id`` the cache holds, as ``main=1a2b3c4, v1=...`` (empty when none)."""
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(cache)
    except Exception:  # CacheNotFound, or a cache this version cannot read: no list, the error stays
        return ""
    found = []
    for repo in info.repos:
        if repo.repo_id == repo_id and repo.repo_type == "model":
            for rev in sorted(repo.revisions, key=lambda r: r.commit_hash):
                refs = ",".join(sorted(rev.refs))
                found.append(f"{refs}={rev.commit_hash[:7]}" if refs else rev.commit_hash[:7])
    return ", ".join(found)

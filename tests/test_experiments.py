"""The experiments' own helpers (experiments/): spaCy's string hash, the dictionary reader, RESULTS.md
blocks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import common  # noqa: E402
import text_hf_cache_drugreviews as drugs  # noqa: E402
import wordvectors  # noqa: E402


@pytest.mark.parametrize(
    ("text", "expected"), [("coffee", 3197928453018144401), ("apple", 8566208034543834098)]
)
def test_murmurhash64a_matches_spacy_documented_hashes(text: str, expected: int) -> None:
    # spaCy's documentation shows these StringStore hashes (MurmurHash64A, seed 1).
    assert wordvectors.murmurhash64a(text.encode("utf-8")) == expected


def test_murmurhash64a_covers_every_tail_length() -> None:
    hashes = {wordvectors.murmurhash64a(("x" * n).encode()) for n in range(17)}
    assert len(hashes) == 17  # 0-7 tail bytes, one and two full blocks: no collisions, no crash
    assert all(0 <= h < 2**64 for h in hashes)


def test_results_block_replaces_only_its_own_section(tmp_path: Path) -> None:
    page = tmp_path / "RESULTS.md"
    page.write_text(
        "# title\n\n<!-- a:start -->\nold a\n<!-- a:end -->\n\n"
        "<!-- b:start -->\nold b\n<!-- b:end -->\n\ntail\n"
    )
    common.update_results_md("a", "new a\nsecond line", page)
    text = page.read_text()
    assert "old a" not in text and "new a\nsecond line" in text
    assert "old b" in text and text.endswith("tail\n")
    common.update_results_md("c", "brand new", page)  # no markers yet: appended once, then replaced in place
    common.update_results_md("c", "newer", page)
    assert (
        page.read_text().count("<!-- c:start -->") == 1
        and "newer" in page.read_text()
        and "brand new" not in page.read_text()
    )


def test_mean_std_formatting() -> None:
    assert common.mean_std([0.5, 0.7]) == "60.0 ± 10.0"
    assert common.mean_std([0.25]) == "25.0"
    assert common.mean_std([]) == "n/a"


@pytest.mark.skipif(
    not Path("/usr/share/dictd/freedict-eng-fra.index").exists(),
    reason="Debian dict-freedict-eng-fra not installed",
)
def test_freedict_pairs_read_real_entries() -> None:
    pairs = wordvectors.freedict_pairs()
    assert ("abbey", "abbaye") in pairs and ("abolish", "abolir") in pairs
    assert all(wordvectors.WORD.match(en) and wordvectors.WORD.match(fr) for en, fr in pairs)


DRUGS_ZIP, MINILM_L3 = common.ASSETS / "drugsCom.zip", common.ASSETS / "paraphrase-MiniLM-L3-v2"


@pytest.mark.skipif(not DRUGS_ZIP.exists(), reason=f"{DRUGS_ZIP} absent: run scripts/fetch-assets.sh")
def test_drug_reviews_become_parquet_that_relstitch_reads(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from relstitch.data import load_dataset

    # 30 of 600: this sample holds no neutral review, and the ClassLabel still names all three classes
    files = drugs.drug_reviews_parquet(DRUGS_ZIP, tmp_path, train=30, test=20, seed=0)
    train, test = (load_dataset(f"parquet:{files[split]}") for split in ("train", "test"))
    assert (len(train), len(test)) == (30, 20)
    assert train.classes == test.classes == ["negative", "neutral", "positive"]
    rows = drugs.read_drug_reviews(DRUGS_ZIP, "train")
    assert len(rows) == 600 and {row["label"] for row in rows} == set(drugs.CLASSES)
    assert not any("&#039;" in row["text"] or row["text"].startswith('"') for row in rows)  # cleaned
    again = drugs.drug_reviews_parquet(DRUGS_ZIP, tmp_path / "again", train=30, test=20, seed=0)
    assert files["train"].read_bytes() == again["train"].read_bytes()  # seeded: the same subsample
    by_text = {row["text"]: row["label"] for row in rows}
    assert all(by_text[text] == train.classes[y] for text, y in zip(train.x.view(), train.y.tolist()))


def test_clean_review_decodes_entities_and_drops_wrapping_quotes() -> None:
    assert drugs.clean_review('"I didn&#039;t sleep &amp; cried"') == "I didn't sleep & cried"
    assert drugs.clean_review('"a" then "b"') == 'a" then "b'  # one pair only: the table's, not the text's
    assert drugs.clean_review("plain") == "plain"


needs_minilm_l3 = pytest.mark.skipif(
    not MINILM_L3.is_dir(), reason=f"{MINILM_L3} absent: run scripts/fetch-assets.sh"
)


@pytest.fixture()
def minilm_l3_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """paraphrase-MiniLM-L3-v2 put in a fresh cache by the experiment's builder (scripts/hf_cache.py), which
    huggingface_hub then reads (its HF_HUB_CACHE set as a new process started with it would read it)."""
    from huggingface_hub import constants

    repo_id, cache = "sentence-transformers/paraphrase-MiniLM-L3-v2", tmp_path / "hub"
    (snapshot,) = drugs.build_cache(common.ASSETS, cache, {"l3": repo_id}).values()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return repo_id, snapshot


@needs_minilm_l3
def test_built_cache_is_a_download_to_huggingface_hub(minilm_l3_cache: tuple[str, Path]) -> None:
    from huggingface_hub import scan_cache_dir

    from relstitch.adapters.hub import cached_snapshot, hub_cache_dir

    repo_id, snapshot = minilm_l3_cache
    (repo,) = scan_cache_dir(hub_cache_dir()).repos
    assert repo.repo_id == repo_id and [sorted(r.refs) for r in repo.revisions] == [["main"]]
    assert {p.name for p in snapshot.iterdir()} >= {"modules.json", "config.json", "model.safetensors"}
    assert all(p.is_symlink() for p in snapshot.iterdir() if p.is_file())
    folder, resolved = cached_snapshot(repo_id, None)  # what hf:ORG/NAME looks up
    assert folder == snapshot and resolved["revision"] == snapshot.name
    again = drugs.build_cache(common.ASSETS, hub_cache_dir(), {"l3": repo_id})
    assert again == {repo_id: snapshot}  # idempotent: same content, same commit


@needs_minilm_l3
@pytest.mark.slow
def test_hf_id_loads_the_cached_sentence_transformer(minilm_l3_cache: tuple[str, Path]) -> None:
    pytest.importorskip("transformers")
    from relstitch.adapters import load_encoder_ref

    repo_id, snapshot = minilm_l3_cache
    encoder = load_encoder_ref(f"hf:{repo_id}", allow_embeddings=False)
    assert encoder.name == "paraphrase-MiniLM-L3-v2" and encoder.latent_dim == 384
    assert encoder.resolved["revision"] == snapshot.name and encoder.input_spec["pooling"] == "mean"

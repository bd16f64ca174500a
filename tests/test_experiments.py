"""The experiments' own helpers (experiments/): spaCy's string hash, the dictionary reader, RESULTS.md
blocks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import common  # noqa: E402
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

"""The documentation: README.md is a front door, docs/ the manual; every link resolves and every example runs.

- links: every relative Markdown link and ``#anchor`` in README.md and docs/*.md points at a file of this
  repository and, for Markdown, at a heading that exists (GitHub's anchors: lowercase, spaces → ``-``,
  punctuation dropped, ``-1``, ``-2``... for repeats);
- examples: ``scripts/check_docs.py`` runs every example (CI runs all of them: ``.ci/run``); here the ones
  marked ``<!-- docs-check: fast -->`` (the README's tour of every verb and its main job, about a minute),
  plus the script's own parsing and judging on small made-up pages.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

_spec = importlib.util.spec_from_file_location("check_docs", REPO / "scripts" / "check_docs.py")
check_docs = importlib.util.module_from_spec(_spec)
sys.modules["check_docs"] = check_docs  # dataclasses look their module up by name
_spec.loader.exec_module(check_docs)

# The manual's topic pages: each opens with a runnable example. ARCHITECTURE.md is a map of the code and
# RESULTS.md is written by experiments/ (its sections between markers), so neither is held to that.
TOPIC_PAGES = [
    "commands",
    "sources",
    "projections-and-anchors",
    "translation-and-compare",
    "reports",
    "API",
    "your-own-models",
    "text-walkthrough",
    "PERFORMANCE",
    "safety",
    "reproducing",
]
PROMISED = [  # the README's three commands, a promise .ci/run keeps: set-up, the main job, the tests
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'",
    ".venv/bin/relstitch eval-matrix",
    ".venv/bin/pytest -q",
]
VERBS = ["anchors", "train", "encode", "fit", "stitch", "eval-matrix", "report", "compare", "inspect"]

FENCED = re.compile(r"^\s*(`{3,}|~{3,}).*?^\s*\1\s*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(
    r"^ {0,3}\[[^\]]+\]:[ \t]*<?([^\s>]+)>?[ \t]*(?:\"[^\"]*\"|'[^']*'|\([^)]*\))?[ \t]*$", re.M
)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def prose(text: str) -> str:
    """The Markdown without its code blocks and code spans (links there are examples, not links)."""
    return INLINE_CODE.sub("", FENCED.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if re.match(r"^\s*(`{3,}|~{3,})", line):
            in_code = not in_code
            continue
        heading = HEADING.match(line)
        if heading and not in_code:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    found |= set(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", path.read_text(encoding="utf-8")))
    return found


def links_of(path: Path) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    return LINK.findall(text) + REFERENCE_LINK.findall(text)


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links_of(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto: ...: not this repository's
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(REPO):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors_of(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(REPO)}")
        elif anchor and resolved.suffix != ".md":
            broken.append(f"{target}: an anchor into a file that is not Markdown")
    return broken


# ------------------------------------------------------------------------------------------ links
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_github_anchors_are_computed_as_github_does() -> None:
    assert slug("The JSON report (schema version 2)") == "the-json-report-schema-version-2"
    assert (
        slug("Reproducing the paper's claims (experiments/)") == "reproducing-the-papers-claims-experiments"
    )
    assert (
        slug("eval-matrix: scoring overlaps the next encoder")
        == "eval-matrix-scoring-overlaps-the-next-encoder"
    )
    assert slug("relative · accuracy ↑") == "relative--accuracy-"
    assert slug("`--top-k` and max_chunk_bytes") == "--top-k-and-max_chunk_bytes"


def test_the_link_checker_finds_a_broken_link_and_a_missing_anchor(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "other.md").write_text("# Other\n\n## A section (v2)\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-section-v2) [self](#page) [code `x`](other.md) `[not](a-link.md)`\n"
        "[gone](missing.md) [no anchor](other.md#b-section) [up](../x.md)\n\n```sh\n[not](either.md)\n```\n"
        '[0, 1]: not a definition\n\n[ref]: gone-too.md "title"\n',
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#b-section: no heading #b-section in other.md",
        "../x.md: outside the repository",
        "gone-too.md: no such file",
    ]


# ------------------------------------------------------------------------------------------ README and pages
def test_readme_is_a_front_door() -> None:
    assert README.stat().st_size <= 15_000, (
        f"README.md is {README.stat().st_size} bytes; the manual belongs in docs/"
    )
    text = README.read_text(encoding="utf-8")
    commands = [e.text for e in check_docs.examples(README)]
    for promised in PROMISED:  # verbatim, each a command of its own block
        assert promised in commands, promised
    for verb in VERBS:  # the tour: one runnable example per verb
        assert any(re.match(rf"\.venv/bin/relstitch {verb}\s", c) for c in commands if "\n" not in c), verb
    for page in TOPIC_PAGES:
        assert f"(docs/{page}.md)" in text, f"README does not point to docs/{page}.md"


@pytest.mark.parametrize("name", TOPIC_PAGES)
def test_each_topic_page_opens_with_a_runnable_example(name: str) -> None:
    page = DOCS / f"{name}.md"
    lines = page.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# "), "a page starts with its title"
    first = check_docs.blocks(page)[0]
    assert check_docs.kind_of(first) is not None and first.skip is None, (
        "the first block is an example that runs"
    )
    assert first.line <= 4, "the example comes right after the title"
    assert any(
        re.match(r"^(\$ )?(\.venv/bin/)?relstitch |^from relstitch|^import relstitch", ln)
        for ln in first.lines
    ), "it shows relstitch commands (or, on a page about the library, relstitch in Python)"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_pages_stand_on_their_own(page: Path) -> None:
    """No page cites the files a checkout does not have (the design notes this project was built from)."""
    text = page.read_text(encoding="utf-8")
    for cited in ("../shared", "DESIGN.md", "REFERENCE.md", "REFERENCE §"):
        assert cited not in text, f"{page.name} cites {cited}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_code_blocks_say_what_they_hold(page: Path) -> None:
    """Every fenced block names its language, so none that holds commands slips past the examples' check."""
    unnamed = [b.line for b in check_docs.blocks(page) if not b.lang and b.lines and not _indented(page, b)]
    assert unnamed == [], f"fenced blocks without a language at lines {unnamed}"


def _indented(page: Path, block) -> bool:
    """An indented (not fenced) block: check_docs reads those too when they hold commands."""
    lines = page.read_text(encoding="utf-8").splitlines()
    return not lines[block.line - 2].lstrip().startswith(("```", "~~~"))


# ------------------------------------------------------------------------------------------ examples
@pytest.mark.slow  # the real CLI in subprocesses, about a minute: CI runs it, the edit-test loop skips it
def test_readme_examples_run() -> None:
    """The README's main job (and what it prints) and its tour of every verb, in order, in a fresh copy."""
    outcomes = check_docs.run_file(README, fast=True, echo=lambda _: None)
    assert len([o for o in outcomes if o.status == "ok"]) >= len(VERBS) + 1
    failed = [check_docs.format_outcome(o) for o in outcomes if o.status not in ("ok", "skipped")]
    assert failed == [], "\n".join(failed)


PAGE = """# A page

<!-- docs-check: fast -->
```sh
echo one > one.txt   # a comment
# a comment line
cat one.txt \\
  one.txt
name='two words'
python3 - <<'EOF'
print("heredoc")
EOF
```

```console
$ cat one.txt
one
$ echo "$name"; ls nothing-here
two words
...
$ ls nothing-here || echo "error: said so" >&2 && false
error: said so
```

<!-- docs-check: skip (needs a GPU; and patience) -->
```sh
nvidia-smi
false
```

```text
relstitch not-run
```

    relstitch indented --help
"""


def test_check_docs_splits_blocks_into_commands(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE, encoding="utf-8")
    examples = check_docs.examples(page)
    assert [(e.kind, e.text.splitlines()[0]) for e in examples] == [
        ("sh", "echo one > one.txt   # a comment"),
        ("sh", "cat one.txt \\"),
        ("sh", "name='two words'"),
        ("sh", "python3 - <<'EOF'"),
        ("console", "cat one.txt"),
        ("console", 'echo "$name"; ls nothing-here'),
        ("console", 'ls nothing-here || echo "error: said so" >&2 && false'),
        ("sh", "nvidia-smi"),
        ("sh", "false"),
        ("sh", "relstitch indented --help"),
    ]
    assert examples[3].text.endswith("EOF") and examples[1].text.endswith("one.txt")
    assert [e.fast for e in examples[:4]] == [True] * 4 and not examples[4].fast
    assert examples[4].expected == ["one"] and examples[6].expects_failure
    assert {e.skip for e in examples[7:9]} == {"needs a GPU; and patience"}


@pytest.mark.slow  # shell subprocesses in a copy of the repository
def test_check_docs_runs_examples_and_reports_failures(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE.replace("    relstitch indented --help\n", ""), encoding="utf-8")
    outcomes = check_docs.run_file(page, echo=lambda _: None)
    assert [o.status for o in outcomes] == [
        "ok",
        "ok",
        "ok",
        "ok",
        "ok",
        "failed",
        "ok",
        "skipped",
        "skipped",
    ]
    assert "exit" in outcomes[5].detail  # `ls nothing-here` failed though no error was expected
    wrong = PAGE.replace("$ cat one.txt\none\n", "$ cat one.txt\nthree\n")
    page.write_text(wrong, encoding="utf-8")
    outcome = check_docs.run_file(page, fast=False, echo=lambda _: None)[4]
    assert outcome.status == "failed" and "expected output not printed: three" in outcome.detail
    assert [o.example.kind for o in check_docs.run_file(page, fast=True, echo=lambda _: None)] == ["sh"] * 4


@pytest.mark.slow  # a shell subprocess killed after a second
def test_check_docs_kills_a_command_at_its_timeout(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-check: timeout 1 -->\n```sh\nsleep 30\n```\n", encoding="utf-8")
    [outcome] = check_docs.run_file(page, echo=lambda _: None)
    assert outcome.status == "timeout" and outcome.seconds < 10


def test_check_docs_refuses_an_unknown_directive(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-check: sometimes -->\n```sh\ntrue\n```\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="unknown docs-check directive"):
        check_docs.examples(page)

#!/usr/bin/env python3
"""Run every example of README.md and docs/*.md, so the documentation cannot rot.

What counts as an example, block by block (fenced with ``` or ~~~, or indented by four spaces):

- ``sh``/``bash``/``shell`` blocks: every command (a line, with its ``\\`` continuations and heredocs; ``#``
  comment lines skipped) must exit 0;
- ``console`` blocks: ``$ `` lines are commands, the lines under one are its expected output: each must
  appear, in order, in what the command prints (stdout and stderr; a ``...`` line elides, a line ending in
  `` ...`` is matched by its start); a command whose
  expected output holds an ``error:`` line must fail (non-zero exit), any other must exit 0;
- ``python`` blocks run as a script with the project's interpreter and must exit 0;
- an unlabelled block (or an indented one) counts as ``sh`` when its first line is a command
  (``relstitch``, ``.venv/bin/...``, ``python``, ``torchrun``, ``scripts/...``, ...); other blocks (``text``,
  ``json``, ``csv``, diagrams, outputs) are not run.

An HTML comment right before a block (blank lines between allowed) steers it:

    <!-- docs-check: skip (needs a GPU) -->     not run; the reason is reported
    <!-- docs-check: fast -->                   also run by the test suite (tests/test_docs.py)
    <!-- docs-check: timeout 900 -->            seconds per command (default --timeout)

Each Markdown file runs in its own fresh sandbox: a temporary copy of the repository (no .git, no .venv,
no caches, no fetched assets) with ``.venv`` linked to this checkout's virtual environment and its
``bin`` first on PATH (so ``relstitch ...`` and ``.venv/bin/relstitch ...`` both work), NO_COLOR=1 and a
100-column terminal. Blocks run in the order of the file, so one block may read what an earlier one
wrote. Shell variables assigned on a line of their own (``data='jsonl:...'``) carry over to later
commands of the file.

Usage::

    .venv/bin/python scripts/check_docs.py                 # README.md, docs/*.md; exit 1 if any example fails
    .venv/bin/python scripts/check_docs.py docs/reports.md # one page
    .venv/bin/python scripts/check_docs.py --fast          # only the blocks marked fast
    .venv/bin/python scripts/check_docs.py --list          # what would run, and what is skipped and why
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT = 900.0

SHELL_LANGS = {"sh", "bash", "shell", "zsh"}
CONSOLE_LANGS = {"console", "shell-session"}
PYTHON_LANGS = {"python", "py", "python3"}
# The first word of a line that makes an unlabelled or indented block a shell example.
COMMAND_RE = re.compile(
    r"^(\$ )?(relstitch|\.venv/bin/\S+|python3?|torchrun|bash|scripts/\S+|experiments/\S+|bench/\S+|mkdir|"
    r"[A-Za-z_][A-Za-z0-9_]*=\S)"
)
DIRECTIVE_RE = re.compile(r"^\s*<!--\s*docs-check:\s*(.*?)\s*-->\s*$")
FENCE_RE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)")
ASSIGNMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=('[^']*'|\"[^\"]*\"|[^\s'\"]*)\s*(#.*)?$")
HEREDOC_RE = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
LIST_ITEM_RE = re.compile(r"^\s*([-*+]|\d+[.)])\s")
# Left out of the sandbox: version control, the virtual environment (linked instead), caches, build output and
# the gitignored work folders and fetched assets.
IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".hypothesis",
    "*.egg-info",
    ".venv-*",
    "work",
    "build",
    "dist",
)
IGNORED_TOP = {"assets", "out", "tmp"}


@dataclass
class Block:
    """A code block of a Markdown file, with the docs-check directives written right before it."""

    path: Path
    line: int  # 1-based line of the block's first content line
    lang: str
    lines: list[str]
    skip: str | None = None
    fast: bool = False
    timeout: float | None = None


@dataclass
class Example:
    """One command (or one Python script) to run, and what it must do."""

    path: Path
    line: int
    kind: str  # "sh", "console" or "python"
    text: str
    expected: list[str] = field(default_factory=list)  # console: output lines that must appear, in order
    skip: str | None = None
    fast: bool = False
    timeout: float | None = None
    block: int = 0  # the line of its block's first command: a skipped block is reported once

    @property
    def where(self) -> str:
        try:
            name = self.path.resolve().relative_to(REPO)
        except ValueError:
            name = self.path
        return f"{name}:{self.line}"

    @property
    def expects_failure(self) -> bool:
        return any(line.lstrip().startswith("error:") for line in self.expected)


@dataclass
class Outcome:
    example: Example
    status: str  # "ok", "failed", "timeout", "skipped"
    seconds: float = 0.0
    detail: str = ""


# ------------------------------------------------------------------------------------------ parsing
def parse_directives(text: str) -> dict:
    """``skip (reason)``, ``fast`` and ``timeout N``, separated by ``;`` (a reason may hold ``;`` and
    parentheses)."""
    found: dict = {}
    rest = text.strip()
    while rest:
        if rest.startswith("skip"):
            rest = rest[4:].lstrip()
            reason = "marked skip"
            if rest.startswith("("):
                depths = itertools.accumulate({"(": 1, ")": -1}.get(char, 0) for char in rest)
                end = next((i for i, depth in enumerate(depths) if depth == 0), len(rest))
                reason, rest = rest[1:end].strip(), rest[end + 1 :]
            found["skip"] = reason
        elif rest.startswith("fast"):
            found["fast"], rest = True, rest[4:]
        elif re.match(r"timeout\s+\d", rest):
            number = re.match(r"timeout\s+(\d+(?:\.\d+)?)", rest)
            found["timeout"], rest = float(number.group(1)), rest[number.end() :]
        else:
            raise ValueError(f"unknown docs-check directive {rest!r}")
        rest = rest.strip().removeprefix(";").strip()
    return found


def blocks(path: Path) -> list[Block]:
    """Every fenced and indented code block of ``path``, with the directives that precede it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    pending: dict = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = DIRECTIVE_RE.match(line)
        fence = FENCE_RE.match(line)
        if directive:
            try:
                pending = parse_directives(directive.group(1))
            except ValueError as error:
                raise SystemExit(f"{path}:{i + 1}: {error}") from None
            i += 1
        elif fence:
            indent, marker, lang = len(fence.group(1)), fence.group(2), fence.group(3).lower()
            body, j = [], i + 1
            while j < len(lines) and not (
                lines[j].strip().startswith(marker[0] * len(marker)) and set(lines[j].strip()) == {marker[0]}
            ):
                body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j].lstrip())
                j += 1
            found.append(Block(path, i + 2, lang, body, **pending))
            pending, i = {}, j + 1
        elif line.startswith("    ") and line.strip() and _starts_indented_block(lines, i):
            body, j = [], i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                body.append(lines[j][4:])
                j += 1
            while body and not body[-1].strip():
                body.pop()
            found.append(Block(path, i + 1, "", body, **pending))
            pending, i = {}, j
        else:
            if line.strip() and not line.lstrip().startswith("<!--"):
                pending = {}  # a directive steers the block right after it only
            i += 1
    return found


def _starts_indented_block(lines: list[str], i: int) -> bool:
    """An indented code block starts after a blank line whose paragraph above is not part of a list."""
    if i == 0 or lines[i - 1].strip():
        return False
    k = i - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    while k >= 0 and lines[k].strip():  # the start of the paragraph above
        if LIST_ITEM_RE.match(lines[k]):
            return False
        if not lines[k].startswith(" "):
            break
        k -= 1
    return True


def _is_commandish(block: Block) -> bool:
    first = next((ln.strip() for ln in block.lines if ln.strip() and not ln.strip().startswith("#")), "")
    return bool(COMMAND_RE.match(first))


def kind_of(block: Block) -> str | None:
    if block.lang in SHELL_LANGS:
        return "sh"
    if block.lang in CONSOLE_LANGS:
        return "console"
    if block.lang in PYTHON_LANGS:
        return "python"
    if block.lang == "" and _is_commandish(block):
        return "console" if any(ln.startswith("$ ") for ln in block.lines) else "sh"
    return None


def split_commands(lines: list[str]) -> list[tuple[int, str]]:
    """Commands of a shell block: (offset of the first line, text), continuations and heredocs joined."""
    commands: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        start, chunk = i, [line]
        while chunk[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            chunk.append(lines[i])
        heredoc = HEREDOC_RE.search("\n".join(chunk))
        if heredoc:
            strip_tabs, delimiter = heredoc.group(1) == "-", heredoc.group(3)
            while i + 1 < len(lines):
                i += 1
                chunk.append(lines[i])
                if (lines[i].lstrip("\t") if strip_tabs else lines[i]) == delimiter:
                    break
        commands.append((start, "\n".join(chunk)))
        i += 1
    return commands


def split_console(lines: list[str]) -> list[tuple[int, str, list[str]]]:
    """Commands of a console block: (offset, command, expected output lines)."""
    found: list[tuple[int, str, list[str]]] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1  # output before any prompt: nothing to check it against
            continue
        start, chunk = i, [lines[i][2:]]
        while chunk[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            chunk.append(lines[i][2:] if lines[i].startswith("> ") else lines[i])
        expected = []
        while i + 1 < len(lines) and not lines[i + 1].startswith("$ "):
            i += 1
            expected.append(lines[i])
        found.append((start, "\n".join(chunk), expected))
        i += 1
    return found


def examples(path: Path) -> list[Example]:
    """Every example of one Markdown file, in order."""
    found: list[Example] = []
    for block in blocks(path):
        kind = kind_of(block)
        if kind is None:
            continue
        common = {"skip": block.skip, "fast": block.fast, "timeout": block.timeout, "block": block.line}
        if kind == "python":
            found.append(Example(path, block.line, "python", "\n".join(block.lines) + "\n", **common))
        elif kind == "console":
            for offset, command, expected in split_console(block.lines):
                found.append(Example(path, block.line + offset, "console", command, expected, **common))
        else:
            for offset, command in split_commands(block.lines):
                found.append(Example(path, block.line + offset, "sh", command, **common))
    return found


def default_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


# ------------------------------------------------------------------------------------------ running
def make_sandbox(parent: Path) -> Path:
    """A copy of the repository to run one file's examples in, with the virtual environment linked."""
    root = parent / "repo"

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set(IGNORED(folder, names))
        if Path(folder).resolve() == REPO:
            skipped |= IGNORED_TOP & set(names)
        return skipped

    shutil.copytree(REPO, root, ignore=ignore, symlinks=True)
    (root / ".venv").symlink_to(REPO / ".venv", target_is_directory=True)
    return root


def environment(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env.update(
        PATH=f"{root / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        NO_COLOR="1",
        COLUMNS="100",
        TERM="dumb",
        PYTHONDONTWRITEBYTECODE="1",
        XDG_CACHE_HOME=str(root / ".cache"),  # the page's own cache: nothing from other runs, nothing left
    )
    env.pop("LINES", None)
    env.pop("FORCE_COLOR", None)
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """Run in its own process group (torchrun's workers included), killed as a whole at the timeout."""
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output


def _normalise(line: str) -> str:
    return " ".join(line.split())


def missing_output(expected: list[str], output: str) -> str | None:
    """The first expected line (``...`` elides) not found, in order, among the output's lines."""
    actual = [_normalise(line) for line in output.splitlines()]
    position = 0
    for line in expected:
        want = _normalise(line)
        if not want or want == "..." or want.startswith("... "):
            continue
        if want.endswith(" ..."):  # the line's start is checked, the rest (sizes, ages) may vary
            head = want[:-4]
            found = [i for i in range(position, len(actual)) if actual[i].startswith(head)]
            if not found:
                return line
            position = found[0] + 1
            continue
        try:
            position = actual.index(want, position) + 1
        except ValueError:
            return line
    return None


def run_example(
    example: Example, root: Path, env: dict[str, str], prelude: list[str], timeout: float
) -> Outcome:
    limit = example.timeout or timeout
    started = time.perf_counter()
    if example.kind == "python":
        script = root / f".docs-check-{example.line}.py"
        script.write_text(example.text, encoding="utf-8")
        code, output = _run([str(root / ".venv" / "bin" / "python"), str(script)], root, env, limit)
        script.unlink()
    else:
        code, output = _run(
            ["bash", "-c", "\n".join(["set -o pipefail", *prelude, example.text])], root, env, limit
        )
    seconds = time.perf_counter() - started
    tail = "\n".join(output.rstrip().splitlines()[-15:])
    if code is None:
        return Outcome(example, "timeout", seconds, f"killed after {limit:.0f} s\n{tail}")
    if example.kind == "console":
        if example.expects_failure and code == 0:
            return Outcome(example, "failed", seconds, f"expected an error, but it exited 0\n{tail}")
        if not example.expects_failure and code != 0:
            return Outcome(example, "failed", seconds, f"exit {code}\n{tail}")
        missing = missing_output(example.expected, output)
        if missing is not None:
            return Outcome(
                example, "failed", seconds, f"expected output not printed: {missing.strip()}\n{tail}"
            )
        return Outcome(example, "ok", seconds)
    if code != 0:
        return Outcome(example, "failed", seconds, f"exit {code}\n{tail}")
    return Outcome(example, "ok", seconds)


def run_file(
    path: Path, *, fast: bool = False, timeout: float = DEFAULT_TIMEOUT, echo=print
) -> list[Outcome]:
    """Run one Markdown file's examples, in order, in a fresh sandbox."""
    chosen = [e for e in examples(path) if e.fast or not fast]
    outcomes: list[Outcome] = []
    if not chosen:
        return outcomes
    with tempfile.TemporaryDirectory(prefix="relstitch-docs-") as parent:
        root = make_sandbox(Path(parent))
        env = environment(root)
        prelude: list[str] = []  # variable assignments so far
        for example in chosen:
            if example.skip:
                outcome = Outcome(example, "skipped", detail=example.skip)
                if (
                    outcomes
                    and outcomes[-1].status == "skipped"
                    and outcomes[-1].example.block == example.block
                ):
                    outcomes.append(outcome)  # the block was reported at its first command
                    continue
            else:
                outcome = run_example(example, root, env, prelude, timeout)
                if example.kind == "sh" and ASSIGNMENT_RE.match(example.text.strip()):
                    prelude.append(example.text.strip())
            outcomes.append(outcome)
            echo(format_outcome(outcome))
    return outcomes


def first_line(example: Example) -> str:
    text = example.text.strip().splitlines()[0] if example.text.strip() else ""
    if example.kind == "python":
        text = "python: " + text
    return text if len(text) <= 110 else text[:107] + "..."


def format_outcome(outcome: Outcome) -> str:
    head = {"ok": "ok     ", "failed": "FAILED ", "timeout": "TIMEOUT", "skipped": "skip   "}[outcome.status]
    line = f"{head} {outcome.seconds:6.1f}s  {outcome.example.where}  {first_line(outcome.example)}"
    if outcome.status == "skipped":
        line = f"{head}          {outcome.example.where}  the block from here ({outcome.detail})"
    elif outcome.status != "ok":
        line += "\n" + "\n".join("    | " + row for row in outcome.detail.splitlines())
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "files", nargs="*", type=Path, help="Markdown files [default: README.md and docs/*.md]"
    )
    parser.add_argument(
        "--fast", action="store_true", help="only the blocks marked <!-- docs-check: fast -->"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per command [default: %(default)s]"
    )
    parser.add_argument(
        "--list", action="store_true", help="list the examples and the skipped ones; run nothing"
    )
    args = parser.parse_args(argv)
    files = [f.resolve() for f in args.files] or default_files()
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    for path in files:
        if args.list:
            for example in examples(path):
                if example.fast or not args.fast:
                    state = f"skip ({example.skip})" if example.skip else ("fast" if example.fast else "run")
                    print(f"{example.where:28} {example.kind:8} {state:10.60}  {first_line(example)}")
            continue
        print(f"== {path.relative_to(REPO) if path.is_relative_to(REPO) else path}", flush=True)
        outcomes += run_file(path, fast=args.fast, timeout=args.timeout, echo=lambda s: print(s, flush=True))
    if args.list:
        return 0
    counts = {s: sum(o.status == s for o in outcomes) for s in ("ok", "failed", "timeout", "skipped")}
    bad = [o for o in outcomes if o.status in ("failed", "timeout")]
    print(
        f"\n{counts['ok']} passed, {counts['failed']} failed, {counts['timeout']} timed out, "
        f"{counts['skipped']} skipped "
        f"in {time.perf_counter() - started:.0f} s"
    )
    skipped_blocks = {
        (o.example.path, o.example.block): o for o in reversed(outcomes) if o.status == "skipped"
    }
    if skipped_blocks:
        print(f"skipped {len(skipped_blocks)} blocks:")
        for outcome in sorted(skipped_blocks.values(), key=lambda o: (str(o.example.path), o.example.line)):
            print(f"  {outcome.example.where}: {outcome.detail}")
    for outcome in bad:
        print(f"  {outcome.status}: {outcome.example.where}  {first_line(outcome.example)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

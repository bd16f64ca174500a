#!/usr/bin/env python3
"""The hostile-input battery: the real ``relstitch`` CLI run as a new user and an attacker would.

Every case runs one command in a fresh temporary folder (its inputs copied or crafted there first), in
its own process, with a timeout and its peak memory measured, and is judged on:

- the exit code (0 a correct result, 1 a relstitch error, 2 bad usage; some cases accept either 1 or 2);
- a clean error: stderr's non-empty lines are ``warning:`` lines then exactly one ``error: ...`` line, never
  a ``Traceback`` (the rule of ``tests/cli_checks.py``, warnings allowed before the error);
- code executed: a sentinel file ``PWNED`` must appear nowhere in the folder;
- a hang (killed at the case's timeout) and memory (peak RSS over 1 GiB);
- files left behind: nothing new but the case's expected outputs (no ``.NAME.*.tmp``, no half-written
  output of a failed run); inputs modified: every file, folder and link present before is unchanged;
- eval-matrix reports (``--json`` and ``--markdown``): every rendered cell (the JSON's
  ``matrices[method]["values"][metric]``, the Markdown tables) agrees with its pair in ``pairs``; names
  are unique; each pair's hashes are those of the encoder and decoder it names.

Usage::

    python scripts/hostile_battery.py                  # every case; exit 1 if any fails its expectation
    python scripts/hostile_battery.py --only names,clash   # classes by name or number (repeatable)
    python scripts/hostile_battery.py --list           # the cases, nothing run
    python scripts/hostile_battery.py --json results.json --jobs 2 --keep -v

Classes: 1 names (code from file names), 2 broken (a broken decoder among good ones), 3 clash (name
clashes), 4 status (exit status of partly failed matrices), 5 oserror, 6 unbounded (reads that never end),
7 labels (labels outside the classes), 8 weights, 9 codes (exit codes), mistakes (a new user's), verbs
(every verb doing its job). Cases encode the correct behaviour, not today's.

Needs only the standard library, plus torch and safetensors (relstitch's own dependencies) to craft
files; run with a Python lacking them it re-runs itself with the repository's ``.venv/bin/python``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import pickle
import re
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CKPT = REPO / "checkpoints"
EXAMPLE_REPORT = REPO / "docs" / "examples" / "zoo-report.json"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

GIB = 1 << 30
MEMORY_LIMIT = GIB  # a case's peak RSS above this fails it
MEMORY_KILL = 4 * GIB  # and above this the run is killed, so an unbounded read cannot take the machine down
SENTINEL = "PWNED"
PAYLOAD = f"python:os:system(command='touch {SENTINEL}')"
LONG = "x" * 300  # a path component over the 255 bytes Linux allows
HOSTILE_NAME = (
    "a|b <script>alert(1)</script> \x1b[31mred\x1b[0m\nsecond line"  # markup, a pipe, ANSI, a line break
)

CLASSES = {
    "1": "names",
    "2": "broken",
    "3": "clash",
    "4": "status",
    "5": "oserror",
    "6": "unbounded",
    "7": "labels",
    "8": "weights",
    "9": "codes",
    "mistakes": "mistakes",
    "verbs": "verbs",
}

# The shipped files every case gets a copy of, at the root of its folder.
A = "anchors.safetensors"
E0, E1, EA0, EA1 = (f"cnn-{s}.encoder.safetensors" for s in ("rel-s0", "rel-s1", "abs-s0", "abs-s1"))
D0, D1, DA0, DA1 = (f"cnn-{s}.decoder.safetensors" for s in ("rel-s0", "rel-s1", "abs-s0", "abs-s1"))
STANDARD = (A, E0, E1, EA0, EA1, D0, D1, DA0, DA1)
LIM = ("--limit", "50")
ANCH = ("-a", A)
REPORT_OUT = ("--json", "out.json", "--markdown", "out.md")
REPORT = ("out.json", "out.md")


# ============================================================================================ crafting
# File surgery on real checkpoints. torch and safetensors are imported here only (--list needs neither).
def st_split(raw: bytes) -> tuple[dict[str, Any], bytes]:
    """(header JSON, data bytes) of a safetensors file."""
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def st_pack(header: dict[str, Any], data: bytes) -> bytes:
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body + data


def st_load(raw: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensors, raw metadata) of a safetensors file's bytes."""
    from safetensors.torch import load

    return load(raw), dict(st_split(raw)[0].get("__metadata__", {}))


def st_save(tensors: dict[str, Any], metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)


def content_hash(tensors: dict[str, Any], extra: Any) -> str:
    """The checkpoint identity relstitch records, so a crafted checkpoint can carry a correct hash and test
    what it is meant to test (NaN, Inf), not the hash. relstitch's own function: a tool to craft with, not an
    oracle."""
    from relstitch.io.artifacts import content_hash as relstitch_hash

    return relstitch_hash(tensors, extra=extra)


def shipped(name: str) -> bytes:
    return (CKPT / name).read_bytes()


def with_meta(raw: bytes, **changes: Any) -> bytes:
    """The file re-saved with ``relstitch.KEY`` metadata set (JSON-encoded) or removed (``None``); tensors
    kept."""
    tensors, meta = st_load(raw)
    for key, value in changes.items():
        full = "relstitch." + key
        if value is None:
            meta.pop(full, None)
        else:
            meta[full] = json.dumps(value, sort_keys=True)
    return st_save(tensors, meta)


def with_tensors(raw: bytes, change: Callable[[dict[str, Any]], None], *, rehash: bool) -> bytes:
    """The file with its tensors changed in place by ``change``; its recorded hash recomputed or kept as it
    was."""
    tensors, meta = st_load(raw)
    tensors = {k: v.clone() for k, v in tensors.items()}
    change(tensors)
    if rehash:
        meta["relstitch.hash"] = json.dumps(content_hash(tensors, json.loads(meta["relstitch.architecture"])))
    return st_save(tensors, meta)


def flip_dtype(raw: bytes, tensor: str, to: str) -> bytes:
    """The header says another dtype of the same width for ``tensor``; the bytes are unchanged."""
    header, data = st_split(raw)
    header[tensor]["dtype"] = to
    return st_pack(header, data)


class _Evil:
    """A pickle that runs a shell command when loaded without ``weights_only``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {SENTINEL}",))


def png_grey(width: int, height: int, pixels: bytes) -> bytes:
    """A greyscale PNG, standard library only."""
    rows = b"".join(b"\x00" + pixels[y * width : (y + 1) * width] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def tensors_data(labels: list[int], classes: list[str] | None, *, label_dtype: str = "int64") -> bytes:
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (len(labels), 28, 28), dtype=torch.uint8, generator=g)
    y = torch.tensor(labels, dtype=getattr(torch, label_dtype))
    meta = {} if classes is None else {"classes": json.dumps(classes)}
    return st_save({"x": x, "y": y}, meta)


def _nan_first(t: dict[str, Any]) -> None:
    t["features.0.weight"].fill_(float("nan"))


def _inf_head(t: dict[str, Any]) -> None:
    t["net.4.weight"][0, 0] = float("inf")


def _shift_project(t: dict[str, Any]) -> None:
    t["project.weight"].add_(0.5)


def _shift_head(t: dict[str, Any]) -> None:
    t["net.4.bias"].add_(1.0)


def _invert_anchors(t: dict[str, Any]) -> None:
    t["inputs"].copy_(255 - t["inputs"])


def _pt_bytes() -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(3)}, buffer)
    return buffer.getvalue()


CRAFT: dict[str, Callable[[], bytes]] = {
    "enc-payload-name": lambda: with_meta(shipped(E0), name=PAYLOAD),
    "dec-payload-name": lambda: with_meta(shipped(D1), name=PAYLOAD),
    "dec-truncated": lambda: shipped(D1)[: len(shipped(D1)) // 2],
    "enc-truncated": lambda: shipped(E1)[: len(shipped(E1)) // 2],
    "dec-nokind": lambda: with_meta(shipped(D1), kind=None),
    "dec-badprojection": lambda: with_meta(
        shipped(D1), projection={"similarity": "telepathy", "centering": "none"}
    ),
    "dec-badarch": lambda: with_meta(shipped(D1), architecture={"name": "vision-head-9000", "args": {}}),
    "dec-otheranchors": lambda: with_meta(shipped(D1), anchor_hash="0" * 64, name="other-anchors"),
    "dec-i32bias": lambda: flip_dtype(shipped(D1), "net.4.bias", "I32"),
    "enc-i32bias": lambda: flip_dtype(shipped(E1), "project.bias", "I32"),
    "dec-inf": lambda: with_tensors(shipped(D1), _inf_head, rehash=True),
    "dec-tampered": lambda: with_tensors(shipped(D1), _shift_head, rehash=False),
    "enc-nan": lambda: with_tensors(shipped(E1), _nan_first, rehash=True),
    "enc-tampered": lambda: with_tensors(shipped(E1), _shift_project, rehash=False),
    "anchors-tampered": lambda: with_tensors(shipped(A), _invert_anchors, rehash=False),
    # other seeds' decoders under the names of the first ones: the name clash of class 3
    "dec-rel-s2-as-s0": lambda: with_meta(
        (CKPT / "cnn-rel-s2.decoder.safetensors").read_bytes(), name="cnn-rel-s0"
    ),
    "dec-mlp-s0-as-s1": lambda: with_meta(
        (CKPT / "mlp-rel-s0.decoder.safetensors").read_bytes(), name="cnn-rel-s1"
    ),
    "enc-s1-as-s0": lambda: with_meta(shipped(E1), name="cnn-rel-s0"),
    # the input spec edited in the metadata (the weights and their hash untouched)
    "enc-input-huge": lambda: with_meta(
        shipped(E1),
        input={
            "modality": "image",
            "shape": [1, 28, 28],
            "scale": 255.0,
            "mean": 0.286,
            "std": 0.353,
            "resize": [224000, 224000],
        },
    ),
    "enc-input-std0": lambda: with_meta(
        shipped(E1),
        input={"modality": "image", "shape": [1, 28, 28], "scale": 255.0, "mean": 0.286, "std": 0},
    ),
    "dec-hostile-name": lambda: with_meta(shipped(D1), name=HOSTILE_NAME),
    "tensors-labels-134": lambda: tensors_data(list(range(134)), FASHION),
    "tensors-labels-134-unnamed": lambda: tensors_data(list(range(134)), None),
    "tensors-labels-10": lambda: tensors_data([i % 10 for i in range(60)], FASHION),
    "tensors-labels-negative": lambda: tensors_data([-1] + [i % 10 for i in range(59)], FASHION),
    "tensors-labels-float": lambda: tensors_data([i % 10 for i in range(60)], FASHION, label_dtype="float32"),
    "pickle-evil": lambda: pickle.dumps(_Evil()),
    "torch-pt": _pt_bytes,
}
_crafted: dict[str, bytes] = {}
_craft_lock = threading.Lock()


def crafted(name: str) -> bytes:
    with _craft_lock:
        if name not in _crafted:
            _crafted[name] = CRAFT[name]()
        return _crafted[name]


# ============================================================================================ fixtures
class Fixtures:
    """Files a few cases need that only relstitch itself can make (an embeddings file), made once."""

    def __init__(self, folder: Path, command: list[str]) -> None:
        self.folder, self.command = folder, command
        self._lock = threading.Lock()
        self._made: dict[str, Path | str] = {}

    def embeddings(self) -> Path:
        with self._lock:
            if "embeddings" not in self._made:
                out = self.folder / "e60.safetensors"
                run = subprocess.run(
                    [
                        *self.command,
                        "encode",
                        str(CKPT / E0),
                        "-a",
                        str(CKPT / A),
                        "-d",
                        "builtin:test",
                        "--limit",
                        "60",
                        "-o",
                        str(out),
                        "--force",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    env=child_env(),
                    cwd=self.folder,
                )
                self._made["embeddings"] = (
                    out
                    if run.returncode == 0 and out.exists()
                    else (
                        f"fixture `relstitch encode` failed (exit {run.returncode}): "
                        f"{run.stderr.strip()[-300:]}"
                    )
                )
            made = self._made["embeddings"]
        if isinstance(made, str):
            raise RuntimeError(made)
        return made


def emb_labels_out_of_range(raw: bytes) -> bytes:
    import torch

    def change(t: dict[str, Any]) -> None:
        t["labels"].copy_(torch.arange(len(t["labels"])) + 74)  # 74..133 against 10 class names

    tensors, meta = st_load(raw)
    tensors = {k: v.clone() for k, v in tensors.items()}
    change(tensors)
    return st_save(tensors, meta)


def emb_payload_name(raw: bytes) -> bytes:
    tensors, meta = st_load(raw)
    encoder = json.loads(meta["relstitch.encoder"])
    encoder["name"] = PAYLOAD
    meta["relstitch.encoder"] = json.dumps(encoder, sort_keys=True)
    return st_save(tensors, meta)


# ============================================================================================ a case
@dataclass
class Ctx:
    """A case's folder and what it builds its inputs from."""

    tmp: Path
    fixtures: Fixtures

    def path(self, rel: str) -> Path:
        return self.tmp / rel

    def write(self, rel: str, content: bytes | str) -> Path:
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            p.write_text(content, encoding="utf-8")
        else:
            p.write_bytes(content)
        return p

    def craft(self, rel: str, name: str) -> Path:
        return self.write(rel, crafted(name))

    def copy(self, rel: str, source: str | Path) -> Path:
        source = Path(source)
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source if source.is_absolute() else CKPT / source, p)
        return p

    def mkdir(self, rel: str) -> Path:
        p = self.path(rel)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def fifo(self, rel: str) -> Path:
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(p)
        return p

    def symlink(self, rel: str, target: str) -> Path:
        p = self.path(rel)
        os.symlink(target, p)
        return p

    def report(
        self, rel: str = "report.json", change: Callable[[dict[str, Any]], None] | None = None
    ) -> Path:
        doc = json.loads(EXAMPLE_REPORT.read_text(encoding="utf-8"))
        if change:
            change(doc)
        return self.write(rel, json.dumps(doc, indent=1))


Check = Callable[[Ctx, "Run"], list[str]]


@dataclass
class Case:
    id: str
    cls: str
    args: Sequence[str]
    setup: Callable[[Ctx], Any] | None = None
    exit: tuple[int, ...] = (1,)
    outputs: tuple[str, ...] = ()  # written on success: must exist after exit 0, must not after a failure
    on_error: tuple[str, ...] = ()  # must exist even after the expected non-zero exit (a matrix's report)
    allow: tuple[str, ...] = ()  # may be written whatever the exit (a report of a matrix with failed pairs)
    mentions: tuple[str, ...] = ()  # substrings the error line (or, on success, the output) must hold
    report: tuple[str, str] | None = None  # (json, md) to check cell by cell against the pairs
    identity: bool = False  # also check each report entry's hash against the file at its path
    json_cells: bool = (
        True  # check the JSON's matrices too (False: the JSON is a deliberately tampered input)
    )
    failed: tuple[int, int] | None = None  # "N of M pairs failed" expected in the last line
    checks: tuple[Check, ...] = ()
    timeout: float = 60.0
    note: str = ""

    def __post_init__(self) -> None:
        args = list(map(str, self.args))
        if (
            self.report is None
            and "--json" in args[:-1]
            and "--markdown" in args[:-1]
            and args[0] == "eval-matrix"
        ):
            self.report = (args[args.index("--json") + 1], args[args.index("--markdown") + 1])

    @property
    def summary(self) -> str:
        def short(a: str) -> str:
            a = a.replace(LONG, "x…(300)")
            return a if len(a) <= 48 else a[:45] + "…"

        return "relstitch " + " ".join(shlex.quote(short(str(a))) for a in self.args)

    @property
    def expected(self) -> str:
        return "/".join(map(str, self.exit))


@dataclass
class Run:
    code: int | None
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int
    timed_out: bool
    killed_for_memory: bool


@dataclass
class Result:
    case: Case
    code: int | None = None
    seconds: float = 0.0
    peak_rss: int = 0
    reasons: list[str] = field(default_factory=list)
    clean_error: bool = False
    traceback: bool = False
    pwned: bool = False
    hang: bool = False
    over_memory: bool = False
    left_behind: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    cells_checked: int = 0
    cells_bad: int = 0
    stderr_tail: str = ""

    @property
    def passed(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, Any]:
        c = self.case
        return {
            "id": c.id,
            "class": c.cls,
            "command": c.summary,
            "args": list(map(str, c.args)),
            "expected": list(c.exit),
            "got": self.code,
            "passed": self.passed,
            "reasons": self.reasons,
            "seconds": round(self.seconds, 2),
            "peak_rss_mib": round(self.peak_rss / (1 << 20), 1),
            "clean_error": self.clean_error,
            "traceback": self.traceback,
            "code_executed": self.pwned,
            "hang": self.hang,
            "over_memory": self.over_memory,
            "left_behind": self.left_behind,
            "inputs_modified": self.modified,
            "cells_checked": self.cells_checked,
            "cells_disagreeing": self.cells_bad,
            "stderr_tail": self.stderr_tail,
            "note": c.note,
        }


# ============================================================================================ running
def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="120",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONWARNINGS="",
    )
    env.pop("FORCE_COLOR", None)
    return env


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def execute(command: list[str], cwd: Path, timeout: float, logs: Path) -> Run:
    """Run ``command`` in ``cwd`` in its own session; reap it with ``os.wait4`` for its peak RSS. On timeout
    (or memory past :data:`MEMORY_KILL`) the group gets SIGTERM, then SIGKILL three seconds later."""
    out_path, err_path = logs / "stdout", logs / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            # a per-run cache folder a failed case keeps stays with its logs, never in the user's cache
            env={**child_env(), "XDG_CACHE_HOME": str(logs / "cache")},
            start_new_session=True,
        )
    timed_out = killed_for_memory = False
    peak = 0
    term_at: float | None = None
    status, usage = 0, None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.monotonic()
        peak = max(peak, _rss(proc.pid))
        if term_at is None and (now - start > timeout or peak > MEMORY_KILL):
            timed_out, killed_for_memory = now - start > timeout, peak > MEMORY_KILL
            _kill_group(proc.pid, signal.SIGTERM)
            term_at = now
        elif term_at is not None and now - term_at > 3:
            _kill_group(proc.pid, signal.SIGKILL)
        time.sleep(0.05)
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    _kill_group(proc.pid, signal.SIGKILL)  # anything the command left running in its session
    peak = max(peak, (usage.ru_maxrss * 1024) if usage else 0)
    read = lambda p: p.read_bytes().decode("utf-8", "replace")  # noqa: E731
    return Run(proc.returncode, read(out_path), read(err_path), seconds, peak, timed_out, killed_for_memory)


def snapshot(root: Path) -> dict[str, tuple[str, ...]]:
    """Every entry under ``root`` (not following links): kind and, for files, the sha256 of the content."""
    found: dict[str, tuple[str, ...]] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            p = Path(folder, name)
            rel = str(p.relative_to(root))
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", oct(stat.S_IMODE(st.st_mode)))
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256()
                with open(p, "rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
                found[rel] = ("file", digest.hexdigest())
            elif stat.S_ISFIFO(st.st_mode):
                found[rel] = ("fifo",)
            else:
                found[rel] = ("other",)
    return found


def one_line_error(stderr: str) -> str | None:
    """The ``error:`` line when stderr is ``warning:`` lines then exactly one ``error:`` line, else None."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and lines[-1].startswith("error: ") and all(line.startswith("warning: ") for line in lines[:-1]):
        return lines[-1]
    return None


PYTHON_WARNING = re.compile(r"\b\w*(Warning|Error): ")
FAILED_LINE = re.compile(r"(?:(\d+) of (\d+)|all (\d+)) pairs? failed")


def run_case(case: Case, command: list[str], fixtures: Fixtures, keep: bool) -> Result:
    result = Result(case)
    tmp = Path(tempfile.mkdtemp(prefix=f"hostile-{case.id}-"))
    logs = Path(tempfile.mkdtemp(prefix=f"hostile-{case.id}-logs-"))
    ctx = Ctx(tmp, fixtures)
    try:
        for name in STANDARD:
            ctx.copy(name, name)
        if case.setup:
            case.setup(ctx)
        before = snapshot(tmp)
        run = execute([*command, *map(str, case.args)], tmp, case.timeout, logs)
        after = snapshot(tmp)
        judge(case, ctx, run, before, after, result)
    except Exception as exc:  # a broken case or fixture is a failure of the battery, said so
        result.reasons.append(f"harness: {type(exc).__name__}: {exc}")
    finally:
        for folder, dirs, _ in os.walk(tmp):  # read-only folders made by a case
            for d in dirs:
                p = Path(folder, d)
                if not p.is_symlink():
                    os.chmod(p, 0o755)
        if keep:
            print(f"kept {case.id}: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
    return result


def judge(
    case: Case,
    ctx: Ctx,
    run: Run,
    before: dict[str, tuple[str, ...]],
    after: dict[str, tuple[str, ...]],
    result: Result,
) -> None:
    reasons = result.reasons
    result.code, result.seconds, result.peak_rss = run.code, run.seconds, run.peak_rss
    result.stderr_tail = run.stderr.strip()[-600:]
    both = run.stdout + run.stderr
    line = one_line_error(run.stderr)

    result.pwned = any(Path(rel).name == SENTINEL for rel in after)
    if result.pwned:
        reasons.append("CODE EXECUTED: the PWNED sentinel file appeared")
    if run.timed_out:
        result.hang = True
        reasons.append(f"hang: killed after {case.timeout:.0f} s")
    if run.killed_for_memory or run.peak_rss > MEMORY_LIMIT:
        result.over_memory = True
        reasons.append(
            f"memory: peak RSS {run.peak_rss / GIB:.2f} GiB" + (" (killed)" if run.killed_for_memory else "")
        )
    result.traceback = "Traceback (most recent call last)" in both
    if result.traceback:
        reasons.append("traceback: " + _last_line(run.stderr))
    if not run.timed_out and run.code not in case.exit:
        what = f"exit {run.code}, expected {case.expected}"
        detail = line or _last_line(run.stderr) or _last_line(run.stdout)
        reasons.append(f"{what}: {detail}" if detail else what)
    if run.code not in (0, None):
        result.clean_error = line is not None and not result.traceback and not run.timed_out
        if line is None and not run.timed_out and not result.traceback:
            reasons.append(
                "not one clean error line: " + " / ".join(run.stderr.strip().splitlines()[-3:])[:300]
            )
    elif (
        run.code == 0
    ):  # status lines ("wrote X") may go to stderr; an error line or a Python warning may not
        noise = [x for x in run.stderr.splitlines() if x.startswith("error:") or PYTHON_WARNING.search(x)]
        if noise and not result.traceback:
            reasons.append("stderr noise on success: " + noise[0][:200])
    for text in case.mentions:
        where = line if run.code not in (0, None) and line else both
        if text not in where:
            reasons.append(f"output does not mention {text.replace(LONG, 'x…(300)')!r}")

    # files: modified inputs, outputs present or absent, anything else left behind
    result.modified = sorted(rel for rel, entry in before.items() if after.get(rel) != entry)
    if result.modified:
        reasons.append("inputs modified: " + ", ".join(_short(m) for m in result.modified))
    allowed = set(case.on_error) | set(case.allow) | (set(case.outputs) if run.code == 0 else set())
    new = sorted(rel for rel in after if rel not in before and Path(rel).name != SENTINEL)
    parents = {str(p) for rel in allowed for p in Path(rel).parents if str(p) != "."}
    result.left_behind = [rel for rel in new if rel not in allowed and rel not in parents]
    if result.left_behind:
        reasons.append("files left behind: " + ", ".join(_short(x) for x in result.left_behind))
    required = (case.outputs if run.code == 0 and 0 in case.exit else ()) + (
        case.on_error if run.code in case.exit else ()
    )
    missing = [rel for rel in required if after.get(rel, ("",))[0] != "file"]
    if missing:
        reasons.append("expected output missing: " + ", ".join(missing))

    if case.failed is not None and run.code in case.exit:
        n, m = case.failed
        last = [_last_line(run.stderr), _last_line(run.stdout)] if run.code == 0 else [_last_line(run.stderr)]
        said = [FAILED_LINE.search(x) for x in last if x]
        good = any(
            s and ((s.group(1), s.group(2)) == (str(n), str(m)) or (n == m and s.group(3) == str(m)))
            for s in said
        )
        if not good:
            reasons.append(
                f"last line does not say '{n} of {m} pairs failed': {' / '.join(x for x in last if x)[:200]}"
            )

    if case.report and (ctx.path(case.report[0]).is_file() or ctx.path(case.report[1]).is_file()):
        problems, checked, bad = check_report(
            ctx, *case.report, identity=case.identity, json_cells=case.json_cells
        )
        result.cells_checked, result.cells_bad = checked, bad
        reasons.extend(problems)
    for check in case.checks:
        try:
            reasons.extend(check(ctx, run))
        except Exception as exc:
            reasons.append(f"check {getattr(check, '__name__', '?')}: {type(exc).__name__}: {exc}")


def _last_line(text: str) -> str:
    lines = [x for x in text.splitlines() if x.strip()]
    return lines[-1].strip()[:300] if lines else ""


def _short(rel: str) -> str:
    return rel.replace(LONG, "x…(300)")


# ============================================================================================ reports
def fmt(value: Any) -> str:
    """A score as the renderers print it: the cells are checked for holding their own pair's value, in the one
    format relstitch prints (relstitch.reports.common.fmt, torch-free)."""
    from relstitch.reports.common import fmt as relstitch_fmt

    return relstitch_fmt(value)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is not bool and type(b) is not bool


MD_HEADING = re.compile(r"^## (\S+)(?: \(control: .*\))? · (\S+) [↑↓]$")


def _md_tables(text: str) -> dict[str, tuple[str, list[list[str]]]]:
    """``{method: (metric, rows of cells)}`` from the Markdown report's matrix sections."""
    lines = text.splitlines()
    found: dict[str, tuple[str, list[list[str]]]] = {}
    for i, line in enumerate(lines):
        m = MD_HEADING.match(line)
        if not m:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("|"):
            if lines[j].startswith("## "):
                break
            j += 1
        table = []
        while j < len(lines) and lines[j].startswith("|"):
            table.append([c.strip() for c in re.split(r"(?<!\\)\|", lines[j].strip())[1:-1]])
            j += 1
        found.setdefault(m.group(1), (m.group(2), table))
    return found


def _header_hash(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        return json.loads(header["__metadata__"]["relstitch.hash"])
    except (OSError, ValueError, KeyError, struct.error, TypeError):
        return None


def check_report(
    ctx: Ctx, json_rel: str, md_rel: str, *, identity: bool = False, json_cells: bool = True
) -> tuple[list[str], int, int]:
    """Every rendered cell against the pair it shows; names unique; pairs' hashes those of the entries they
    name.

    Returns (problems, cells checked, cells that disagree).
    """
    problems: list[str] = []
    checked = bad = 0
    examples: list[str] = []

    def disagree(text: str) -> None:
        nonlocal bad
        bad += 1
        if len(examples) < 3:
            examples.append(text)

    try:
        doc = json.loads(ctx.path(json_rel).read_text(encoding="utf-8"))
        encoders, decoders, pairs, matrices = doc["encoders"], doc["decoders"], doc["pairs"], doc["matrices"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"report {json_rel} unreadable: {type(exc).__name__}: {exc}"], 0, 0
    for role, items in (("rows (encoders)", encoders), ("columns (decoders)", decoders)):
        twice = sorted(n for n, k in Counter(x.get("name") for x in items).items() if k > 1)
        if twice:
            problems.append(f"two {role} share a display name: {', '.join(map(str, twice))}")
    keys = Counter((p["encoder"], p["decoder"], p["method"]) for p in pairs)
    repeated = [k for k, n in keys.items() if n > 1]
    if repeated:
        problems.append(
            f"{len(repeated)} (encoder, decoder, method) keys name several pairs, e.g. {repeated[0]}"
        )
    index: dict[tuple[str, str, str], dict[str, Any]] = {}
    for p in pairs:
        index.setdefault((p["encoder"], p["decoder"], p["method"]), p)
    e_by = {e["name"]: e for e in reversed(encoders)}
    d_by = {d["name"]: d for d in reversed(decoders)}

    for p in pairs:  # identity: a pair's hashes are those of the encoder and decoder it names
        e, d = e_by.get(p["encoder"]), d_by.get(p["decoder"])
        if e is None or d is None:
            disagree(f"pair {p['encoder']}→{p['decoder']} names no listed encoder/decoder")
            continue
        if p.get("encoder_hash") and e.get("hash") and p["encoder_hash"] != e["hash"]:
            disagree(f"pair {p['encoder']}→{p['decoder']}: encoder hash is not that of the encoder named")
        if p.get("decoder_hash") and d.get("hash") and p["decoder_hash"] != d["hash"]:
            disagree(f"pair {p['encoder']}→{p['decoder']}: decoder hash is not that of the decoder named")
        if (
            not p.get("error")
            and p.get("method") in ("relative", "absolute")
            and e.get("hash")
            and d.get("encoder_hash")
            and p.get("stitched") != (e["hash"] != d["encoder_hash"])
        ):
            disagree(
                f"pair {p['encoder']}→{p['decoder']}: stitched={p.get('stitched')} "
                "but the hashes say otherwise"
            )

    for method, m in matrices.items() if json_cells else ():  # JSON cells
        rows, columns = m.get("rows", []), m.get("columns", [])
        for metric, values in m.get("values", {}).items():
            for i, enc in enumerate(rows):
                for j, dec in enumerate(columns):
                    checked += 1
                    p = index.get((enc, dec, method))
                    want = None if p is None or p.get("error") else p["scores"].get(metric)
                    try:
                        got = values[i][j]
                    except (IndexError, TypeError):
                        disagree(f"json {method}/{metric} [{enc}, {dec}] missing")
                        continue
                    if not _same(got, want):
                        disagree(f"json {method}/{metric} [{enc}, {dec}] = {got!r}, pair says {want!r}")
    for p in pairs if json_cells else ():  # every pair rendered
        m = matrices.get(p["method"])
        if m is None or p["encoder"] not in m.get("rows", []) or p["decoder"] not in m.get("columns", []):
            disagree(f"pair {p['encoder']}→{p['decoder']} ({p['method']}) is in no matrix cell")

    md_path = ctx.path(md_rel)
    if md_path.is_file():
        tables = _md_tables(md_path.read_text(encoding="utf-8"))
        for method, m in matrices.items():
            if method not in tables:
                problems.append(f"markdown has no {method} matrix")
                continue
            metric, table = tables[method]
            columns = m.get("columns", [])
            if not table or table[0][1:] != [_md(c) for c in columns]:
                problems.append(f"markdown {method} columns {table[0][1:] if table else []} ≠ json {columns}")
                continue
            body = table[2:]
            if [r[0] for r in body] != [_md(r) for r in m.get("rows", [])]:
                problems.append(f"markdown {method} rows differ from the json's")
                continue
            for enc, row in zip(m["rows"], body):
                for dec, text in zip(columns, row[1:]):
                    checked += 1
                    p = index.get((enc, dec, method))
                    if p is None:
                        want = ""
                    elif p.get("error"):
                        want = "✗"
                    elif not p.get("stitched"):
                        want = f"**{fmt(p['scores'].get(metric))}**\\*"
                    else:
                        want = fmt(p["scores"].get(metric))
                    if text != want:
                        disagree(f"markdown {method} [{enc}, {dec}] = {text!r}, pair says {want!r}")

    if identity:  # each entry's hash is that of the file at its path
        for role, items in (("encoder", encoders), ("decoder", decoders)):
            for item in items:
                path = Path(str(item.get("path", "")))
                path = path if path.is_absolute() else ctx.tmp / path
                recorded = _header_hash(path) if path.is_file() else None
                if recorded and item.get("hash") and recorded != item["hash"]:
                    disagree(f"{role} {item.get('name')} at {item.get('path')}: hash is not that file's")
    if bad:
        problems.append(f"{bad} rendered cells/pairs disagree with pairs: " + "; ".join(examples))
    return problems, checked, bad


def _load_report(ctx: Ctx, rel: str = "out.json") -> dict[str, Any] | None:
    try:
        return json.loads(ctx.path(rel).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def failed_member(role: str, basename: str) -> Check:
    """The report lists the broken encoder (row) or decoder (column) ``basename`` with every one of its pairs
    failed and a reason given, and every other pair scored."""
    key = role[:-1]

    def check(ctx: Ctx, run: Run) -> list[str]:
        doc = _load_report(ctx)
        if doc is None:
            return []  # reported as a missing output already
        stem = basename.split(".")[0]
        entries = [
            x for x in doc[role] if Path(str(x.get("path", ""))).name == basename or x.get("name") == stem
        ]
        if len(entries) != 1:
            return [
                f"broken {key} {basename} is not listed once in the report's {role} ({len(entries)} entries)"
            ]
        name = entries[0]["name"]
        own = [p for p in doc["pairs"] if p[key] == name]
        others = [p for p in doc["pairs"] if p[key] != name]
        problems = []
        if not own:
            problems.append(f"broken {key} {name} has no pairs in the report")
        if any(not (isinstance(p.get("error"), str) and p["error"].strip()) for p in own):
            problems.append(f"a pair of the broken {key} {name} has no error reason")
        failing = [p for p in others if p.get("error")]
        if not others or failing:
            first = f": {failing[0]['error'][:120]}" if failing else ""
            problems.append(f"{len(failing)} of {len(others)} good pairs failed{first}")
        axis = "rows" if key == "encoder" else "columns"
        if own and not any(name in m.get(axis, []) for m in doc["matrices"].values()):
            problems.append(f"broken {key} {name} has no {axis[:-1]} in any matrix")
        return problems

    check.__name__ = f"failed_{key}"
    return check


def lists_file(role: str, basename: str) -> Check:
    """On success, the report lists ``basename`` among its encoders/decoders by path: read as a file."""

    def check(ctx: Ctx, run: Run) -> list[str]:
        if run.code != 0:
            return []
        doc = _load_report(ctx)
        if doc is None:
            return []
        if not any(Path(str(x.get("path", ""))).name == basename for x in doc[role]):
            return [f"{basename} is not among the report's {role} (not read as a checkpoint file)"]
        return []

    check.__name__ = "lists_file"
    return check


def count(role: str, n: int) -> Check:
    def check(ctx: Ctx, run: Run) -> list[str]:
        doc = _load_report(ctx)
        if doc is None or run.code not in (0, 1):
            return []
        got = len(doc[role])
        return [] if got == n else [f"report lists {got} {role}, expected {n} (one per file)"]

    check.__name__ = "count"
    return check


def stdout_json(*keys: str) -> Check:
    def check(ctx: Ctx, run: Run) -> list[str]:
        if run.code != 0:
            return []
        try:
            doc = json.loads(run.stdout)
        except ValueError:
            return ["stdout is not JSON"]
        missing = [k for k in keys if k not in doc]
        return [f"stdout JSON lacks {', '.join(missing)}"] if missing else []

    check.__name__ = "stdout_json"
    return check


def no_terminal_escapes(ctx: Ctx, run: Run) -> list[str]:
    """Names from files reach the terminal as text: no escape sequence of theirs (colour is off: NO_COLOR)."""
    return (
        ["an escape sequence from a name reached the terminal"] if "\x1b" in run.stdout + run.stderr else []
    )


def html_escaped(ctx: Ctx, run: Run) -> list[str]:
    p = ctx.path("out.html")
    if run.code != 0 or not p.is_file():
        return []
    return (
        ["a name's <script> reached the HTML report unescaped"]
        if "<script>alert(1)" in p.read_text("utf-8")
        else []
    )


def unchanged_tree(rel: str) -> Check:
    def check(ctx: Ctx, run: Run) -> list[str]:
        return [] if ctx.path(rel).is_dir() else [f"{rel} is no longer a folder"]

    check.__name__ = "unchanged_tree"
    return check


# ============================================================================================ cases
def _zoo(*entries: tuple[str, str | Callable[[Ctx, str], Any]]) -> Callable[[Ctx], None]:
    """A setup that fills files: each entry is (relative path, shipped name / crafted name / callable)."""

    def setup(ctx: Ctx) -> None:
        for rel, what in entries:
            if callable(what):
                what(ctx, rel)
            elif what in CRAFT:
                ctx.craft(rel, what)
            else:
                ctx.copy(rel, what)

    return setup


def _fifo(ctx: Ctx, rel: str) -> None:
    ctx.fifo(rel)


def _dir(ctx: Ctx, rel: str) -> None:
    ctx.mkdir(rel)


def _empty(ctx: Ctx, rel: str) -> None:
    ctx.write(rel, b"")


def _loop(ctx: Ctx, rel: str) -> None:
    ctx.symlink(rel, Path(rel).name)


def _report(ctx: Ctx, rel: str) -> None:
    ctx.report(rel)


def _embeddings(ctx: Ctx, rel: str) -> None:
    ctx.copy(rel, ctx.fixtures.embeddings())


def _emb_bad_labels(ctx: Ctx, rel: str) -> None:
    ctx.write(rel, emb_labels_out_of_range(ctx.fixtures.embeddings().read_bytes()))


def _emb_payload(ctx: Ctx, rel: str) -> None:
    ctx.write(rel, emb_payload_name(ctx.fixtures.embeddings().read_bytes()))


def _bom_csv(ctx: Ctx, rel: str) -> None:
    rows = [f"sample text number {i},{['a', 'b', 'c'][i % 3]}" for i in range(30)]
    ctx.write(rel, "\ufefftext,label\n" + "\n".join(rows) + "\n")


def _text_jsonl(ctx: Ctx, rel: str) -> None:
    ctx.write(rel, "".join(json.dumps({"text": f"gloss {i}", "label": i % 3}) + "\n" for i in range(30)))


def _image_jsonl_134(ctx: Ctx, rel: str) -> None:
    lines = []
    for i in range(134):
        ctx.write(f"img/{i}.png", png_grey(28, 28, bytes((i * 7 + k) % 256 for k in range(28 * 28))))
        lines.append(json.dumps({"file": f"img/{i}.png", "label": str(i)}))
    ctx.write(rel, "\n".join(lines) + "\n")


def _evil_hf(ctx: Ctx, rel: str) -> None:
    """An hf: folder whose own code touches PWNED when imported (only ever run with --trust-remote-code)."""
    code = f"import os\nopen(os.path.join(os.getcwd(), {SENTINEL!r}), 'w').close()\n"
    ctx.write(
        f"{rel}/config.json",
        json.dumps(
            {
                "model_type": "evil",
                "auto_map": {
                    "AutoConfig": "configuration_evil.EvilConfig",
                    "AutoModel": "modeling_evil.EvilModel",
                },
            }
        ),
    )
    ctx.write(
        f"{rel}/configuration_evil.py",
        code + "from transformers import PretrainedConfig\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n",
    )
    ctx.write(f"{rel}/modeling_evil.py", code)


def _evil_module(ctx: Ctx, rel: str) -> None:
    ctx.write(
        rel,
        f"import os\nopen(os.path.join(os.getcwd(), {SENTINEL!r}), 'w').close()\n"
        "def build():\n    return None\n",
    )


def _readonly(ctx: Ctx, rel: str) -> None:
    os.chmod(ctx.mkdir(rel), 0o555)


def _payload_report(ctx: Ctx, rel: str) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["config"]["encoders"] = [PAYLOAD + "#name=x.encoder.safetensors"]
        doc["config"]["data"] = "tensors:/dev/zero"
        for e in doc["encoders"]:
            e["path"] = PAYLOAD + "#name=x.encoder.safetensors"
        doc["run"]["command"] = ["relstitch", "eval-matrix", "-e", PAYLOAD]

    ctx.report(rel, change)


def _tampered_report(ctx: Ctx, rel: str) -> None:
    """A current-schema report whose stored matrix disagrees with its pairs (two cells edited by hand)."""

    def change(doc: dict[str, Any]) -> None:
        values = doc["matrices"]["relative"]["values"]["accuracy"]
        values[0][0], values[3][0] = 0.999, 0.111

    ctx.report(rel, change)


def _text(content: str) -> Callable[[Ctx, str], None]:
    def write(ctx: Ctx, rel: str) -> None:
        ctx.write(rel, content)

    return write


def matrix(*args: str) -> list[str]:
    return ["eval-matrix", *args, *ANCH, *LIM]


P_ENC = f"{PAYLOAD}#name=x.encoder.safetensors"
P_DEC = f"{PAYLOAD}#name=x.decoder.safetensors"
ROOT_IGNORES_MODES = os.geteuid() == 0


def cases() -> list[Case]:
    c: list[Case] = []
    add = c.append

    # --------------------------------------------------------------- 1. code from names
    ok_or_refused = (0, 1)
    add(
        Case(
            "names-glob-encoder",
            "names",
            matrix("-e", "g/*.encoder.safetensors", "-D", D0, *REPORT_OUT),
            _zoo((f"g/{P_ENC}", E0), (f"g/{E1}", E1)),
            ok_or_refused,
            outputs=REPORT,
            allow=REPORT,
            report=REPORT,
            checks=(lists_file("encoders", P_ENC),),
            note="a glob match is a file, never a reference",
        )
    )
    add(
        Case(
            "names-glob-decoder",
            "names",
            matrix("-e", E0, "-D", "g/*.decoder.safetensors", *REPORT_OUT),
            _zoo((f"g/{P_DEC}", D1), (f"g/{D0}", D0)),
            ok_or_refused,
            outputs=REPORT,
            allow=REPORT,
            report=REPORT,
            checks=(lists_file("decoders", P_DEC),),
        )
    )
    add(
        Case(
            "names-folder-encoders",
            "names",
            matrix("-e", "g", "-D", D0, *REPORT_OUT),
            _zoo((f"g/{P_ENC}", E0), (f"g/{E1}", E1)),
            (0, 1, 2),
            outputs=REPORT,
            allow=REPORT,
            report=REPORT,
            note="a folder given as -e: read its checkpoints as files, or refuse",
        )
    )
    add(
        Case(
            "names-folder-decoders",
            "names",
            matrix("-e", E0, "-D", "g", *REPORT_OUT),
            _zoo((f"g/{P_DEC}", D1), (f"g/{D0}", D0)),
            (0, 1, 2),
            outputs=REPORT,
            allow=REPORT,
            report=REPORT,
        )
    )
    hf_name = "hf:evilhf#view=x.encoder.safetensors"
    add(
        Case(
            "names-hf-prefixed-file-trusted",
            "names",
            matrix("-e", "g/*.encoder.safetensors", "-D", D0, "--trust-remote-code", *REPORT_OUT),
            _zoo(("g/evilhf", _evil_hf), (f"g/{hf_name}", E0), ("evilhf", _evil_hf)),
            ok_or_refused,
            outputs=REPORT,
            allow=REPORT,
            report=REPORT,
            checks=(lists_file("encoders", hf_name),),
            note="with --trust-remote-code, a file named hf:DIR must still not load DIR's code",
        )
    )
    tv_name = "torchvision:resnet18#weights=w.encoder.safetensors"
    add(
        Case(
            "names-torchvision-prefixed-file",
            "names",
            matrix("-e", "g/*.encoder.safetensors", "-D", D0, *REPORT_OUT),
            _zoo((f"g/{tv_name}", E0), ("g/w.encoder.safetensors", E1)),
            ok_or_refused,
            outputs=REPORT,
            allow=REPORT,
            report=REPORT,
            checks=(lists_file("encoders", tv_name),),
        )
    )
    py_name = "python:evilmod:build#name=x.encoder.safetensors"
    add(
        Case(
            "names-python-module-file",
            "names",
            matrix("-e", "g/*.encoder.safetensors", "-D", D0, *REPORT_OUT),
            _zoo((f"g/{py_name}", E0), ("evilmod.py", _evil_module), ("g/evilmod.py", _evil_module)),
            ok_or_refused,
            outputs=REPORT,
            allow=REPORT,
            report=REPORT,
            checks=(lists_file("encoders", py_name),),
        )
    )
    add(
        Case(
            "names-decoder-meta-name",
            "names",
            matrix("-e", E0, "-D", D0, "-D", "payload.decoder.safetensors", *REPORT_OUT),
            _zoo(("payload.decoder.safetensors", "dec-payload-name")),
            (0,),
            outputs=REPORT,
            report=REPORT,
            note="relstitch.name = python:os:system(...) in the metadata; the hash still matches",
        )
    )
    add(
        Case(
            "names-stitch-meta-name",
            "names",
            ["stitch", "payload.encoder.safetensors", "payload.decoder.safetensors", *ANCH, *LIM],
            _zoo(
                ("payload.encoder.safetensors", "enc-payload-name"),
                ("payload.decoder.safetensors", "dec-payload-name"),
            ),
            (0,),
        )
    )
    add(
        Case(
            "names-stitch-typed-path",
            "names",
            ["stitch", f"./{P_ENC}", D0, *ANCH, *LIM],
            _zoo((P_ENC, E0)),
            ok_or_refused,
            note="typed, so its #name= is an option: read as ./python:os:system(...) or refused, never run",
        )
    )
    add(
        Case(
            "names-default-target-encoder",
            "names",
            ["stitch", EA1, f"./{PAYLOAD}#name=x.decoder.safetensors", "--method", "procrustes", *ANCH, *LIM],
            _zoo((P_DEC, DA0), (P_ENC, EA0)),
            ok_or_refused,
            note="the default --target-encoder is derived from the decoder's file name: a file",
        )
    )
    add(
        Case(
            "names-pickle-as-decoder",
            "names",
            ["stitch", E0, "evil.decoder.safetensors", *ANCH, *LIM],
            _zoo(("evil.decoder.safetensors", "pickle-evil")),
            (1,),
        )
    )
    add(
        Case(
            "names-pickle-weights",
            "names",
            ["encode", "torchvision:resnet18#weights=evil.pt", *ANCH, "--limit", "4", "-o", "o.safetensors"],
            _zoo(("evil.pt", "pickle-evil")),
            (1,),
            note="weights= is read with torch.load(weights_only=True) only",
        )
    )
    add(
        Case(
            "names-report-paths",
            "names",
            ["report", "report.json", "-f", "md", "-o", "r.md"],
            _zoo(("report.json", _payload_report)),
            (0,),
            outputs=("r.md",),
            note="paths recorded in a report are text, never loaded",
        )
    )
    add(
        Case(
            "names-embeddings-meta-name",
            "names",
            ["stitch", "embeddings:payload.safetensors", D0],
            _zoo(("payload.safetensors", _emb_payload)),
            (0,),
        )
    )
    add(
        Case(
            "names-markup-in-name",
            "names",
            matrix(
                "-e", E0, "-D", D0, "-D", "hostile.decoder.safetensors", *REPORT_OUT, "--html", "out.html"
            ),
            _zoo(("hostile.decoder.safetensors", "dec-hostile-name")),
            (0, 1),
            outputs=(*REPORT, "out.html"),
            allow=(*REPORT, "out.html"),
            report=REPORT,
            checks=(no_terminal_escapes, html_escaped),
            note="a decoder named 'a|b <script>… ESC[31m… newline': escaped in every form, or refused",
        )
    )
    add(Case("names-inspect-file", "names", ["inspect", P_ENC], _zoo((P_ENC, E0)), (0,)))

    # --------------------------------------------------------------- 2. a broken decoder among good ones
    broken = "zoo/broken.decoder.safetensors"
    base = (("zoo/" + D0, D0), ("zoo/" + DA0, DA0))
    bad_decoders = (
        ("truncated", "dec-truncated"),
        ("empty", _empty),
        ("nokind", "dec-nokind"),
        ("badprojection", "dec-badprojection"),
        ("fifo", _fifo),
        ("directory", _dir),
        ("badarch", "dec-badarch"),
    )
    for label, what in bad_decoders:
        args = matrix("-e", E0, "-e", E1, "-D", "zoo/*.decoder.safetensors", *REPORT_OUT)
        timeout = 20.0 if label == "fifo" else 60.0
        check = failed_member("decoders", "broken.decoder.safetensors")
        add(
            Case(
                f"broken-{label}",
                "broken",
                args,
                _zoo(*base, (broken, what)),
                (1,),
                on_error=REPORT,
                report=REPORT,
                failed=(2, 6),
                checks=(check,),
                timeout=timeout,
            )
        )
        if label in ("truncated", "nokind", "fifo", "directory"):
            add(
                Case(
                    f"broken-{label}-allow-failures",
                    "broken",
                    [*args, "--allow-failures"],
                    _zoo(*base, (broken, what)),
                    (0,),
                    outputs=REPORT,
                    report=REPORT,
                    failed=(2, 6),
                    checks=(check,),
                    timeout=timeout,
                )
            )
        if label in ("truncated", "badprojection", "fifo"):
            add(
                Case(
                    f"broken-{label}-fail-fast",
                    "broken",
                    [*args, "--fail-fast"],
                    _zoo(*base, (broken, what)),
                    (1,),
                    timeout=timeout,
                    note="--fail-fast: exit 1, no report",
                )
            )

    # --------------------------------------------------------------- 3. name clashes
    two_zoos = ["-D", "zooA/*.decoder.safetensors", "-D", "zooB/*.decoder.safetensors"]
    zoo_a = (("zooA/" + D0, D0), ("zooA/" + D1, D1))
    add(
        Case(
            "clash-file-names",
            "clash",
            matrix("-e", E0, "-e", E1, *two_zoos, *REPORT_OUT),
            _zoo(
                *zoo_a,
                ("zooB/" + D0, "cnn-rel-s2.decoder.safetensors"),
                ("zooB/" + D1, "mlp-rel-s0.decoder.safetensors"),
            ),
            (0,),
            outputs=REPORT,
            report=REPORT,
            identity=True,
            checks=(count("decoders", 4),),
            note="same file names, other decoders (their own metadata names)",
        )
    )
    add(
        Case(
            "clash-display-names",
            "clash",
            matrix("-e", E0, "-e", E1, *two_zoos, *REPORT_OUT),
            _zoo(*zoo_a, ("zooB/" + D0, "dec-rel-s2-as-s0"), ("zooB/" + D1, "dec-mlp-s0-as-s1")),
            (0,),
            outputs=REPORT,
            report=REPORT,
            identity=True,
            checks=(count("decoders", 4),),
            note="zooB's decoders carry zooA's names in their metadata too",
        )
    )
    add(
        Case(
            "clash-broken-namesake",
            "clash",
            matrix("-e", E0, "-e", E1, *two_zoos, *REPORT_OUT),
            _zoo(*zoo_a, ("zooB/" + D0, "dec-truncated"), ("zooB/" + D1, "dec-mlp-s0-as-s1")),
            (1,),
            on_error=REPORT,
            report=REPORT,
            identity=True,
            failed=(2, 8),
            checks=(count("decoders", 4),),
            note="a broken zooB/cnn-rel-s0 must not blank or borrow zooA/cnn-rel-s0's column",
        )
    )
    add(
        Case(
            "clash-identical-copies",
            "clash",
            matrix("-e", E0, *two_zoos, *REPORT_OUT),
            _zoo(*zoo_a, ("zooB/" + D0, D0), ("zooB/" + D1, D1)),
            (0,),
            outputs=REPORT,
            report=REPORT,
            identity=True,
        )
    )
    add(
        Case(
            "clash-encoders",
            "clash",
            matrix(
                "-e",
                "zooA/*.encoder.safetensors",
                "-e",
                "zooB/*.encoder.safetensors",
                "-D",
                D0,
                "-D",
                D1,
                *REPORT_OUT,
            ),
            _zoo(("zooA/" + E0, E0), ("zooB/" + E0, "enc-s1-as-s0")),
            (0,),
            outputs=REPORT,
            report=REPORT,
            identity=True,
            checks=(count("encoders", 2),),
            note="two encoders named cnn-rel-s0; the diagonal must follow the hashes",
        )
    )
    add(
        Case(
            "clash-same-file-twice",
            "clash",
            matrix("-e", E0, "-D", D0, "-D", f"./{D0}", "-D", D1, *REPORT_OUT),
            None,
            (0,),
            outputs=REPORT,
            report=REPORT,
            identity=True,
            note="one file spelled two ways",
        )
    )
    add(
        Case(
            "clash-spaces",
            "clash",
            matrix("-e", E0, "-e", EA1, *two_zoos, *REPORT_OUT),
            _zoo(("zooA/" + D0, D0), ("zooB/" + D0, DA0)),
            (0,),
            outputs=REPORT,
            report=REPORT,
            identity=True,
            note="same file name, one relative and one absolute decoder",
        )
    )

    add(
        Case(
            "clash-report-tampered-md",
            "clash",
            ["report", "report.json", "-f", "md", "-o", "r.md"],
            _zoo(("report.json", _tampered_report)),
            (0, 1),
            outputs=("r.md",),
            report=("report.json", "r.md"),
            json_cells=False,
            note="a report whose matrices disagree with its pairs: render the pairs, or refuse",
        )
    )
    add(
        Case(
            "clash-report-tampered-json",
            "clash",
            ["report", "report.json", "-f", "json", "-o", "r.json"],
            _zoo(("report.json", _tampered_report)),
            (0, 1),
            outputs=("r.json",),
            report=("r.json", "r.md"),
        )
    )

    # --------------------------------------------------------------- 4. exit status of partly failed matrices
    other = ("other.decoder.safetensors", "dec-otheranchors")
    status_args = matrix("-e", E0, "-e", E1, "-D", D0, "-D", DA0, "-D", other[0], *REPORT_OUT)
    add(
        Case(
            "status-failed-column",
            "status",
            status_args,
            _zoo(other),
            (1,),
            on_error=REPORT,
            report=REPORT,
            failed=(2, 6),
            checks=(failed_member("decoders", other[0]),),
            note="a decoder trained with other anchors",
        )
    )
    add(
        Case(
            "status-failed-column-allowed",
            "status",
            [*status_args, "--allow-failures"],
            _zoo(other),
            (0,),
            outputs=REPORT,
            report=REPORT,
            failed=(2, 6),
        )
    )
    row_args = matrix(
        "-e", E0, "-e", EA1, "-e", "broken.encoder.safetensors", "-D", D0, "-D", DA0, *REPORT_OUT
    )
    add(
        Case(
            "status-failed-row",
            "status",
            row_args,
            _zoo(("broken.encoder.safetensors", "enc-truncated")),
            (1,),
            on_error=REPORT,
            report=REPORT,
            failed=(2, 6),
            checks=(failed_member("encoders", "broken.encoder.safetensors"),),
        )
    )
    add(
        Case(
            "status-failed-row-allowed",
            "status",
            [*row_args, "--allow-failures"],
            _zoo(("broken.encoder.safetensors", "enc-truncated")),
            (0,),
            outputs=REPORT,
            report=REPORT,
            failed=(2, 6),
        )
    )
    add(
        Case(
            "status-all-failed",
            "status",
            matrix("-e", E0, "-e", E1, "-D", other[0], *REPORT_OUT),
            _zoo(other),
            (1,),
            on_error=REPORT,
            report=REPORT,
            failed=(2, 2),
        )
    )
    add(
        Case(
            "status-no-report-requested",
            "status",
            matrix("-e", E0, "-D", D0, "-D", other[0]),
            _zoo(other),
            (1,),
            failed=(1, 2),
        )
    )
    add(
        Case(
            "status-fail-fast",
            "status",
            [*status_args, "--fail-fast"],
            _zoo(other),
            (1,),
            note="--fail-fast: stops, nothing written",
        )
    )
    add(
        Case(
            "status-stitch-other-anchors",
            "status",
            ["stitch", E0, other[0], *ANCH, *LIM],
            _zoo(other),
            (1,),
            mentions=("other.decoder.safetensors",),
        )
    )

    # --------------------------------------------------------------- 5. OS errors
    enc_args = ["encode", E0, *ANCH, "--limit", "20"]
    mention_long = (LONG[:40],)
    add(
        Case(
            "oserror-long-encode-output",
            "oserror",
            [*enc_args, "-o", f"{LONG}.safetensors"],
            None,
            (1, 2),
            mentions=mention_long,
        )
    )
    add(
        Case(
            "oserror-long-json-output",
            "oserror",
            matrix("-e", E0, "-D", D0, "--json", f"{LONG}.json"),
            None,
            (1, 2),
            mentions=mention_long,
        )
    )
    add(
        Case(
            "oserror-long-report-output",
            "oserror",
            ["report", "report.json", "-f", "md", "-o", f"{LONG}.md"],
            _zoo(("report.json", _report)),
            (1, 2),
            mentions=mention_long,
        )
    )
    add(Case("oserror-long-input-inspect", "oserror", ["inspect", LONG], None, (1,), mentions=mention_long))
    add(
        Case(
            "oserror-loop-encode-output",
            "oserror",
            [*enc_args, "-o", "loop"],
            _zoo(("loop", _loop)),
            (1, 2),
            mentions=("loop",),
        )
    )
    add(
        Case(
            "oserror-loop-json-output",
            "oserror",
            matrix("-e", E0, "-D", D0, "--json", "loop"),
            _zoo(("loop", _loop)),
            (1, 2),
            mentions=("loop",),
        )
    )
    add(
        Case(
            "oserror-loop-report-output",
            "oserror",
            ["report", "report.json", "-f", "md", "-o", "loop"],
            _zoo(("report.json", _report), ("loop", _loop)),
            (1, 2),
            mentions=("loop",),
        )
    )
    add(
        Case(
            "oserror-loop-anchors-input",
            "oserror",
            ["stitch", E0, D0, "-a", "loop", *LIM],
            _zoo(("loop", _loop)),
            (1,),
            mentions=("loop",),
        )
    )
    add(
        Case(
            "oserror-readonly-folder",
            "oserror",
            [*enc_args, "-o", "ro/out.safetensors"],
            _zoo(("ro", _readonly)),
            (0, 1) if ROOT_IGNORES_MODES else (1,),
            outputs=("ro/out.safetensors",),
            note="as root the mode does not bite: a written file is fine then",
        )
    )
    add(
        Case(
            "oserror-unwritable-proc",
            "oserror",
            [*enc_args, "-o", "/proc/self/hostile-out.safetensors"],
            None,
            (1,),
            mentions=("/proc/self",),
            note="not writable even by root",
        )
    )
    add(
        Case(
            "oserror-dir-as-json-output",
            "oserror",
            matrix("-e", E0, "-D", D0, "--json", "adir"),
            _zoo(("adir", _dir)),
            (1, 2),
            mentions=("adir",),
        )
    )
    add(
        Case(
            "oserror-dir-as-output-force",
            "oserror",
            [*enc_args, "-o", "adir", "--force"],
            _zoo(("adir", _dir), ("adir/keep.txt", _text("keep me"))),
            (1, 2),
            mentions=("adir",),
            checks=(unchanged_tree("adir"),),
            note="--force must not delete a folder",
        )
    )
    add(
        Case(
            "oserror-dir-as-report-output",
            "oserror",
            ["report", "report.json", "-f", "md", "-o", "adir"],
            _zoo(("report.json", _report), ("adir", _dir)),
            (1, 2),
            mentions=("adir",),
        )
    )
    add(
        Case(
            "oserror-dir-as-decoder",
            "oserror",
            ["stitch", E0, "adir", *ANCH, *LIM],
            _zoo(("adir", _dir)),
            (1,),
            mentions=("adir",),
        )
    )
    add(
        Case(
            "oserror-dir-as-report",
            "oserror",
            ["report", "adir"],
            _zoo(("adir", _dir)),
            (1,),
            mentions=("adir",),
        )
    )
    add(
        Case(
            "oserror-missing-parent",
            "oserror",
            [*enc_args, "-o", "nodir/out.safetensors"],
            None,
            (1,),
            mentions=("nodir",),
        )
    )
    add(
        Case(
            "oserror-file-as-parent",
            "oserror",
            [*enc_args, "-o", "afile.txt/out.safetensors"],
            _zoo(("afile.txt", _text("a file"))),
            (1,),
            mentions=("afile.txt",),
        )
    )
    add(
        Case(
            "oserror-fifo-output",
            "oserror",
            [*enc_args, "-o", "fifo.safetensors"],
            _zoo(("fifo.safetensors", _fifo)),
            (1, 2),
            timeout=20,
            mentions=("fifo.safetensors",),
        )
    )

    # --------------------------------------------------------------- 6. unbounded reads, hangs
    quick = 20.0
    add(
        Case(
            "unbounded-csv-dev-zero",
            "unbounded",
            [*enc_args, "-d", "csv:/dev/zero", "-o", "o.safetensors"],
            None,
            (1,),
            timeout=quick,
        )
    )
    add(
        Case(
            "unbounded-jsonl-dev-zero",
            "unbounded",
            [*enc_args, "-d", "jsonl:/dev/zero", "-o", "o.safetensors"],
            None,
            (1,),
            timeout=quick,
        )
    )
    add(Case("unbounded-report-dev-zero", "unbounded", ["report", "/dev/zero"], None, (1,), timeout=quick))
    add(Case("unbounded-inspect-dev-zero", "unbounded", ["inspect", "/dev/zero"], None, (1,), timeout=quick))
    fifo_dec = ("fifo.decoder.safetensors", _fifo)
    add(
        Case(
            "unbounded-inspect-fifo",
            "unbounded",
            ["inspect", fifo_dec[0]],
            _zoo(fifo_dec),
            (1,),
            timeout=quick,
        )
    )
    add(
        Case(
            "unbounded-stitch-fifo-decoder",
            "unbounded",
            ["stitch", E0, fifo_dec[0], *ANCH, *LIM],
            _zoo(fifo_dec),
            (1,),
            timeout=quick,
        )
    )
    add(
        Case(
            "unbounded-matrix-fifo-decoder",
            "unbounded",
            matrix("-e", E0, "-D", fifo_dec[0]),
            _zoo(fifo_dec),
            (1,),
            timeout=quick,
        )
    )
    add(
        Case(
            "unbounded-encode-fifo-encoder",
            "unbounded",
            ["encode", "fifo.encoder.safetensors", *ANCH, "--limit", "20", "-o", "o.safetensors"],
            _zoo(("fifo.encoder.safetensors", _fifo)),
            (1,),
            timeout=quick,
        )
    )
    add(
        Case(
            "unbounded-jsonl-fifo",
            "unbounded",
            [*enc_args, "-d", "jsonl:fifo.jsonl", "-o", "o.safetensors"],
            _zoo(("fifo.jsonl", _fifo)),
            (1,),
            timeout=quick,
        )
    )
    add(
        Case(
            "unbounded-csv-fifo",
            "unbounded",
            [*enc_args, "-d", "csv:fifo.csv", "-o", "o.safetensors"],
            _zoo(("fifo.csv", _fifo)),
            (1,),
            timeout=quick,
        )
    )
    add(
        Case(
            "unbounded-anchors-fifo",
            "unbounded",
            ["stitch", E0, D0, "-a", "fifo.safetensors", *LIM],
            _zoo(("fifo.safetensors", _fifo)),
            (1,),
            timeout=quick,
        )
    )
    add(
        Case(
            "unbounded-ids-fifo",
            "unbounded",
            ["anchors", "out.safetensors", "-d", "builtin:test", "--strategy", "ids", "--ids", "ids.txt"],
            _zoo(("ids.txt", _fifo)),
            (1,),
            timeout=quick,
        )
    )
    add(
        Case(
            "unbounded-ids-dev-zero",
            "unbounded",
            ["anchors", "out.safetensors", "-d", "builtin:test", "--strategy", "ids", "--ids", "/dev/zero"],
            None,
            (1,),
            timeout=quick,
        )
    )
    add(
        Case(
            "unbounded-fit-fifo",
            "unbounded",
            ["fit", "fifo.safetensors", "-o", "h.decoder.safetensors"],
            _zoo(("fifo.safetensors", _fifo)),
            (1,),
            timeout=quick,
        )
    )
    add(
        Case(
            "unbounded-target-encoder-fifo",
            "unbounded",
            [
                "stitch",
                EA1,
                DA0,
                "--method",
                "procrustes",
                "--target-encoder",
                "fifo.encoder.safetensors",
                *ANCH,
                *LIM,
            ],
            _zoo(("fifo.encoder.safetensors", _fifo)),
            (1,),
            timeout=quick,
        )
    )
    add(
        Case(
            "unbounded-report-fifo",
            "unbounded",
            ["report", "fifo.json"],
            _zoo(("fifo.json", _fifo)),
            (1,),
            timeout=quick,
        )
    )

    # --------------------------------------------------------------- 7. labels outside the classes
    bad_t = ("bad.safetensors", "tensors-labels-134")
    add(
        Case(
            "labels-encode",
            "labels",
            ["encode", E0, *ANCH, "-d", "tensors:bad.safetensors", "-o", "o.safetensors"],
            _zoo(bad_t),
            (1,),
            note="labels 0..133, 10 class names",
        )
    )
    add(
        Case(
            "labels-anchors",
            "labels",
            ["anchors", "out.safetensors", "-d", "tensors:bad.safetensors", "-k", "20"],
            _zoo(bad_t),
            (1,),
        )
    )
    add(
        Case(
            "labels-stitch",
            "labels",
            ["stitch", E0, D0, *ANCH, "-d", "tensors:bad.safetensors"],
            _zoo(bad_t),
            (1,),
        )
    )
    add(
        Case(
            "labels-matrix",
            "labels",
            ["eval-matrix", "-e", E0, "-D", D0, *ANCH, "-d", "tensors:bad.safetensors", *REPORT_OUT],
            _zoo(bad_t),
            (1,),
            note="bad data: refused before any pair, no report",
        )
    )
    add(
        Case(
            "labels-unnamed-vs-decoder",
            "labels",
            ["stitch", E0, D0, *ANCH, "-d", "tensors:unnamed.safetensors"],
            _zoo(("unnamed.safetensors", "tensors-labels-134-unnamed")),
            (1,),
            note="134 numbered classes into a 10-class decoder",
        )
    )
    add(
        Case(
            "labels-fit",
            "labels",
            ["fit", "emb.safetensors", "-o", "h.decoder.safetensors", "--epochs", "1"],
            _zoo(("emb.safetensors", _emb_bad_labels)),
            (1,),
            note="embeddings with labels 74..133, 10 classes",
        )
    )
    add(
        Case(
            "labels-stitch-embeddings",
            "labels",
            ["stitch", "embeddings:emb.safetensors", D0],
            _zoo(("emb.safetensors", _emb_bad_labels)),
            (1,),
        )
    )
    add(
        Case(
            "labels-jsonl-images",
            "labels",
            ["stitch", E0, D0, *ANCH, "-d", "jsonl:images.jsonl#image=file,label=label"],
            _zoo(("images.jsonl", _image_jsonl_134)),
            (1,),
            note="134 labelled PNGs into a 10-class decoder",
        )
    )
    add(
        Case(
            "labels-negative",
            "labels",
            ["encode", E0, *ANCH, "-d", "tensors:neg.safetensors", "-o", "o.safetensors"],
            _zoo(("neg.safetensors", "tensors-labels-negative")),
            (1,),
        )
    )
    add(
        Case(
            "labels-in-range-control",
            "labels",
            ["stitch", E0, D0, *ANCH, "-d", "tensors:ok.safetensors"],
            _zoo(("ok.safetensors", "tensors-labels-10")),
            (0,),
            note="the control: 60 labels 0..9, 10 names",
        )
    )

    # --------------------------------------------------------------- 8. weights
    def weights_pair(label: str, role: str, crafted_name: str, note: str) -> None:
        if role == "decoder":
            f = f"{label}.decoder.safetensors"
            add(
                Case(
                    f"weights-{label}-stitch",
                    "weights",
                    ["stitch", E0, f, *ANCH, *LIM],
                    _zoo((f, crafted_name)),
                    (1,),
                    mentions=(f,),
                    note=note,
                )
            )
            add(
                Case(
                    f"weights-{label}-matrix",
                    "weights",
                    matrix("-e", E0, "-e", E1, "-D", D0, "-D", DA0, "-D", f, *REPORT_OUT),
                    _zoo((f, crafted_name)),
                    (1,),
                    on_error=REPORT,
                    report=REPORT,
                    failed=(2, 6),
                    checks=(failed_member("decoders", f),),
                    note=note,
                )
            )
        else:
            f = f"{label}.encoder.safetensors"
            add(
                Case(
                    f"weights-{label}-stitch",
                    "weights",
                    ["stitch", f, D0, *ANCH, *LIM],
                    _zoo((f, crafted_name)),
                    (1,),
                    mentions=(f,),
                    note=note,
                )
            )
            add(
                Case(
                    f"weights-{label}-matrix",
                    "weights",
                    matrix("-e", E0, "-e", f, "-D", D0, "-D", DA0, *REPORT_OUT),
                    _zoo((f, crafted_name)),
                    (1,),
                    on_error=REPORT,
                    report=REPORT,
                    failed=(2, 4),
                    checks=(failed_member("encoders", f),),
                    note=note,
                )
            )

    weights_pair("i32bias", "decoder", "dec-i32bias", "a bias's dtype F32→I32 in the header, same bytes")
    weights_pair("inf", "decoder", "dec-inf", "+Inf in the head's weights (hash recomputed)")
    weights_pair("nan", "encoder", "enc-nan", "NaN weights (hash recomputed)")
    weights_pair("tampered", "encoder", "enc-tampered", "tensors changed, relstitch.hash kept")
    weights_pair("input-huge", "encoder", "enc-input-huge", "relstitch.input edited: resize 224000x224000")
    weights_pair("input-std0", "encoder", "enc-input-std0", "relstitch.input edited: std 0")
    add(
        Case(
            "weights-tampered-encode",
            "weights",
            ["encode", "tampered.encoder.safetensors", *ANCH, "--limit", "20", "-o", "o.safetensors"],
            _zoo(("tampered.encoder.safetensors", "enc-tampered")),
            (1,),
        )
    )
    add(
        Case(
            "weights-tampered-decoder-stitch",
            "weights",
            ["stitch", E0, "tampered.decoder.safetensors", *ANCH, *LIM],
            _zoo(("tampered.decoder.safetensors", "dec-tampered")),
            (1,),
        )
    )
    add(
        Case(
            "weights-i32bias-encoder-encode",
            "weights",
            ["encode", "i32.encoder.safetensors", *ANCH, "--limit", "20", "-o", "o.safetensors"],
            _zoo(("i32.encoder.safetensors", "enc-i32bias")),
            (1,),
        )
    )
    add(
        Case(
            "weights-tampered-anchors",
            "weights",
            ["stitch", E0, D0, "-a", "tampered-anchors.safetensors", *LIM],
            _zoo(("tampered-anchors.safetensors", "anchors-tampered")),
            (1,),
            note="anchor images changed, relstitch.hash kept: not the anchors the decoder was trained with",
        )
    )

    # --------------------------------------------------------------- 9. exit codes
    def usage(
        cid: str,
        args: list[str],
        codes: tuple[int, ...] = (2,),
        setup: Callable[[Ctx], Any] | None = None,
        note: str = "",
    ) -> None:
        add(Case(f"codes-{cid}", "codes", args, setup, codes, note=note))

    usage("encode-dtype-float8", [*enc_args, "--dtype", "float8", "-o", "o.safetensors"])
    usage(
        "encode-resize-huge",
        ["encode", "torchvision:resnet18#weights=absent.safetensors", *ANCH, *LIM, "-O", "resize=224000"],
        note="a typo'd size is bad usage, refused before the weights file is even looked for",
    )
    usage("matrix-method-bogus", matrix("-e", E0, "-D", D0, "--method", "bogus"))
    usage("stitch-method-bogus", ["stitch", E0, DA0, *ANCH, *LIM, "--method", "bogus"])
    usage("encode-device-tpu", [*enc_args, "--device", "tpu", "-o", "o.safetensors"])
    usage("encode-batch-size-0", [*enc_args, "--batch-size", "0", "-o", "o.safetensors"])
    usage("matrix-batch-size-0", matrix("-e", E0, "-D", D0, "--batch-size", "0"))
    usage("stitch-batch-size-negative", ["stitch", E0, D0, *ANCH, *LIM, "--batch-size", "-3"])
    usage(
        "fit-batch-size-0",
        ["fit", "emb.safetensors", "-o", "h.decoder.safetensors", "--batch-size", "0"],
        setup=_zoo(("emb.safetensors", _embeddings)),
    )
    usage("anchors-k-0", ["anchors", "out.safetensors", "-d", "builtin:test", "-k", "0"])
    usage("compare-k-0", ["compare", E0, E1, *ANCH, *LIM, "-k", "0"])
    usage(
        "compare-k-over-n", ["compare", E0, E1, *ANCH, "-k", "50", "--limit", "40"], note="k ≥ N is refused"
    )
    usage("compare-k-equals-n", ["compare", E0, E1, *ANCH, "-k", "40", "--limit", "40"])
    usage("limit-0", [*enc_args[:-2], "--limit", "0", "-o", "o.safetensors"])
    usage("top-k-0", [*enc_args, "--top-k", "0", "-o", "o.safetensors"])
    usage(
        "top-k-over-anchors",
        [*enc_args, "--top-k", "1000", "-o", "o.safetensors"],
        (1, 2),
        note="more than the 300 anchors",
    )
    usage("train-epochs-0", ["train", "t", "--epochs", "0", "--limit", "64", *ANCH])
    usage("train-lr-negative", ["train", "t", "--lr", "-1", "--epochs", "1", "--limit", "64", *ANCH])
    usage("report-format-pdf", ["report", "report.json", "-f", "pdf"], setup=_zoo(("report.json", _report)))
    usage(
        "report-metric-bogus",
        ["report", "report.json", "--metric", "bleu"],
        setup=_zoo(("report.json", _report)),
    )
    usage(
        "fit-absolute-with-similarity",
        [
            "fit",
            "emb.safetensors",
            "-o",
            "h.decoder.safetensors",
            "--space",
            "absolute",
            "--similarity",
            "l1",
        ],
        setup=_zoo(("emb.safetensors", _embeddings)),
        note="documented: exit 2",
    )
    usage(
        "predictions-txt",
        ["stitch", E0, D0, *ANCH, *LIM, "--predictions", "p.txt"],
        note="documented: exit 2",
    )
    usage(
        "anchors-ids-without-list",
        ["anchors", "out.safetensors", "-d", "builtin:test", "--strategy", "ids"],
        (1, 2),
    )
    usage(
        "anchors-ids-out-of-range",
        ["anchors", "out.safetensors", "-d", "builtin:test", "--strategy", "ids", "--ids", "3,999999"],
        (1, 2),
    )
    usage("unknown-option", ["stitch", E0, D0, "--frobnicate"])
    usage("unknown-verb", ["stich", E0, D0])
    usage("missing-argument", ["stitch", E0])
    usage("absolute-decoder-method-relative", ["stitch", E0, DA0, *ANCH, *LIM, "--method", "relative"])
    add(
        Case(
            "codes-csv-bom-header",
            "codes",
            ["anchors", "out.safetensors", "-d", "csv:bom.csv", "-k", "5"],
            _zoo(("bom.csv", _bom_csv)),
            (0,),
            outputs=("out.safetensors",),
            note="\\ufefftext,label header",
        )
    )

    # --------------------------------------------------------------- mistakes a new user makes
    def mistake(
        cid: str,
        args: list[str],
        codes: tuple[int, ...] = (1,),
        setup: Callable[[Ctx], Any] | None = None,
        mentions: tuple[str, ...] = (),
        note: str = "",
        **kw: Any,
    ) -> None:
        add(Case(f"mistake-{cid}", "mistakes", args, setup, codes, mentions=mentions, note=note, **kw))

    mistake("swapped-stitch", ["stitch", D0, E0, *ANCH, *LIM], (1, 2))
    mistake("swapped-matrix", matrix("-e", D0, "-D", E0), (1, 2))
    mistake("anchors-as-decoder", ["stitch", E0, A, *LIM], (1, 2), mentions=(A,))
    mistake(
        "decoder-as-encoder",
        ["encode", D0, *ANCH, "--limit", "20", "-o", "o.safetensors"],
        (1, 2),
        mentions=(D0,),
    )
    mistake("encoder-as-anchors", ["stitch", E0, D0, "-a", E1, *LIM], (1, 2), mentions=(E1,))
    mistake("safetensors-as-report", ["report", D0], (1,), mentions=(D0,))
    mistake("other-json-as-report", ["report", "x.json"], (1,), setup=_zoo(("x.json", _text('{"hello": 1}'))))
    mistake(
        "pt-as-decoder",
        ["stitch", E0, "model.pt", *ANCH, *LIM],
        (1,),
        setup=_zoo(("model.pt", "torch-pt")),
        mentions=("model.pt",),
    )
    mistake(
        "missing-encoder",
        ["stitch", "nope.encoder.safetensors", D0, *ANCH, *LIM],
        (1,),
        mentions=("nope.encoder.safetensors",),
    )
    mistake(
        "missing-anchors",
        ["stitch", E0, D0, "-a", "nope.safetensors", *LIM],
        (1,),
        mentions=("nope.safetensors",),
    )
    mistake("missing-report", ["report", "nope.json"], (1,), mentions=("nope.json",))
    mistake("missing-inspect", ["inspect", "nope.safetensors"], (1,), mentions=("nope.safetensors",))
    mistake(
        "missing-jsonl",
        [*enc_args, "-d", "jsonl:nope.jsonl", "-o", "o.safetensors"],
        (1,),
        mentions=("nope.jsonl",),
    )
    mistake(
        "empty-glob-decoders",
        matrix("-e", E0, "-D", "zoo/*.decoder.safetensors"),
        (1, 2),
        setup=_zoo(("zoo", _dir)),
    )
    mistake(
        "unknown-model-kind",
        ["encode", "hff:models/x", *ANCH, "--limit", "20", "-o", "o.safetensors"],
        (1, 2),
    )
    mistake("unknown-data-kind", [*enc_args, "-d", "bultin:test", "-o", "o.safetensors"], (1, 2))
    mistake("source-option-unknown", [*enc_args, "-O", "frobnicate=1", "-o", "o.safetensors"], (1, 2))
    mistake(
        "source-option-missing-weights",
        [*enc_args, "-O", "weights=nope.pt", "-o", "o.safetensors"],
        (0,),
        outputs=("o.safetensors",),
        mentions=("warning: -O weights=nope.pt does nothing here",),
        note=(
            "-O serves scripts looping over encoders of several kinds: "
            "one no model reads is a warning, not ignored"
        ),
    )
    mistake(
        "data-option-unknown",
        [*enc_args, "-d", "jsonl:t.jsonl#colour=red", "-o", "o.safetensors"],
        (2,),
        setup=_zoo(("t.jsonl", _text_jsonl)),
    )
    mistake(
        "text-data-image-encoder",
        [*enc_args, "-d", "jsonl:t.jsonl", "-o", "o.safetensors"],
        (1,),
        setup=_zoo(("t.jsonl", _text_jsonl)),
    )
    mistake("output-is-input", [*enc_args, "-o", E0, "--force"], (1, 2), mentions=(E0,))
    mistake(
        "same-output-twice",
        matrix("-e", E0, "-D", D0, "--json", "out.json", "--markdown", "out.json"),
        (1, 2),
        mentions=("out.json",),
        note="two report forms into one file",
    )
    mistake(
        "output-symlink-to-input",
        [*enc_args, "-o", "link.safetensors", "--force"],
        (1, 2),
        setup=_zoo(("link.safetensors", lambda ctx, rel: ctx.symlink(rel, E0))),
        note="--force through a link onto the encoder being read",
    )
    mistake(
        "report-output-symlink-to-input",
        ["report", "report.json", "-f", "json", "-o", "link.json", "--force"],
        (1, 2),
        setup=_zoo(("report.json", _report), ("link.json", lambda ctx, rel: ctx.symlink(rel, "report.json"))),
    )
    mistake(
        "output-exists",
        [*enc_args, "-o", "old.safetensors"],
        (1,),
        setup=_zoo(("old.safetensors", E1)),
        mentions=("old.safetensors",),
    )
    mistake(
        "report-output-is-input",
        ["report", "report.json", "-f", "json", "-o", "report.json", "--force"],
        (1, 2),
        setup=_zoo(("report.json", _report)),
    )
    mistake(
        "anchors-k-over-data", ["anchors", "out.safetensors", "-d", "builtin:test", "-k", "100000"], (1, 2)
    )

    # --------------------------------------------------------------- every verb doing its job
    def verb(
        cid: str,
        args: list[str],
        outputs: tuple[str, ...] = (),
        setup: Callable[[Ctx], Any] | None = None,
        **kw: Any,
    ) -> None:
        add(Case(f"verbs-{cid}", "verbs", args, setup, (0,), outputs=outputs, **kw))

    verb(
        "train",
        ["train", "zoo/t", "--epochs", "1", "--limit", "64", *ANCH],
        ("zoo/t.encoder.safetensors", "zoo/t.decoder.safetensors"),
        _zoo(("zoo", _dir)),
        timeout=120,
    )
    verb("encode", [*enc_args, "-o", "e.safetensors"], ("e.safetensors",))
    verb(
        "anchors",
        ["anchors", "a20.safetensors", "-d", "builtin:test", "-k", "20", "--strategy", "stratified"],
        ("a20.safetensors",),
    )
    verb(
        "fit",
        ["fit", "emb.safetensors", "-o", "h.decoder.safetensors", "--epochs", "1"],
        ("h.decoder.safetensors",),
        _zoo(("emb.safetensors", _embeddings)),
    )
    verb("stitch-json", ["stitch", E0, D1, *ANCH, *LIM, "--json"], checks=(stdout_json("scores"),))
    verb("stitch-predictions", ["stitch", E0, D1, *ANCH, *LIM, "--predictions", "p.csv"], ("p.csv",))
    verb("stitch-procrustes", ["stitch", EA1, DA0, "--method", "procrustes", *ANCH, *LIM])
    verb(
        "stitch-embeddings",
        ["stitch", "embeddings:emb.safetensors", D1],
        setup=_zoo(("emb.safetensors", _embeddings)),
    )
    verb(
        "eval-matrix",
        matrix("-e", E0, "-e", E1, "-e", EA1, "-D", D0, "-D", D1, "-D", DA0, *REPORT_OUT),
        REPORT,
        report=REPORT,
        identity=True,
    )
    verb(
        "eval-matrix-methods",
        matrix(
            "-e",
            E0,
            "-e",
            EA0,
            "-e",
            EA1,
            "-D",
            D0,
            "-D",
            DA0,
            "-D",
            DA1,
            "--method",
            "relative,absolute,procrustes",
            "--null-baseline",
            *REPORT_OUT,
            "--csv",
            "out.csv",
            "--html",
            "out.html",
        ),
        (*REPORT, "out.csv", "out.html"),
        report=REPORT,
    )
    verb("compare", ["compare", E0, E1, *ANCH, *LIM, "-k", "10", "--json", "c.json"], ("c.json",))
    verb(
        "report",
        ["report", "report.json", "-f", "md", "-o", "r.md"],
        ("r.md",),
        _zoo(("report.json", _report)),
    )
    verb("inspect", ["inspect", D0])
    verb("inspect-json", ["inspect", "--json", E0], checks=(stdout_json(),))
    verb("inspect-report", ["inspect", "report.json"], setup=_zoo(("report.json", _report)))
    return c


# ============================================================================================ main
def select(all_cases: list[Case], only: list[str], ids: list[str]) -> list[Case]:
    wanted: set[str] = set()
    for spec in only:
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            name = CLASSES.get(part, part)
            if name not in CLASSES.values():
                raise SystemExit(
                    f"error: unknown class {part!r}; "
                    f"choose from {', '.join(f'{k}={v}' for k, v in CLASSES.items())}"
                )
            wanted.add(name)
    chosen = [
        c
        for c in all_cases
        if (not wanted or c.cls in wanted) and (not ids or any(re.search(i, c.id) for i in ids))
    ]
    return chosen


def table(results: list[Result], width: int) -> str:
    head = f"{'id':<38} {'class':<9} {'command':<58} {'expected':>8} {'got':>5}  verdict"
    lines = [head, "-" * min(width, 160)]
    for r in results:
        c = r.case
        got = "hang" if r.hang else str(r.code)
        verdict = "PASS" if r.passed else "FAIL: " + r.reasons[0]
        summary = c.summary if len(c.summary) <= 58 else c.summary[:57] + "…"
        lines.append(f"{c.id:<38} {c.cls:<9} {summary:<58} {c.expected:>8} {got:>5}  {verdict[:90]}")
    return "\n".join(lines)


def totals(results: list[Result], seconds: float) -> dict[str, Any]:
    return {
        "cases": len(results),
        "passed": sum(r.passed for r in results),
        "failed": sum(not r.passed for r in results),
        "clean errors": sum(r.clean_error for r in results),
        "tracebacks": sum(r.traceback for r in results),
        "code executed": sum(r.pwned for r in results),
        "hangs": sum(r.hang for r in results),
        "runs over 1 GiB": sum(r.over_memory for r in results),
        "files left behind": sum(bool(r.left_behind) for r in results),
        "inputs modified": sum(bool(r.modified) for r in results),
        "rendered cells checked": sum(r.cells_checked for r in results),
        "rendered cells that disagree with pairs": sum(r.cells_bad for r in results),
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="classes: " + ", ".join(f"{k}={v}" for k, v in CLASSES.items() if k != v),
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="CLASS",
        help="run only these classes (number or name, comma-separated, repeatable)",
    )
    parser.add_argument(
        "--case", action="append", default=[], metavar="REGEX", help="run only cases whose id matches"
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON here")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep each case's folder")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each failing case's stderr tail")
    parser.add_argument(
        "--relstitch",
        metavar="CMD",
        help="the command to test [default: .venv/bin/relstitch, else python -m relstitch]",
    )
    args = parser.parse_args(argv)

    chosen = select(cases(), args.only, args.case)
    ids = Counter(c.id for c in chosen)
    assert all(n == 1 for n in ids.values()), [i for i, n in ids.items() if n > 1]
    if args.list:
        per_class = Counter(c.cls for c in chosen)
        for c in chosen:
            print(
                f"{c.id:<40} {c.cls:<9} exit {c.expected:<5} {c.summary}"
                + (f"   # {c.note}" if c.note else "")
            )
        print(f"\n{len(chosen)} cases: " + ", ".join(f"{k} {v}" for k, v in per_class.items()))
        return 0
    if not chosen:
        print("error: no case selected", file=sys.stderr)
        return 2

    try:
        import safetensors  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        if (
            VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve()
        ):  # not the venv yet
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])
        print(
            "error: crafting the inputs needs torch and safetensors (relstitch's own dependencies)",
            file=sys.stderr,
        )
        return 2

    if args.relstitch:
        command = shlex.split(args.relstitch)
    elif (REPO / ".venv" / "bin" / "relstitch").exists():
        command = [str(REPO / ".venv" / "bin" / "relstitch")]
    else:
        command = [sys.executable, "-m", "relstitch"]

    sentinels = [REPO / SENTINEL, Path.cwd() / SENTINEL, Path(tempfile.gettempdir()) / SENTINEL]
    existing = {p for p in sentinels if p.exists()}
    start = time.monotonic()
    fixture_dir = Path(tempfile.mkdtemp(prefix="hostile-fixtures-"))
    fixtures = Fixtures(fixture_dir, command)
    print(
        f"hostile battery: {len(chosen)} cases, {args.jobs} at a time, command {shlex.join(command)}",
        file=sys.stderr,
    )
    done = 0
    lock = threading.Lock()

    def one(case: Case) -> Result:
        nonlocal done
        r = run_case(case, command, fixtures, args.keep)
        with lock:
            done += 1
            mark = "ok  " if r.passed else "FAIL"
            print(
                f"[{done:>3}/{len(chosen)}] {mark} {case.id} ({r.seconds:.1f} s)", file=sys.stderr, flush=True
            )
        return r

    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(one, chosen))
    finally:
        shutil.rmtree(fixture_dir, ignore_errors=True)
    seconds = time.monotonic() - start

    stray = [p for p in sentinels if p.exists() and p not in existing]
    width = shutil.get_terminal_size((160, 20)).columns
    print(table(results, width))
    failing = [r for r in results if not r.passed]
    if failing:
        print(f"\nfailing cases ({len(failing)}):")
        for r in failing:
            print(f"- {r.case.id} [{r.case.cls}] {r.case.summary}")
            if r.case.note:
                print(f"    note: {r.case.note}")
            for reason in r.reasons:
                print(f"    {reason}")
            if args.verbose and r.stderr_tail:
                print("    stderr: " + r.stderr_tail.replace("\n", "\n            "))
    summary = totals(results, seconds)
    if stray:
        summary["code executed"] += len(stray)
        print(f"\nCODE EXECUTED outside the case folders: {', '.join(map(str, stray))}")
    print("\ntotals")
    for key, value in summary.items():
        print(f"  {key:<42} {value}")
    per_class = Counter(r.case.cls for r in results)
    passed_class = Counter(r.case.cls for r in results if r.passed)
    print(
        "  per class (passed/cases): " + ", ".join(f"{k} {passed_class[k]}/{v}" for k, v in per_class.items())
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"totals": summary, "command": command, "cases": [r.as_dict() for r in results]},
                indent=1,
                ensure_ascii=False,
            ),
            encoding="utf-8",
        )
    return 0 if not failing and not stray else 1


if __name__ == "__main__":
    sys.exit(main())

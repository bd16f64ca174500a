"""eval-matrix never loses finished work: each encoder's embeddings are kept as soon as they are finished
(``--cache DIR``, or a per-run folder under ``$XDG_CACHE_HOME/relstitch/runs`` removed once the report is
written), a rerun of the same command encodes only what is missing, and ``relstitch cache ls|clear`` shows
and removes what is kept (only files relstitch wrote, never through a link).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from relstitch.io.cache import (
    MAX_MARKER_BYTES,
    MAX_RECORD_BYTES,
    clear_folder,
    describe_folder,
    read_record,
    records_folder,
    remove_records,
    run_folder,
    run_key,
    runs_root,
    user_cache_root,
    write_record,
)

REPO = Path(__file__).resolve().parent.parent
ENTRY = "0123456789abcdef0123456789abcdef.embeddings.safetensors"


@pytest.fixture()
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private user cache directory: the per-run folders land here, not in the real ~/.cache."""
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def runs(xdg: Path) -> list[Path]:
    root = xdg / "relstitch" / "runs"
    return sorted(root.iterdir()) if root.exists() else []


def results(report: dict[str, Any]) -> str:
    """A report's results: everything but ``run`` (date, command, timings, what came from the cache)."""
    return json.dumps({k: v for k, v in report.items() if k != "run"}, sort_keys=True)


# ------------------------------------------------------------------------------------ the folders
def test_the_user_cache_root_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert user_cache_root() == tmp_path / "relstitch" and runs_root() == tmp_path / "relstitch" / "runs"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid per the specification: ignored
    assert user_cache_root() == Path.home() / ".cache" / "relstitch"


def test_the_same_inputs_find_the_same_run_folder(xdg: Path) -> None:
    one = run_folder(["a", "b"], ["relstitch", "eval-matrix"])
    assert one is not None and one == run_folder(["a", "b"]) and one != run_folder(["a", "c"])
    assert run_key(["a", "b"]) != run_key(["ab"])  # the parts are kept apart
    assert json.loads((one / "run.json").read_text())["command"] == ["relstitch", "eval-matrix"]


def test_no_writable_cache_directory_means_nothing_is_kept(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # a file where the folder would be
    assert run_folder(["a"]) is None


def test_records_round_trip_and_are_removed(tmp_path: Path) -> None:
    records = records_folder(tmp_path)
    assert read_record(records, 0) is None  # not written yet: rank 0 waits
    write_record(records, 0, {"error": "broken"})
    assert read_record(records, 0) == {"error": "broken"}
    remove_records(records)
    assert not records.exists()


GOOD_RECORD = {"info": {"name": "e"}, "error": None, "name": "e", "hash": "h", "space": None, "seconds": 1.5}


@pytest.mark.parametrize(
    "content, why",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "is list, expected a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),  # nested past Python's recursion limit
        (b"x" * (MAX_RECORD_BYTES + 1), "larger than 1 MiB"),
        (json.dumps({**GOOD_RECORD, "hash": None}).encode(), "hash missing or of the wrong type"),
        (json.dumps({**GOOD_RECORD, "seconds": True}).encode(), "seconds missing or of the wrong type"),
        (json.dumps({**GOOD_RECORD, "info": {}}).encode(), "info.name missing or of the wrong type"),
        (json.dumps({"unrelated": 1}).encode(), "info, name, hash, seconds missing"),
    ],
)
def test_a_garbage_record_is_a_failed_row_not_a_crash(tmp_path: Path, content: bytes, why: str) -> None:
    records = records_folder(tmp_path)
    write_record(records, 0, GOOD_RECORD)
    assert read_record(records, 0) == GOOD_RECORD  # a whole record is read as written
    (records / "0.row.json").write_bytes(content)
    record = read_record(records, 0)
    # rank 0 turns {"error": ...} into that encoder's failed row, saying why; it neither waits nor crashes
    assert record is not None and set(record) == {"error"}
    assert why in record["error"] and "0.row.json" in record["error"] and "\n" not in record["error"]


def test_a_record_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path: Path) -> None:
    records = records_folder(tmp_path)
    records.mkdir()
    os.mkfifo(records / "0.row.json")  # a FIFO would block a plain open() until a writer appeared
    record = read_record(records, 0)
    assert record is not None and "FIFO" in record["error"]


# ------------------------------------------------------------------------------------ eval-matrix
def matrix_args(zoo: Any, *encoders: Path, out: Path, force: bool = True) -> list[Any]:
    args: list[Any] = ["eval-matrix", "-a", zoo.anchors_path, "--limit", 200, "--json", out]
    for encoder in encoders:
        args += ["-e", encoder]
    args += ["-D", zoo.decoder("cnn-rel-s0"), "-D", zoo.decoder("cnn-abs-s0")]
    return [*args, "--force"] if force else args


def test_a_successful_run_removes_its_run_folder(cli, tiny_zoo, xdg: Path, tmp_path: Path) -> None:
    done = cli(*matrix_args(tiny_zoo, tiny_zoo.encoder("cnn-rel-s0"), out=tmp_path / "r.json"))
    assert done.exit_code == 0, done.stderr
    assert runs(xdg) == [] and "reused" not in done.stderr


def test_a_run_refused_before_any_encoder_leaves_no_folder(cli, tiny_zoo, xdg: Path, tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text("{}")
    args = matrix_args(tiny_zoo, tiny_zoo.encoder("cnn-rel-s0"), out=tmp_path / "r.json", force=False)
    done = cli(*args)  # without --force: the output exists
    assert done.exit_code == 1 and "already exists" in done.stderr
    assert runs(xdg) == []


def test_a_rerun_encodes_only_what_a_failed_run_did_not_finish(
    cli, tiny_zoo, xdg: Path, tmp_path: Path
) -> None:
    """The first run stops at its second encoder (--fail-fast, a broken file): the first encoder's
    embeddings stay in the run folder; the same command, the file fixed, reuses them and then cleans up."""
    second = tmp_path / "second.encoder.safetensors"
    second.write_bytes(b"not yet")
    args = matrix_args(tiny_zoo, tiny_zoo.encoder("cnn-rel-s0"), second, out=tmp_path / "r.json")
    failed = cli(*args, "--fail-fast")
    assert failed.exit_code == 1
    (folder,) = runs(xdg)
    assert describe_folder(folder).entries == 1  # the finished encoder is kept
    shutil.copy(tiny_zoo.encoder("cnn-rel-s1"), second)
    again = cli(*args, "--fail-fast")
    assert again.exit_code == 0, again.stderr
    assert f"reused 1 encoder(s) from {folder}: cnn-rel-s0" in again.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["run"]["from_cache"] == {"cnn-rel-s0": True, "cnn-rel-s1": False}
    assert report["run"]["world_size"] == 1
    assert runs(xdg) == []  # the report is written: the folder is gone
    fresh = cli(*args)  # nothing kept any more: a plain run, the same results
    assert fresh.exit_code == 0 and "reused" not in fresh.stderr
    assert results(json.loads((tmp_path / "r.json").read_text())) == results(report)


def test_an_explicit_cache_is_kept_and_reported_reused(cli, tiny_zoo, xdg: Path, tmp_path: Path) -> None:
    args = matrix_args(tiny_zoo, tiny_zoo.encoder("cnn-rel-s0"), out=tmp_path / "r.json")
    assert cli(*args, "--cache", tmp_path / "c").exit_code == 0
    again = cli(*args, "--cache", tmp_path / "c")
    assert again.exit_code == 0 and "reused 1 encoder(s)" in again.stderr
    assert describe_folder(tmp_path / "c").entries == 1 and runs(xdg) == []


@pytest.mark.slow  # three subprocess runs of eval-matrix, one killed half-way
def test_a_rerun_after_sigkill_reuses_the_finished_encoders(tiny_zoo, tmp_path: Path) -> None:
    encoders = [tiny_zoo.encoder(n) for n in tiny_zoo.names]
    command = [sys.executable, "-m", "relstitch", "eval-matrix", "-a", str(tiny_zoo.anchors_path)]
    for encoder in encoders:
        command += ["-e", str(encoder)]
    # batch 1: each encoder takes long enough for the kill to land between two of them
    command += ["-D", str(tiny_zoo.decoder("cnn-rel-s0")), "--batch-size", "1", "--json"]

    def env(home: Path) -> dict[str, str]:
        return dict(os.environ, XDG_CACHE_HOME=str(home), OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))

    home = tmp_path / "xdg"
    killed = subprocess.Popen(
        [*command, str(tmp_path / "killed.json")],
        env=env(home),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(home.glob("relstitch/runs/*/*.embeddings.safetensors")):
        assert killed.poll() is None and time.monotonic() < deadline, "no encoder finished"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    (folder,) = runs(home)
    kept = describe_folder(folder).entries
    assert 1 <= kept < len(encoders)
    assert not (tmp_path / "killed.json").exists()

    rerun = subprocess.run(
        [*command, str(tmp_path / "rerun.json")], env=env(home), cwd=tmp_path, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads((tmp_path / "rerun.json").read_text())
    reused = [name for name, cached in report["run"]["from_cache"].items() if cached]
    assert len(reused) == kept and reused == tiny_zoo.names[:kept]  # the first ones, in order
    assert f"reused {kept} encoder(s) from {folder}: {', '.join(reused)}" in rerun.stderr
    assert runs(home) == []

    whole = subprocess.run(  # an uninterrupted run, with a cache directory of its own
        [*command, str(tmp_path / "whole.json")],
        env=env(tmp_path / "other"),
        cwd=tmp_path,
        capture_output=True,
    )
    assert whole.returncode == 0, whole.stderr
    assert results(json.loads((tmp_path / "whole.json").read_text())) == results(report)


# ------------------------------------------------------------------------------------ cache ls | clear
def fake_run(xdg: Path, entries: int = 2) -> Path:
    folder = run_folder(["fake"], ["relstitch", "eval-matrix", "-e", "x"])
    assert folder is not None
    for i in range(entries):
        (folder / ENTRY.replace("0", str(i + 1), 1)).write_bytes(b"x" * 1000)
    return folder


@pytest.mark.parametrize(
    "content",
    [
        b"\x00garbage",
        b'["a list"]',
        b'{"command": "not a list"}',
        b'{"command": ["x"], "pad": "' + b"y" * MAX_MARKER_BYTES + b'"}',
    ],
)
def test_a_damaged_run_marker_leaves_the_folder_listed(cli, xdg: Path, content: bytes) -> None:
    folder = fake_run(xdg)
    (folder / "run.json").write_bytes(content)
    described = describe_folder(folder)
    assert described.command == [] and described.entries == 2  # listed, its command unknown
    listed = cli("cache", "ls")
    assert listed.exit_code == 0 and "2 entries" in listed.stdout.replace("\n", " "), listed.stdout


def test_a_run_markers_command_is_shown_not_obeyed(xdg: Path) -> None:
    folder = fake_run(xdg)
    (folder / "run.json").write_text(json.dumps({"command": ["relstitch", "\x1b[2Jcleared"]}))
    assert describe_folder(folder).command == ["relstitch", "\\x1b[2Jcleared"]


def test_cache_ls_lists_run_folders_and_named_cache_folders(cli, xdg: Path, tmp_path: Path) -> None:
    assert cli("cache", "ls").stdout.startswith("no cached embeddings in")
    folder = fake_run(xdg)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / ENTRY).write_bytes(b"y" * 500)
    listed = cli("cache", "ls", mine)
    assert listed.exit_code == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith(f"{folder}  2 entries  2.") and lines[0].endswith("relstitch eval-matrix -e x")
    assert lines[1].startswith(f"{mine}  1 entries  500 B") and "--cache folder" in lines[1]
    assert lines[2].startswith("total: 2 folder(s), 3 entries")


def test_cache_clear_removes_only_what_relstitch_wrote(cli, xdg: Path, tmp_path: Path) -> None:
    folder = fake_run(xdg)
    outside = tmp_path / "precious.embeddings.safetensors"
    outside.write_bytes(b"keep")
    (folder / ENTRY.replace("0", "9", 1)).symlink_to(outside)  # a link named like an entry: not followed
    (folder / "notes.txt").write_text("mine")
    done = cli("cache", "clear")
    assert done.exit_code == 0 and done.stdout.startswith("removed 3 file(s)"), done.stdout
    assert outside.read_bytes() == b"keep" and (folder / "notes.txt").exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted([ENTRY.replace("0", "9", 1), "notes.txt"])


def test_cache_clear_of_a_cache_folder_keeps_the_folder_and_the_runs(cli, xdg, tmp_path: Path) -> None:
    run = fake_run(xdg)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / ENTRY).write_bytes(b"y")
    (mine / f".{ENTRY}.abc123.tmp").write_bytes(b"cut short")
    (mine / "run.json").write_text("{}")  # the user's own file, though named like a run marker
    records = records_folder(mine)
    write_record(records, 3, {"error": None})
    done = cli("cache", "clear", mine)
    assert done.exit_code == 0 and done.stdout.startswith("removed 3 file(s)")
    assert [p.name for p in mine.iterdir()] == ["run.json"] and describe_folder(run).entries == 2
    assert cli("cache", "clear", mine, "--runs").exit_code == 0 and not run.exists()


def test_cache_ls_and_clear_refuse_a_link_or_a_missing_folder(cli, xdg: Path, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / ENTRY).write_bytes(b"y")
    (tmp_path / "link").symlink_to(real)
    for verb in ("ls", "clear"):
        done = cli("cache", verb, tmp_path / "link")
        assert done.exit_code == 1 and "a link is not followed" in done.stderr
        assert cli("cache", verb, tmp_path / "absent").exit_code == 1
    assert (real / ENTRY).exists()
    assert clear_folder(tmp_path / "link") == (0, 0)  # the library call does not follow it either

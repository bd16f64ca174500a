"""The allocator tuning the CLI applies (relstitch.runtime): applied on glibc, the user's choice wins, and it
does what it says — freed blocks stay in the process for the next batch instead of going back to the
kernel."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt tuning is glibc-only",
)

# Frees a 24 MB block (under the 32 MiB mmap threshold) and reports how much of it left the resident set.
PROBE = """
import json, os, sys
from relstitch.runtime import tune_allocator
applied = tune_allocator() if sys.argv[1] == "tune" else False
import torch

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

block = torch.ones(6 * 2**20)  # 24 MB, every page touched
held = rss_mb()
del block
print(json.dumps({"applied": applied, "released_mb": held - rss_mb()}))
"""


def probe(mode: str, **env: str) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD", "RELSTITCH_ALLOCATOR")
    }
    run = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env={**clean, **env}
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # fresh interpreters
def test_tuned_allocator_keeps_freed_blocks_for_reuse():
    default, tuned = probe("default"), probe("tune")
    assert tuned["applied"] is True
    assert (
        default["released_mb"] > 20
    )  # glibc's default hands the 24 MB block straight back (and faults it in next time)
    assert tuned["released_mb"] < 4  # kept for the next batch


@pytest.mark.slow  # fresh interpreters
@pytest.mark.parametrize("env", [{"RELSTITCH_ALLOCATOR": "system"}, {"MALLOC_TRIM_THRESHOLD_": "1000000"}])
def test_the_users_own_allocator_settings_win(env):
    result = probe("tune", **env)
    assert result["applied"] is False
    assert result["released_mb"] > 20  # untouched: the default behaviour


@pytest.mark.slow
def test_the_cli_applies_it_where_tensors_are_made_and_nowhere_else():
    code = (
        "import sys, relstitch.runtime as r; from relstitch.cli import app; "
        "from typer.testing import CliRunner;"
        "res = CliRunner().invoke(app, sys.argv[1:]); print(r._applied)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "RELSTITCH_ALLOCATOR"}
    repo = os.path.dirname(os.path.dirname(__file__))
    ran = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "stitch",
            "checkpoints/cnn-rel-s0.encoder.safetensors",
            "checkpoints/cnn-rel-s1.decoder.safetensors",
            "--limit",
            "20",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo,
    )
    assert ran.stdout.strip().splitlines()[-1] == "True"
    for light in (
        ["inspect", "checkpoints/anchors.safetensors"],
        ["--help"],
    ):  # no tensor work: nothing tuned
        untouched = subprocess.run(
            [sys.executable, "-c", code, *light], capture_output=True, text=True, env=env, cwd=repo
        )
        assert untouched.stdout.strip().splitlines()[-1] == "None", (light, untouched.stdout)

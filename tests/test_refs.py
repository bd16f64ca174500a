"""Reading references (relstitch.refs): one size reader for every source, and user input checked
with real tests, never ``assert`` (which ``python -O`` removes)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from relstitch.refs import parse_size, split_fragment, split_options


@pytest.mark.parametrize(("text", "size"), [("224", [224, 224]), ("32,48", [32, 48]), ("32x48", [32, 48])])
def test_parse_size_reads_one_or_two_positive_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1,2,3", "0", "4,0", "-3", "a", ""])
def test_parse_size_refuses_anything_else(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_fragments_and_options():
    assert split_fragment("hf:models/fr#view=fr,pooling=mean") == ("hf:models/fr", "view=fr,pooling=mean")
    assert split_fragment("data/#1.csv") == ("data/#1.csv", "")  # a # without KEY=VALUE belongs to the path
    assert split_options("text=en,fr,label=topic") == {"text": "en,fr", "label": "topic"}


CHECKS = """
from relstitch.errors import UsageError
from relstitch.adapters.base import parse_call
from relstitch.adapters import parse_options
from relstitch.data.sources import _parse_size
for bad in ("m:build(3, width=8)", "m:build(**kw)"):
    try:
        parse_call(bad)
    except UsageError:
        pass
    else:
        raise SystemExit(f"accepted {bad}")
for bad in ("1,2,3", "0,5"):
    for read in (lambda t: _parse_size(t, "imagefolder"), lambda t: parse_options("resize=" + t)):
        try:
            read(bad)
        except UsageError:
            pass
        else:
            raise SystemExit(f"accepted size {bad}")
print("ok")
"""


@pytest.mark.slow  # CLI subprocesses
@pytest.mark.parametrize("flags", [[], ["-O"]])
def test_user_input_is_checked_with_or_without_python_optimisations(flags):
    done = subprocess.run([sys.executable, *flags, "-c", CHECKS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr

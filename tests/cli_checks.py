"""Assertions shared by the CLI tests."""

from __future__ import annotations


def one_line_error(result, code: int = 1) -> str:
    """The CLI failed the way a user should see it: one ``error:`` line on stderr, the expected exit code,
    no traceback anywhere. Returns the line."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]

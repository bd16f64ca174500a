"""The same command twice gives byte-identical files on CPU; only the report's ``run`` section may differ.

Each verb is run twice with exactly the same arguments (``--force`` over its own output) and the bytes
are compared. Seeds are checked to be recorded in the files that depend on one.
"""

from __future__ import annotations

import json
from pathlib import Path

from relstitch.io.artifacts import read_header


def twice(cli, *args: object, outputs: list[Path]) -> list[bytes]:
    """Run one command twice (``--force``), returning the bytes of ``outputs`` after each run, checked
    equal."""
    runs = []
    for _ in range(2):
        result = cli(*args, "--force")
        assert result.exit_code == 0, result.stderr
        runs.append([p.read_bytes() for p in outputs])
    assert len(runs[0]) == len(outputs)
    for path, first, second in zip(outputs, runs[0], runs[1], strict=True):
        assert first == second, f"{path.name} differs between two identical runs"
    return runs[0]


def test_every_verb_writes_the_same_bytes_twice(cli, tmp_path):
    anchors = tmp_path / "anchors.safetensors"
    twice(cli, "anchors", anchors, "--count", 16, "--strategy", "stratified", "--seed", 3, outputs=[anchors])
    assert read_header(anchors).metadata["seed"] == 3

    models = []
    for seed in (0, 1):
        prefix = tmp_path / f"mlp-s{seed}"
        encoder, decoder = Path(f"{prefix}.encoder.safetensors"), Path(f"{prefix}.decoder.safetensors")
        twice(
            cli,
            "train",
            prefix,
            "--arch",
            "mlp",
            "--anchors",
            anchors,
            "--epochs",
            1,
            "--limit",
            300,
            "--latent-dim",
            8,
            "--seed",
            seed,
            "--eval-data",
            "builtin:test",
            outputs=[encoder, decoder],
        )
        assert read_header(encoder).metadata["training"]["seed"] == seed
        models.append((encoder, decoder))

    embeddings = tmp_path / "e.safetensors"
    twice(
        cli,
        "encode",
        models[0][0],
        "--anchors",
        anchors,
        "--limit",
        200,
        "-o",
        embeddings,
        outputs=[embeddings],
    )

    other = tmp_path / "e1.safetensors"
    assert cli("encode", models[1][0], "--anchors", anchors, "--limit", 200, "-o", other).exit_code == 0
    scores = tmp_path / "compare.json"
    twice(cli, "compare", embeddings, other, "--json", scores, outputs=[scores])

    head = tmp_path / "head.decoder.safetensors"
    twice(cli, "fit", embeddings, "-o", head, "--epochs", 2, "--seed", 5, outputs=[head])
    assert read_header(head).metadata["training"]["seed"] == 5

    report, table = tmp_path / "r.json", tmp_path / "r.csv"
    reports = []
    for _ in range(2):
        result = cli(
            "eval-matrix",
            "-e",
            models[0][0],
            "-e",
            models[1][0],
            "-D",
            models[0][1],
            "-D",
            models[1][1],
            "-D",
            head,
            "-a",
            anchors,
            "--limit",
            200,
            "--json",
            report,
            "--csv",
            table,
            "--force",
        )
        assert result.exit_code == 0, result.stderr
        reports.append((json.loads(report.read_text()), table.read_bytes()))
    (first, first_csv), (second, second_csv) = reports
    assert first_csv == second_csv
    assert "run" in first and first["pairs"]
    first.pop("run"), second.pop("run")
    assert first == second, "a volatile field lives outside the report's `run` section"

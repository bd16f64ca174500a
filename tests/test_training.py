"""Scores people can judge from training: fit's seeded validation split, and train scoring on data that
matches what it trained on (the source's test split, else a seeded share held out), never the built-in set
for a user's own data."""

from __future__ import annotations

import dataclasses
import gzip
import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from relstitch.checkpoints import load_decoder
from relstitch.data import load_dataset
from relstitch.data.sources import test_split_reference as split_of  # not collected as a test by its name
from relstitch.encoding import load_embeddings
from relstitch.errors import RelstitchError, UsageError
from relstitch.io.artifacts import read_header
from relstitch.metrics import classification_scores
from relstitch.reports.document import label_baselines
from relstitch.training import FitConfig, fit, held_out_split, plan_evaluation


def ok(result) -> None:
    assert result.exit_code == 0, result.stderr


def one_line_error(result, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def write_idx(folder: Path, prefix: str, n: int, seed: int) -> torch.Tensor:
    """An MNIST-style IDX pair of ``n`` random 28x28 images, labels cycling over 10 classes with 0 the most
    frequent; returns the labels."""
    folder.mkdir(exist_ok=True)
    images = torch.randint(
        0, 255, (n, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )
    labels = torch.cat([torch.zeros(n // 5, dtype=torch.long), torch.arange(n - n // 5) % 10])
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, 28, 28) + images.numpy().tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, n) + labels.to(torch.uint8).numpy().tobytes())
    return labels


def training_meta(path: Path) -> dict:
    return read_header(path).metadata["training"]


# ------------------------------------------------------------------------------------- the split
def test_held_out_split_is_seeded_disjoint_and_complete():
    kept, held = held_out_split(1000, 0.1, seed=3)
    assert len(held) == 100 and len(kept) == 900
    assert torch.equal(torch.sort(torch.cat([kept, held])).values, torch.arange(1000))  # every position once
    assert torch.equal(kept, kept.sort().values) and torch.equal(held, held.sort().values)
    again_kept, again_held = held_out_split(1000, 0.1, seed=3)
    assert torch.equal(held, again_held) and torch.equal(kept, again_kept)  # one seed, one split
    assert not torch.equal(held, held_out_split(1000, 0.1, seed=4)[1])
    assert len(held_out_split(5, 0.1, seed=0)[1]) == 1  # at least one sample held out
    assert len(held_out_split(999, 0.25, seed=0)[1]) == 250


def test_held_out_split_refuses_what_cannot_be_split():
    with pytest.raises(RelstitchError, match="1 sample: too few to hold 10 % out") as refused:
        held_out_split(1, 0.1, seed=0, hint="fit with --val 0")
    assert refused.value.hint == "fit with --val 0"
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(UsageError, match="above 0 and below 1"):
            held_out_split(100, fraction, seed=0)


# ------------------------------------------------------------------------------------------- fit
@pytest.fixture(scope="module")
def embeddings(tiny_zoo, tmp_path_factory) -> Path:
    """500 built-in training images through a tiny-zoo encoder."""
    from typer.testing import CliRunner

    from relstitch.cli import app

    path = tmp_path_factory.mktemp("fit") / "e.safetensors"
    args = ["encode", tiny_zoo.encoder("cnn-rel-s0"), "-a", tiny_zoo.anchors_path, "--data", "builtin:train"]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--limit", "500", "-o", path]])
    assert result.exit_code == 0, result.stderr
    return path


def validation_scores(head: Path, embeddings: Path, seed: int) -> dict[str, float]:
    """The head's scores on the held-out samples of ``seed``, computed here from the files alone."""
    decoder, space = load_decoder(head), load_embeddings(embeddings)
    _, held = held_out_split(len(space.labels), 0.1, seed)
    with torch.inference_mode():
        logits = decoder.module(space.relative(decoder.projection)[held])
    return classification_scores(logits, space.labels[held], len(decoder.task["classes"]))


def test_fit_holds_out_a_seeded_validation_split_and_stores_its_score(cli, tmp_path, embeddings):
    first, second = (tmp_path / folder / "head.decoder.safetensors" for folder in ("a", "b"))
    first.parent.mkdir(), second.parent.mkdir()
    shown = cli("fit", embeddings, "-o", first, "--epochs", 2)
    ok(shown)
    ok(cli("fit", embeddings, "-o", second, "--epochs", 2))
    assert first.read_bytes() == second.read_bytes()  # the split is seeded: the same head twice
    training = training_meta(first)
    validation = training["validation"]
    assert training["train_samples"] == 450 and training["config"]["val"] == 0.1
    assert {k: validation[k] for k in ("fraction", "seed", "samples")} == {
        "fraction": 0.1,
        "seed": 0,
        "samples": 50,
    }
    # the stored score is the head's on exactly those 50 samples
    assert validation["scores"] == pytest.approx(validation_scores(first, embeddings, seed=0))
    labels = load_embeddings(embeddings).labels
    held = held_out_split(500, 0.1, 0)[1]
    assert validation["baselines"] == label_baselines(
        labels[held].tolist(), load_decoder(first).task["classes"]
    )
    accuracy = validation["scores"]["accuracy"]
    assert f"on 450 samples, final train loss {training['final_train_loss']:.4f}" in shown.stdout
    assert (
        f"; validation on 50 held-out samples (10 %, seed 0): accuracy {accuracy:.4f}, macro_f1"
        in shown.stdout
    )
    assert "; accuracy baselines: chance 0.100 (10 classes), majority class" in shown.stdout
    # another seed holds out other samples
    other = tmp_path / "s1.decoder.safetensors"
    ok(cli("fit", embeddings, "-o", other, "--epochs", 2, "--seed", 1))
    assert training_meta(other)["validation"]["scores"] == pytest.approx(
        validation_scores(other, embeddings, seed=1)
    )
    # --val 0: every sample trained on, nothing scored
    every = tmp_path / "all.decoder.safetensors"
    shown = cli("fit", embeddings, "-o", every, "--epochs", 2, "--val", 0)
    ok(shown)
    assert training_meta(every)["validation"] is None and training_meta(every)["train_samples"] == 500
    assert "validation" not in shown.stdout and "on 500 samples" in shown.stdout
    for bad in ("1", "-0.2"):
        line = one_line_error(
            cli("fit", embeddings, "-o", tmp_path / "x.decoder.safetensors", "--val", bad), 2
        )
        assert "--val must be at least 0 and below 1" in line
    assert not (tmp_path / "x.decoder.safetensors").exists()


def test_fit_never_trains_on_its_held_out_samples(embeddings):
    """The head fitted with --val is the one fitted on the kept samples alone: the held-out ones had no
    say."""
    space = load_embeddings(embeddings)
    kept, _ = held_out_split(len(space.labels), 0.1, seed=0)
    only_kept = dataclasses.replace(
        space,
        absolute=space.absolute[kept],
        labels=space.labels[kept],
        ids=space.ids[kept],
        _relative_cache={},
    )
    with_val = fit(space, FitConfig(epochs=2, val=0.1))
    without = fit(only_kept, FitConfig(epochs=2, val=0.0))
    for (name, a), (_, b) in zip(
        with_val.module.state_dict().items(), without.module.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    # and the held-out samples did change the head when they were trained on
    everything = fit(space, FitConfig(epochs=2, val=0.0))
    assert any(
        not torch.equal(a, b)
        for a, b in zip(with_val.module.state_dict().values(), everything.module.state_dict().values())
    )


# ------------------------------------------------------------------------------------ test splits
def test_test_split_reference(tmp_path):
    assert split_of("builtin:train") == "builtin:test"
    assert split_of("builtin") == "builtin:test"
    assert split_of("builtin:train#captions=a photo of a {}") == "builtin:test#captions=a photo of a {}"
    assert split_of("builtin:test") is None  # a test split has none
    folder = tmp_path / "mnist"
    write_idx(folder, "train", 20, seed=0)
    assert split_of(f"idx:{folder}") is None  # no t10k files: no test split
    write_idx(folder, "t10k", 10, seed=1)
    for ref in (f"idx:{folder}", f"idx:{folder}:train", str(folder)):
        assert split_of(ref) == f"idx:{folder}:test", ref
    assert load_dataset(split_of(str(folder))).name == f"idx:{folder}:test"  # it loads
    assert split_of(f"idx:{folder}:test") is None
    assert split_of(f"idx:{tmp_path / 'missing'}") is None
    assert split_of(f"jsonl:{tmp_path / 'x.jsonl'}") is None
    assert split_of(f"tensors:{tmp_path / 'x.safetensors'}") is None


def test_plan_evaluation():
    assert plan_evaluation("idx:/x", "builtin:test", seed=0).source == "given"  # what the user named wins
    plan = plan_evaluation("builtin:train", None, seed=0)
    assert (plan.source, plan.reference) == ("test split", "builtin:test")
    plan = plan_evaluation("jsonl:x.jsonl", None, seed=5)
    assert (plan.source, plan.reference, plan.fraction, plan.seed) == ("held out", None, 0.1, 5)


# ------------------------------------------------------------------------------------------ train
TRAIN = ("--epochs", 1, "--space", "absolute", "--latent-dim", 8)


def test_train_on_foreign_data_never_scores_on_the_built_in_set(cli, tmp_path):
    folder = tmp_path / "digits"
    write_idx(folder, "train", 200, seed=0)
    test_labels = write_idx(folder, "t10k", 60, seed=1)
    # with a test split: scored there
    shown = cli("train", tmp_path / "a", "--data", f"idx:{folder}", *TRAIN)
    ok(shown)
    assert f"; on the test split idx:{folder}:test: accuracy " in shown.stdout
    for path in (tmp_path / "a.encoder.safetensors", tmp_path / "a.decoder.safetensors"):
        training = training_meta(path)
        scored = training["eval"]
        assert scored["source"] == "test split" and scored["reference"] == f"idx:{folder}:test"
        assert scored["data"]["name"] == f"idx:{folder}:test" and scored["data"]["size"] == 60
        assert scored["baselines"] == label_baselines(test_labels.tolist(), [str(i) for i in range(10)])
        assert training["dataset"]["size"] == 200
    assert (
        "majority class 0.283 (0)" in shown.stdout
    )  # 12 + 5 zeros in 60 test labels, shown beside the score
    # without one: 10 % of the training data held out (seeded by --seed), trained on no longer
    for file in folder.glob("t10k-*"):
        file.unlink()
    held = {}
    for seed in (0, 0, 1):
        prefix = tmp_path / f"b{seed}"
        shown = cli("train", prefix, "--data", f"idx:{folder}:train", "--seed", seed, *TRAIN, "--force")
        ok(shown)
        assert f"; on 20 samples held out of the training data (10 %, seed {seed}): accuracy " in shown.stdout
        training = training_meta(Path(f"{prefix}.decoder.safetensors"))
        scored = training["eval"]
        assert (scored["source"], scored["fraction"], scored["seed"]) == ("held out", 0.1, seed)
        assert scored["data"]["name"] == f"idx:{folder}:train[10 % held out, seed {seed}]"
        assert scored["data"]["size"] == 20 and training["dataset"]["size"] == 180
        assert training["dataset"]["name"] == f"idx:{folder}:train[90 % kept, seed {seed}]"
        assert held.setdefault(seed, scored["data"]["hash"]) == scored["data"]["hash"]  # one seed, one split
    assert held[0] != held[1]
    # another kind of source, with no test split: held out too
    x = torch.randint(0, 255, (50, 1, 28, 28), dtype=torch.uint8)
    save_file({"x": x, "y": torch.arange(50) % 5}, tmp_path / "t.safetensors")
    shown = cli("train", tmp_path / "c", "--data", f"tensors:{tmp_path / 't.safetensors'}", *TRAIN)
    ok(shown)
    assert "; on 5 samples held out of the training data (10 %, seed 0)" in shown.stdout
    for prefix in ("a", "b0", "b1", "c"):
        scored = training_meta(tmp_path / f"{prefix}.decoder.safetensors")["eval"]
        assert not scored["data"]["name"].startswith("builtin"), scored


def test_train_scores_the_built_in_test_split_and_named_data(cli, tmp_path):
    shown = cli("train", tmp_path / "m", "--limit", 300, *TRAIN)
    ok(shown)
    assert "; on the test split builtin:test: accuracy " in shown.stdout
    assert "majority class 0.100 (T-shirt/top)" in shown.stdout
    scored = training_meta(tmp_path / "m.decoder.safetensors")["eval"]
    assert scored["source"] == "test split" and scored["data"]["size"] == 1000
    # --eval-data names what to score on, as before
    shown = cli(
        "train", tmp_path / "n", "--limit", 300, "--eval-data", "builtin:test", *TRAIN, "--limit", 300
    )
    ok(shown)
    assert "; on builtin:test: accuracy " in shown.stdout
    assert training_meta(tmp_path / "n.decoder.safetensors")["eval"]["source"] == "given"
    # too little data to hold a share out: one line naming the way out
    tiny = tmp_path / "one.safetensors"
    save_file(
        {"x": torch.zeros(1, 1, 28, 28, dtype=torch.uint8), "y": torch.zeros(1, dtype=torch.long)}, tiny
    )
    line = one_line_error(cli("train", tmp_path / "o", "--data", f"tensors:{tiny}", *TRAIN))
    assert "too few to hold 10 % out" in line and "--eval-data" in line
    assert not list(tmp_path.glob("o.*"))
    # a reconstruction is scored the same way, with no class baselines
    shown = cli(
        "train", tmp_path / "ae", "--arch", "conv-ae", "--task", "reconstruction", *TRAIN, "--limit", 200
    )
    ok(shown)
    assert "; on the test split builtin:test: mse " in shown.stdout and "baselines" not in shown.stdout
    assert training_meta(tmp_path / "ae.decoder.safetensors")["eval"]["baselines"] is None
    json.dumps(training_meta(tmp_path / "ae.decoder.safetensors"))  # plain JSON throughout


def test_relative_train_on_foreign_data_needs_its_own_anchors(cli, tmp_path):
    """The zoo's anchors are built-in images: data of your own never falls back to them."""
    folder = tmp_path / "digits"
    write_idx(folder, "train", 40, seed=0)
    relative = ("--epochs", 1, "--latent-dim", 8)
    line = one_line_error(cli("train", tmp_path / "r", "--data", f"idx:{folder}", *relative), code=2)
    assert f"data idx:{folder} needs an anchor file of its own" in line
    assert "relstitch anchors anchors.safetensors --data" in line and "--anchors" in line
    assert not list(tmp_path.glob("r.*"))
    ok(cli("train", tmp_path / "z", "--limit", 100, *relative))  # the built-in data keeps the zoo's

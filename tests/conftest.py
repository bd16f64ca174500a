"""Shared fixtures: real data (the built-in subset) and a tiny zoo trained once per test session."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from relstitch.anchors import Anchors, save_anchors, select_anchors
from relstitch.checkpoints import DECODER_SUFFIX, ENCODER_SUFFIX, save_decoder, save_encoder
from relstitch.cli import app
from relstitch.data import Dataset, load_dataset
from relstitch.training import TrainConfig, train

REPO = Path(__file__).resolve().parent.parent

# The models in the tests are tiny: one thread is faster than two fighting over a shared 2-core machine,
# and results do not depend on it.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _own_user_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The suite's runs keep their per-run folders (a --fail-fast run does, by design) in a folder of its
    own, inherited by every CLI subprocess, never in the user's cache."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture(scope="session")
def train_data() -> Dataset:
    """2,000 built-in training images (stratified file, so the first 2,000 cover every class)."""
    full = load_dataset("builtin:train")
    return full.subset(torch.arange(2000), name="builtin:train[:2000]")


@pytest.fixture(scope="session")
def test_data() -> Dataset:
    return load_dataset("builtin:test")


@pytest.fixture(scope="session")
def anchors(train_data: Dataset) -> Anchors:
    return select_anchors(train_data, 64, "uniform", seed=0)


@dataclass
class TinyZoo:
    """Checkpoints trained for the tests: CNN relative x2, CNN absolute x2, in one folder."""

    folder: Path
    anchors_path: Path
    names: list[str]

    def encoder(self, name: str) -> Path:
        return self.folder / f"{name}{ENCODER_SUFFIX}"

    def decoder(self, name: str) -> Path:
        return self.folder / f"{name}{DECODER_SUFFIX}"


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory: pytest.TempPathFactory, train_data: Dataset, anchors: Anchors) -> TinyZoo:
    folder = tmp_path_factory.mktemp("zoo")
    anchors_path = save_anchors(anchors, folder / "anchors.safetensors")
    names = []
    for space in ("relative", "absolute"):
        for seed in (0, 1):
            name = f"cnn-{space[:3]}-s{seed}"
            config = TrainConfig(arch="cnn", space=space, seed=seed, epochs=3, latent_dim=32, hidden=64)
            encoder, decoder = train(train_data, anchors if space == "relative" else None, config, name=name)
            save_encoder(encoder, folder / f"{name}{ENCODER_SUFFIX}")
            save_decoder(decoder, folder / f"{name}{DECODER_SUFFIX}")
            names.append(name)
    return TinyZoo(folder, anchors_path, names)


@pytest.fixture()
def cli():
    """Invoke the CLI in-process; returns the click Result (stdout and stderr kept apart)."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke

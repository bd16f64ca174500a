"""Shared plumbing of the experiments: options, seeding, the work folder, JSON reports, RESULTS.md tables.

Every experiment script is seeded and resumable: what it trains or encodes is saved under
``experiments/work/<experiment>/`` (gitignored: checkpoints and embeddings never enter the repository)
and reused on the next run, so an interrupted run picks up where it stopped. Its small JSON report goes
to ``experiments/results/<experiment>.json`` and its table replaces the block between
``<!-- <experiment>:start -->`` and ``<!-- <experiment>:end -->`` in ``docs/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "experiments" / "results"
WORK_DIR = ROOT / "experiments" / "work"
RESULTS_MD = ROOT / "docs" / "RESULTS.md"
ASSETS = Path(os.environ.get("RELSTITCH_ASSETS", ROOT / "assets"))
FASHION_MNIST = Path(os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

if str(ROOT) not in sys.path:  # run as `python experiments/expN_*.py` from anywhere, without installing
    sys.path.insert(0, str(ROOT))


def parser(description: str) -> argparse.ArgumentParser:
    """The options every experiment takes (``--quick``, ``--threads``, ``--fresh``)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke-test scale; writes to experiments/work/quick only, "
        "never to experiments/results or docs/RESULTS.md",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--fresh", action="store_true", help="ignore what an earlier run left in the work folder")
    return p


class Run:
    """One experiment run: its name, scale, work folder, timer and report."""

    def __init__(self, name: str, args: argparse.Namespace, config: dict[str, Any]) -> None:
        import torch

        self.name, self.quick, self.config = name, bool(args.quick), config
        if args.threads:
            torch.set_num_threads(args.threads)
        self.work = WORK_DIR / ("quick" if self.quick else "full") / name
        if args.fresh and self.work.exists():
            import shutil

            shutil.rmtree(self.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        self.steps: dict[str, float] = {}
        log(
            f"[{name}] {'quick' if self.quick else 'full'} run, {torch.get_num_threads()} thread(s), "
            f"work folder {self.work}"
        )

    def step(self, label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)``, log and record its wall time under ``label``."""
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.steps[label] = round(self.steps.get(label, 0.0) + time.perf_counter() - t0, 2)
        log(f"[{self.name}] {label}: {time.perf_counter() - t0:.1f}s")
        return out

    def cached(
        self,
        filename: str,
        compute: Callable[[], Any],
        save: Callable[[Any, Path], Any],
        load: Callable[[Path], Any],
    ) -> Any:
        """``load(work/filename)`` if an earlier run wrote it, else ``compute()`` then ``save`` it
        (resumability)."""
        path = self.work / filename
        if path.exists():
            return load(path)
        value = compute()
        save(value, path)
        return value

    def finish(self, results: dict[str, Any], markdown: str) -> Path | None:
        """Write the JSON report and this experiment's block of docs/RESULTS.md (not for --quick runs)."""
        seconds = time.perf_counter() - self.started
        report = {
            "experiment": self.name,
            "quick": self.quick,
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "machine": machine(),
            "versions": versions(),
            "config": self.config,
            "seconds": round(seconds, 1),
            "step_seconds": self.steps,
            "results": results,
        }
        block = (
            f"{markdown.rstrip()}\n\n_Run {report['date_utc']} UTC, {seconds / 60:.1f} min, report "
            f"`experiments/results/{self.name}.json`._"
        )
        log(f"[{self.name}] done in {seconds:.0f}s")
        if self.quick:
            out = self.work / f"{self.name}.json"
            out.write_text(json.dumps(report, indent=1, default=_jsonable))
            (self.work / f"{self.name}.md").write_text(block + "\n")
            print(block)
            return out
        from relstitch.io.atomic import atomic_write

        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = atomic_write(
            RESULTS_DIR / f"{self.name}.json",
            json.dumps(report, indent=1, default=_jsonable) + "\n",
            force=True,
        )
        update_results_md(self.name, block)
        return out


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def machine() -> str:
    """One line: CPU model, core count, OS (the numbers are only comparable on the same kind of machine)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def versions() -> dict[str, str]:
    import torch

    import relstitch

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "relstitch": relstitch.__version__,
    }
    try:
        import transformers

        out["transformers"] = transformers.__version__
    except ImportError:
        pass
    return out


# ------------------------------------------------------------------------------------ RESULTS.md
RESULTS_HEADER = """# relstitch — reproducing the paper's claims

Seven experiments on real data and real pretrained models, each run through relstitch's public library
API (`experiments/`), beside the reference numbers of the paper and its follow-ups (Moschella et al. 2023 \
and follow-ups).
Each section is rewritten by its script; `experiments/run_all.py` runs them all in order and fills the
run line below.
"""


def update_results_md(name: str, block: str, path: Path | None = None) -> None:
    """Replace (or append) the block between this experiment's markers in docs/RESULTS.md, atomically."""
    from relstitch.io.atomic import atomic_write

    path = path or RESULTS_MD
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else RESULTS_HEADER
    section = f"{start}\n{block.rstrip()}\n{end}"
    if start in text and end in text:
        before, _, rest = text.partition(start)
        _, _, after = rest.partition(end)
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, force=True)


# ----------------------------------------------------------------------------------- formatting
def mean_std(values: Iterable[float], scale: float = 100.0, digits: int = 1) -> str:
    """``87.3 ± 0.4`` (population std over the values; ``n/a`` when empty)."""
    values = [v * scale for v in values]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f}"


def summary(values: Iterable[float]) -> dict[str, Any]:
    values = list(values)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values),
        "min": min(values),
        "max": max(values),
    }


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -------------------------------------------------------------------------------- relstitch glue
def fashion_mnist(split: str):
    """Full Fashion-MNIST from Debian's dataset-fashion-mnist (60,000 train / 10,000 test)."""
    from relstitch.data import load_dataset

    return load_dataset(f"idx:{FASHION_MNIST}:{split}")


def seeded_subset(dataset, count: int | None, seed: int, name: str):
    """``count`` samples drawn uniformly with a fixed seed (the whole set when ``count`` is None or too
    big)."""
    import torch

    if count is None or count >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count].sort().values
    return dataset.subset(order, name=f"{dataset.name}[{name}]")


def cached_space(run: Run, filename: str, encode: Callable[[], Any]):
    """An EncodedSpace saved as an embeddings file in the work folder (encoders run once per run)."""
    from relstitch.encoding import load_embeddings, save_embeddings

    def save(space, path):
        save_embeddings(space, path, force=True)

    def load(path):
        space = load_embeddings(path)
        return space

    return run.cached(filename, encode, save, load)


def cached_models(run: Run, name: str, train: Callable[[], tuple[Any, Any]]):
    """(encoder, decoder) trained once: saved as checkpoints in the work folder and loaded on later runs."""
    from relstitch.checkpoints import (
        DECODER_SUFFIX,
        ENCODER_SUFFIX,
        load_decoder,
        load_encoder,
        save_decoder,
        save_encoder,
    )

    enc_path, dec_path = run.work / f"{name}{ENCODER_SUFFIX}", run.work / f"{name}{DECODER_SUFFIX}"
    if enc_path.exists() and dec_path.exists():
        return load_encoder(enc_path), load_decoder(dec_path)
    encoder, decoder = train()
    save_encoder(encoder, enc_path, force=True)
    save_decoder(decoder, dec_path, force=True)
    return encoder, decoder


def cached_decoder(run: Run, name: str, fit: Callable[[], Any]):
    from relstitch.checkpoints import DECODER_SUFFIX, load_decoder, save_decoder

    return run.cached(
        f"{name}{DECODER_SUFFIX}", fit, lambda d, p: save_decoder(d, p, force=True), load_decoder
    )


def cached_json(run: Run, filename: str, compute: Callable[[], Any]):
    return run.cached(
        filename, compute, lambda v, p: p.write_text(json.dumps(v)), lambda p: json.loads(p.read_text())
    )


def lazy(factory: Callable[[], Any]) -> Callable[[], Any]:
    """``factory()`` called on first use only (an encoder is loaded only if something must be encoded)."""
    made: list[Any] = []

    def get() -> Any:
        if not made:
            made.append(factory())
        return made[0]

    return get


def encode_lazily(get_encoder: Callable[[], Any], anchors: Any, data: Any, batch_size: int = 64) -> Any:
    from relstitch.encoding import encode

    return encode(get_encoder(), anchors, data, batch_size=batch_size)


def heads_and_pairs(
    run: Run,
    config: dict[str, Any],
    encoders: list[str],
    train_spaces: dict[str, Any],
    test_spaces: dict[str, Any],
    test: Any,
    head: str,
) -> list[dict[str, Any]]:
    """Fit relative and absolute heads on each frozen encoder (one per seed), then score every head on every
    encoder: relative heads read relative vectors; absolute heads read raw latents and, as the translation
    baseline, latents mapped by Procrustes onto the head's own encoder space (fitted on the anchors)."""
    import itertools

    from relstitch.stitching import evaluate_pair
    from relstitch.training import FitConfig, fit
    from relstitch.translation import evaluate_translation

    heads = {}
    for name, space, seed in itertools.product(encoders, ("relative", "absolute"), config["head_seeds"]):
        cfg = FitConfig(
            val=0.0,  # every sample trains, as when RESULTS.md was measured
            space=space,
            head=head,
            hidden=config["hidden"],
            epochs=config["epochs"],
            lr=config["lr"],
            batch_size=config["batch_size"],
            seed=seed,
        )
        label = f"{name}-{space[:3]}-s{seed}"
        heads[name, space, seed] = run.step(
            f"fit {label}",
            cached_decoder,
            run,
            label,
            functools.partial(fit, train_spaces[name], cfg, name=label),
        )
    pairs = []
    for (dec_enc, space, seed), decoder in heads.items():
        for enc in encoders:
            for method in ["relative"] if space == "relative" else ["absolute", "procrustes"]:
                if method == "procrustes":
                    result = evaluate_translation(
                        test_spaces[enc], train_spaces[dec_enc].anchor_absolute, decoder, "procrustes", test
                    )
                else:
                    result = evaluate_pair(test_spaces[enc], decoder, test)
                pairs.append(
                    {
                        "encoder": enc,
                        "head_encoder": dec_enc,
                        "method": method,
                        "head_seed": seed,
                        "stitched": enc != dec_enc,
                        **result.scores,
                    }
                )
    return pairs


def need(path: Path, what: str) -> Path:
    """Stop with one clear line when an optional asset is missing."""
    if not path.exists():
        raise SystemExit(f"{what} not found at {path}: run scripts/fetch-assets.sh first")
    return path

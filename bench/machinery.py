"""Does the speed machinery earn its place on real-size encoders? \
Four pieces, each measured on real architectures.

    .venv/bin/python bench/machinery.py          # 8-10 minutes on 2 quiet vCPUs (longer when others load it)
    .venv/bin/python bench/machinery.py --quick  # ~4 min: smaller N, fewer repeats, no 1-thread writer rows
    .venv/bin/python bench/machinery.py --parts matrix,writer --json m.json

Four pieces were added for speed and measured on the shipped CNN/MLP zoo (microseconds per image); two
of them (the eval-matrix pipeline and encode's writer thread) were removed after this bench showed they
did not pay here, and its pieces 1 and 2 now measure what they could still win. The encoders are real
architectures with random weights, nothing downloaded, loaded the way a user loads them
(``relstitch.adapters.load_encoder_ref``):

- ``torchvision:resnet18`` (two seeds) and ``torchvision:resnet50``, ``#weights=FILE`` (a safetensors file of
  ``torchvision.models.resnetXX(weights=None)``'s random init), fed the built-in Fashion-MNIST images as
  3-channel ``--resize`` (default 64x64: the full networks, at a resolution this CPU can run in seconds;
  a larger resolution only makes each forward pass dearer, which shrinks every fixed cost measured here);
  ``resnet50-224`` is the same ResNet-50 at its native 224x224 (batch sweep only);
- ``hf:DIR``: a ``transformers.BertModel`` of ``BertConfig()``'s shape (768 wide, 12 heads, FFN 3072,
  30,522-token vocabulary) with ``--bert-layers`` of its 12 layers (default 4), random weights, saved with
  ``save_pretrained`` beside a word-level tokenizer, read at 128 tokens (sentences of ~150 words).

Pieces, each a ratio of two runs in this process (or of subprocesses run alternately), never a bare time:

1. ``matrix``: ``eval_matrix``, 3 encoders x ``--heads`` relative heads, torch at 1 and 2 threads: its
   total time / its encoding time (``timings``). The excess over 1 is the scoring (and loading) share,
   the most that overlapping scoring with the next encoder could save.
2. ``writer``: ``encode_to_file`` (projection and writes on the caller's thread) / a bare loop of
   ``encoder.embed_batch`` over the same batches (the unavoidable work), torch at 2 threads (as the
   ``relstitch`` command runs on this machine) and 1: the excess is all a writer thread could hide.
3. ``allocator``: wall time of the ``relstitch encode`` command (a subprocess, start-up included) with the
   tuning / with ``RELSTITCH_ALLOCATOR=system``, alternating, median of ``--rounds`` each; and the same
   for ``relstitch inspect`` and ``relstitch report``.
4. ``batch``: samples/s of relstitch's encode loop (``iter_embed``) at each of ``--batches`` (and at the
   size ``--batch-size auto`` picks), over the same samples, relative to that pick and to batch 256 (the
   CPU's fixed size before ``auto`` probed), with the peak resident growth and minor page faults per
   sample of each, every model in a fresh process (allocator tuned, as the command runs): resnet50 (and
   resnet50-224 over fewer samples) and a BERT of ``--sweep-bert-layers`` layers at 128 tokens; and the
   shipped CNN over 6,000 images (best of 5 passes).

Before each part the script prints the 1-minute load average, and after it how many cores *other*
processes used meanwhile (the machine's busy CPU time from /proc/stat minus this process's and its
children's): the noise next to each number. Each row (a ratio) waits until other processes use under
``--quiet-cores`` (0.3) cores, at most ``--max-wait`` s, and is measured again (``--retries``, 1) when they
used more during it; the least disturbed attempt is reported, with the load before it and the cores
other processes used during it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    RESULTS,
    configure_threads,
    cpu_name,
    finish,
    peak_rss,
    report,
    reset_peak_rss,
    timed,
)
from allocator import clean_env, per_process

SUMMARY: list[tuple[str, ...]] = []  # (piece, workload, ratio, meaning, noise) for the closing table


# ---------------------------------------------------------------------------------------- noise
def _busy_jiffies() -> int:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal


def _own_cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Others:
    """Cores that *other* processes kept busy during a block: the machine's busy CPU time (/proc/stat)
    minus this process's and its finished children's, over the block's wall time."""

    def __enter__(self) -> Others:
        self.busy, self.own, self.start = _busy_jiffies(), _own_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.start
        busy_s = (_busy_jiffies() - self.busy) / os.sysconf("SC_CLK_TCK")
        self.cores = max(0.0, (busy_s - (_own_cpu_s() - self.own)) / self.wall)


def others_now(window: float = 3.0) -> float:
    with Others() as others:
        time.sleep(window)
    return others.cores


@contextmanager
def part(name: str) -> Iterator[None]:
    """Print the load before a part and, after it, the cores other processes kept busy meanwhile."""
    load = os.getloadavg()[0]
    print(f"\n== {name} (1-min load before: {load:.2f}) ==", flush=True)
    with Others() as others:
        yield
    print(
        f"== {name}: {others.wall:.0f} s; other processes used {others.cores:.2f} cores meanwhile ==",
        flush=True,
    )
    RESULTS.append(
        {
            "part": name,
            "load_before": round(load, 2),
            "other_cores": round(others.cores, 2),
            "wall_s": round(others.wall, 1),
        }
    )


QUIET = {"cores": 0.3, "wait": 90.0, "retries": 1}
"""Set from the command line: a row is measured when others use under ``cores`` (waiting up to ``wait`` s),
and measured again (``retries`` times at most) when they used more than that during it."""


def wait_quiet() -> float:
    """Wait until other processes use under QUIET['cores'] for 3 s (at most QUIET['wait'] s); their cores
    then."""
    waited, now = 0.0, others_now()
    while now > QUIET["cores"] and waited < QUIET["wait"]:
        waited += 3 + 2
        time.sleep(2)
        now = others_now()
    if waited:
        print(f"(waited {waited:.0f} s for other processes to quieten: now {now:.2f} cores)", flush=True)
    return now


def quiet(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``measure`` when the machine is quiet; again if other processes used it meanwhile; the least
    disturbed run.

    The result gets ``others`` (cores other processes used during it) and ``load`` (1-min load average
    before).
    """
    best: dict[str, Any] | None = None
    for attempt in range(1 + int(QUIET["retries"])):
        wait_quiet()
        load = os.getloadavg()[0]
        with Others() as others:
            out = measure()
        out.update(others=round(others.cores, 2), load=round(load, 2))
        if best is None or out["others"] < best["others"]:
            best = out
        if others.cores <= QUIET["cores"]:
            break
        if attempt < QUIET["retries"]:
            print(
                f"(other processes used {others.cores:.2f} cores during that row: measuring it again)",
                flush=True,
            )
    assert best is not None
    return best


# ------------------------------------------------------------------------------------ workloads
WORDS_SEED = 0


def _words(count: int) -> list[str]:
    rng = random.Random(WORDS_SEED)
    letters = "abcdefghijklmnopqrstuvwxyz"
    found: set[str] = set()
    while len(found) < count:
        found.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))))
    return sorted(found)


def save_bert(folder: Path, layers: int, words: list[str]) -> Path:
    """BertConfig()'s shape with ``layers`` layers, random weights, and a word-level tokenizer, saved with
    save_pretrained."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    torch.manual_seed(0)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    BertModel(BertConfig(num_hidden_layers=layers)).save_pretrained(
        folder
    )  # BERT-base's shape, `layers` deep
    tokenizer.save_pretrained(folder)
    return folder


def prepare(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Weights files, anchor files, text data and model folders, all in ``folder``; the references to load
    them."""
    import torch
    import torchvision
    from safetensors.torch import save_file

    from relstitch.anchor_set import save_anchors
    from relstitch.anchors import select_anchors
    from relstitch.data import load_dataset

    started = time.perf_counter()
    refs: dict[str, str] = {}
    size = f"{args.resize},{args.resize}"
    for name, arch, seed in (
        ("resnet18", "resnet18", 0),
        ("resnet18-s1", "resnet18", 1),
        ("resnet50", "resnet50", 0),
    ):
        torch.manual_seed(seed)
        weights = folder / f"{name}.safetensors"
        save_file(getattr(torchvision.models, arch)(weights=None).state_dict(), str(weights))
        refs[name] = f"torchvision:{arch}#weights={weights},resize={size},name={name}"
    refs["resnet50-224"] = f"torchvision:resnet50#weights={folder / 'resnet50.safetensors'},resize=224,224"
    refs["resnet50-224"] += ",name=resnet50-224"
    image_anchors = folder / "image-anchors.safetensors"
    save_anchors(select_anchors(load_dataset("builtin:train"), args.k, "stratified", seed=0), image_anchors)

    words = _words(3000)
    rng = random.Random(1)
    text = folder / "sentences.jsonl"
    with open(text, "w") as f:
        for i in range(max(args.sweep_n, args.text_n + args.text_k, 600)):
            f.write(
                json.dumps({"text": " ".join(rng.choice(words) for _ in range(150)), "label": f"c{i % 4}"})
                + "\n"
            )
    text_anchors = folder / "text-anchors.safetensors"
    save_anchors(select_anchors(load_dataset(f"jsonl:{text}"), args.text_k, "uniform", seed=0), text_anchors)
    bert = save_bert(folder / "bert", args.bert_layers, words)
    refs["bert"] = f"hf:{bert}#max_length=128,name=bert-L{args.bert_layers}"
    refs["cnn"] = str(REPO / "checkpoints" / "cnn-rel-s0.encoder.safetensors")
    if args.sweep_bert_layers != args.bert_layers:
        sweep_bert = save_bert(folder / "bert-sweep", args.sweep_bert_layers, words)
        refs["bert-sweep"] = f"hf:{sweep_bert}#max_length=128,name=bert-L{args.sweep_bert_layers}"
    else:
        refs["bert-sweep"] = refs["bert"]
    print(
        f"(prepared models and data in {time.perf_counter() - started:.0f} s: "
        f"resnets at {size}, BERT-base shape "
        f"with {args.bert_layers} layers (sweep: {args.sweep_bert_layers}), 128 tokens)",
        flush=True,
    )
    return {
        "refs": refs,
        "image_anchors": image_anchors,
        "text": text,
        "text_anchors": text_anchors,
        "folder": folder,
    }


def workload(setup: dict[str, Any], model: str, n: int):
    """(encoder, anchors, dataset of the first n samples) for ``model``, loaded as a user loads them."""
    import torch

    from relstitch.adapters import load_encoder_ref
    from relstitch.anchor_set import load_anchors
    from relstitch.data import load_dataset

    encoder = load_encoder_ref(setup["refs"][model], allow_embeddings=False)
    if model.startswith("bert"):
        anchors, data = load_anchors(setup["text_anchors"]), load_dataset(f"jsonl:{setup['text']}")
    elif model == "cnn":
        anchors, data = (
            load_anchors(REPO / "checkpoints" / "anchors.safetensors"),
            load_dataset("builtin:train"),
        )
    else:
        anchors, data = load_anchors(setup["image_anchors"]), load_dataset("builtin:test")
    dataset = data.subset(torch.arange(n), name=f"{data.name}[:{n}]")
    _ = encoder.hash, anchors.hash, dataset.hash  # identities once, outside the timed runs
    return encoder, anchors, dataset


def rounds_of(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Every function's times, run in turn (A B C A B C ...) after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return times


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


# ------------------------------------------------------------------------------ 1. eval-matrix
def piece_matrix(setup: dict[str, Any], args: argparse.Namespace) -> None:
    import torch

    from relstitch.anchor_set import load_anchors
    from relstitch.architectures import create_decoder
    from relstitch.components import Decoder
    from relstitch.data import load_dataset
    from relstitch.data.sources import FASHION_MNIST_CLASSES
    from relstitch.matrix import eval_matrix
    from relstitch.projection import ProjectionConfig

    anchors = load_anchors(setup["image_anchors"])
    data = load_dataset("builtin:test")
    dataset = data.subset(torch.arange(args.matrix_n), name=f"builtin:test[:{args.matrix_n}]")
    _ = anchors.hash, dataset.hash
    heads = []
    for seed in range(
        args.heads
    ):  # the shipped heads' architecture on this anchor set (k inputs), random weights
        torch.manual_seed(seed)
        module = create_decoder("vision-head", in_dim=len(anchors), num_classes=10, hidden=128).eval()
        heads.append(
            Decoder(
                module,
                {"name": "vision-head", "args": {"in_dim": len(anchors), "num_classes": 10, "hidden": 128}},
                "relative",
                len(anchors),
                {"type": "classification", "classes": FASHION_MNIST_CLASSES},
                f"head-{seed}",
                projection=ProjectionConfig(),
                anchor_hash=anchors.hash,
            )
        )
    refs = [setup["refs"][m] for m in ("resnet18", "resnet18-s1", "resnet50")]
    workload_text = (
        f"resnet18 x2 seeds + resnet50 @{args.resize}px x {args.heads} relative heads, N={args.matrix_n}, "
        f"k={len(anchors)}, batch 256"
    )
    for threads in (1, 2):
        torch.set_num_threads(threads)

        def measure() -> dict[str, Any]:
            runs = []
            for _ in range(args.repeats):
                result = eval_matrix(refs, heads, anchors, dataset, batch_size=256)
                failed = [p for p in result.pairs if p.error]
                assert not failed, f"pairs failed: {failed[0].error}"
                runs.append(result.timings)
            return {"timings": min(runs, key=lambda t: t["total_seconds"])}

        got = quiet(measure)
        total, encoding = got["timings"]["total_seconds"], got["timings"]["encode_seconds"]
        report(
            f"eval-matrix total / its encoding, torch {threads} thread(s)",
            workload_text,
            total,
            encoding,
            "the same run's encode_seconds (loading + encoding); best of each run",
            higher_is_better=False,
            extra={"load": got["load"], "other cores": got["others"]},
        )
        SUMMARY.append(
            (
                "1. eval-matrix scoring share",
                f"{threads} torch thread(s); {workload_text}",
                f"{total / encoding:.4f}",
                f"total/encoding time: scoring is {100 * (1 - encoding / total):.2f} % of the run, the most "
                f"overlapping it with the next encoder could save; {total:.2f} s",
                _noise(got),
            )
        )
    torch.set_num_threads(args.threads_default)


def _noise(got: dict[str, Any]) -> str:
    return f"{got['load']:.1f} / {got['others']:.2f}"


# ------------------------------------------------------------------------------ 2. encode vs bare
def piece_writer(setup: dict[str, Any], args: argparse.Namespace) -> None:
    import torch

    out = setup["folder"] / "writer.safetensors"
    for model, n, batch in (
        ("resnet18", args.writer_n, 128),
        ("resnet50", args.writer_n // 2, 128),
        ("bert", args.text_n, 32),
    ):
        _writer_rows(setup, args, model, n, batch, out)
    out.unlink(missing_ok=True)
    torch.set_num_threads(args.threads_default)


def _writer_rows(
    setup: dict[str, Any], args: argparse.Namespace, model: str, n: int, batch: int, out: Path
) -> None:
    import torch

    from relstitch.encoding import inputs_for
    from relstitch.streaming import encode_to_file

    encoder, anchors, dataset = workload(setup, model, n)
    x_anchors, x_data = inputs_for(encoder, anchors), inputs_for(encoder, dataset)

    def encode() -> None:
        encode_to_file(encoder, anchors, dataset, out, batch_size=batch, force=True)

    @torch.inference_mode()
    def bare() -> None:
        for x in (x_anchors, x_data):
            for s in range(0, len(x), batch):
                encoder.embed_batch(x[s : s + batch])

    for threads in args.writer_threads:
        torch.set_num_threads(threads)
        got = quiet(lambda: {"times": rounds_of({"encode": encode, "bare": bare}, args.repeats, warmup=1)})
        times = got["times"]
        best = {k: min(v) for k, v in times.items()}
        what = f"{model}, N={n} + k={len(anchors)}, batch {batch}, torch {threads} thread(s)"
        report(
            f"encode / bare forward loop ({model}, {threads} thr)",
            what,
            best["encode"],
            best["bare"],
            "encoder.embed_batch over the same batches, no projection, no file",
            higher_is_better=False,
            extra={
                "encode s": _fmt(times["encode"]),
                "bare s": _fmt(times["bare"]),
                "samples/s": f"{(n + len(anchors)) / best['encode']:.1f}",
                "load": got["load"],
                "other cores": got["others"],
            },
        )
        SUMMARY.append(
            (
                "2. encode / bare forward",
                what,
                f"{best['encode'] / best['bare']:.3f}",
                "encode_to_file / bare embed_batch loop time: the excess is all a writer thread could hide",
                _noise(got),
            )
        )


# ------------------------------------------------------------------------------ 3. allocator
LAUNCHER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": done.returncode, "wall": wall, "maxrss_mb": usage.ru_maxrss / 1024,
                  "minflt": usage.ru_minflt, "err": done.stderr.decode(errors="replace")[-2000:]}))
"""
"""Runs one command and prints its wall time and rusage (peak RSS, minor page faults) as JSON."""


def piece_allocator(setup: dict[str, Any], args: argparse.Namespace) -> None:
    relstitch = str(Path(sys.executable).with_name("relstitch"))
    folder = setup["folder"]
    out = folder / "cmd.safetensors"

    def alternate(argv: list[str], rounds: int) -> dict[str, Any]:
        """Wall seconds, peak RSS (MB) and minor page faults of each run, tuned (True) and
        RELSTITCH_ALLOCATOR=system (False).

        Each command runs under a small launcher process that reports its child's rusage: a child forked
        straight from this (large) process would report this process's resident size as its peak.
        """
        runs: dict[str, dict[bool, list[float]]] = {
            "times": {True: [], False: []},
            "peaks": {True: [], False: []},
            "faults": {True: [], False: []},
        }
        for i in range(rounds):
            for tune in (False, True) if i % 2 == 0 else (True, False):  # who goes first alternates too
                env = clean_env() if tune else clean_env(RELSTITCH_ALLOCATOR="system")
                done = subprocess.run(
                    [sys.executable, "-c", LAUNCHER, *argv], capture_output=True, text=True, env=env
                )
                out = json.loads(done.stdout)
                if out["rc"]:
                    raise SystemExit(f"{argv[1]} failed: {out['err']}")
                runs["times"][tune].append(out["wall"])
                runs["peaks"][tune].append(out["maxrss_mb"])
                runs["faults"][tune].append(out["minflt"])
        return runs

    for model, n in (("resnet18", args.cmd_n), ("resnet50", args.cmd_n // 2), ("bert", args.cmd_text_n)):
        if model == "bert":
            data, anchors = f"jsonl:{setup['text']}", setup["text_anchors"]
        else:
            data, anchors = "builtin:train", setup["image_anchors"]
        argv = [
            relstitch,
            "encode",
            setup["refs"][model],
            "--data",
            data,
            "--limit",
            str(n),
            "-a",
            str(anchors),
            "-o",
            str(out),
            "--force",
            "--device",
            "cpu",
        ]
        got = quiet(lambda argv=argv: alternate(argv, args.rounds))
        times, peaks, faults = got["times"], got["peaks"], got["faults"]
        what = (
            f"relstitch encode {model}, N={n} + k={args.text_k if model == 'bert' else args.k}, "
            "batch 256, torch's default threads"
        )
        tuned, system = statistics.median(times[True]), statistics.median(times[False])
        rss = f"{max(peaks[True]):.0f}/{max(peaks[False]):.0f}"
        flt = f"{statistics.median(faults[True]) / 1e3:.0f}k/{statistics.median(faults[False]) / 1e3:.0f}k"
        report(
            f"allocator tuned / system, encode {model} (median run)",
            what,
            tuned,
            system,
            "the same command with RELSTITCH_ALLOCATOR=system",
            higher_is_better=False,
            extra={
                **per_process(times),
                "peak RSS MB tuned/system": rss,
                "minor faults tuned/system": flt,
                "load": got["load"],
                "other cores": got["others"],
            },
        )
        SUMMARY.append(
            (
                "3. allocator tuning",
                what + ", wall time incl. start-up",
                f"{tuned / system:.3f}",
                "tuned/system median time (< 1: it pays); "
                f"tuned {_fmt(times[True])} s, system {_fmt(times[False])} s;"
                f" peak RSS MB tuned/system {rss}; minor page faults tuned/system {flt}",
                _noise(got),
            )
        )
    out.unlink(missing_ok=True)

    report_json = folder / "report.json"
    subprocess.run(
        [
            relstitch,
            "eval-matrix",
            "--limit",
            "200",
            "--json",
            str(report_json),
            "--allow-failures",
            "--force",
        ],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    for what, argv in (
        ("inspect", [relstitch, "inspect", str(REPO / "checkpoints" / "cnn-rel-s0.encoder.safetensors")]),
        ("report", [relstitch, "report", str(report_json)]),
    ):
        got = quiet(lambda argv=argv: alternate(argv, args.rounds + 2))
        times = got["times"]
        tuned, system = statistics.median(times[True]), statistics.median(times[False])
        source = "shipped encoder file" if what == "inspect" else "the zoo matrix JSON, 8x8"
        label = f"relstitch {what} ({source})"
        report(
            f"allocator tuned / system, {what} (median run)",
            label,
            tuned,
            system,
            "the same command with RELSTITCH_ALLOCATOR=system",
            higher_is_better=False,
            extra={**per_process(times), "load": got["load"], "other cores": got["others"]},
        )
        SUMMARY.append(
            (
                "3. allocator tuning",
                label,
                f"{tuned / system:.3f}",
                f"tuned/system median time; tuned {_fmt(times[True])} s, system {_fmt(times[False])} s",
                _noise(got),
            )
        )


# ------------------------------------------------------------------------------ 4. batch size
def piece_batch(setup: dict[str, Any], args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads_default)
    for model in filter(None, args.sweep_models.split(",")):
        _sweep(setup, args, model)


def _sweep(setup: dict[str, Any], args: argparse.Namespace, model: str) -> None:
    """One model's sweep, in a fresh process (its peak memory is then the sweep's, not earlier parts'
    leftovers)."""
    small = (
        model == "cnn"
    )  # the shipped CNN, for contrast: 6 us an image, so many samples and the best of 5 passes
    n = 6000 if small else args.sweep_n_224 if model.endswith("-224") else args.sweep_n
    job = {
        "ref": setup["refs"][model],
        "anchors": str(setup["text_anchors" if model.startswith("bert") else "image_anchors"]),
        "text": str(setup["text"]),
        "model": model,
        "n": n,
        "batches": [b for b in args.batches if b <= n],  # a larger batch is the same single batch
        "threads": args.threads_default,
        "passes": 5 if small else 1,
    }

    def measure() -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, __file__, "--sweep-child", json.dumps(job)],
            capture_output=True,
            text=True,
            env=clean_env(),
        )
        if done.returncode:
            raise SystemExit(f"sweep of {model} failed: {done.stderr[-2000:]}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    got = quiet(measure)
    rates = {int(b): r for b, r in got["rates"].items()}
    growth = {int(b): g for b, g in got["growth"].items()}
    faults = {int(b): f for b, f in got["faults"].items()}
    auto, name, probe_s = got["auto"], got["name"], got["probe_s"]
    batches = sorted(rates)
    ref = rates[auto]
    what = f"{name}, N={n}, torch {args.threads_default} threads; auto picks {auto}"
    for batch in batches:
        report(
            f"batch {batch} / batch {auto} (auto) samples/s ({name})",
            what,
            1 / rates[batch],
            1 / ref,
            f"the same loop at batch {auto}",
            extra={
                "samples/s": f"{rates[batch]:.1f}",
                "peak growth MB": f"{growth[batch]:.0f}",
                "minor faults per sample": f"{faults[batch]:.0f}",
                "load": got["load"],
                "other cores": got["others"],
            },
        )
    # The probe's cost against encoding these N samples at the size it picks.
    probe_share = probe_s * ref / n
    vs = " ".join(f"{ref / rates[b]:.2f}x batch {b}" for b in (128, 256) if b in rates and b != auto)
    SUMMARY.append(
        (
            "4. --batch-size auto (CPU: probe)",
            what,
            " / ".join(f"{rates[b] / ref:.2f}" for b in batches),
            "samples/s at batch "
            + " / ".join(map(str, batches))
            + f" relative to auto's {auto}"
            + (f" (auto = {vs})" if vs else "")
            + "; samples/s "
            + " / ".join(f"{rates[b]:.1f}" for b in batches)
            + "; peak growth MB "
            + " / ".join(f"{growth[b]:.0f}" for b in batches)
            + "; minor page faults per sample "
            + " / ".join(f"{faults[b]:.0f}" for b in batches)
            + f"; the probe {1000 * probe_s:.0f} ms, {100 * probe_share:.1f} % of encoding these N at {auto}",
            _noise(got),
        )
    )


def sweep_child(job: dict[str, Any]) -> None:
    """In a fresh process (allocator tuned, as the relstitch command runs): samples/s, peak resident growth
    and minor page faults per sample of relstitch's encode loop at each batch size (the job's and the one
    ``auto`` picks), ascending (a larger batch never finds memory a smaller one left behind); and the
    time ``auto``'s probe takes."""
    configure_threads()
    import torch

    from relstitch.encoding import inputs_for, iter_embed, resolve_batch_size

    torch.set_num_threads(job["threads"])
    setup = {
        "refs": {job["model"]: job["ref"]},
        "text_anchors": job["anchors"],
        "image_anchors": job["anchors"],
        "text": job["text"],
    }
    encoder, _anchors, dataset = workload(setup, job["model"], job["n"])
    x = inputs_for(encoder, dataset)
    for _ in iter_embed(
        encoder, x[:8], batch_size=8
    ):  # first-call costs outside the sweep and the probe, little memory touched
        pass
    start = time.perf_counter()
    auto = resolve_batch_size("auto", encoder, x)
    probe_s = time.perf_counter() - start
    rates, growth, faults = {}, {}, {}
    for batch in sorted({*job["batches"], auto}):
        base = reset_peak_rss()
        flt = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for repeat in range(job["passes"]):  # the best pass; faults and growth of the first
            start = time.perf_counter()
            for _ in iter_embed(encoder, x, batch_size=batch):
                pass
            rates[batch] = max(rates.get(batch, 0.0), len(dataset) / (time.perf_counter() - start))
            if repeat == 0:
                faults[batch] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt) / len(dataset)
                growth[batch] = peak_rss() - base
    print(
        json.dumps(
            {
                "rates": rates,
                "growth": growth,
                "faults": faults,
                "auto": auto,
                "probe_s": probe_s,
                "name": encoder.name,
            }
        )
    )


PIECES = {"matrix": piece_matrix, "writer": piece_writer, "allocator": piece_allocator, "batch": piece_batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N and fewer repeats (~3 minutes)")
    parser.add_argument("--parts", default=",".join(PIECES), help=f"comma-separated, of {', '.join(PIECES)}")
    parser.add_argument("--resize", type=int, default=64, help="image side the resnets read (default 64)")
    parser.add_argument("--bert-layers", type=int, default=4)
    parser.add_argument("--sweep-bert-layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument(
        "--sweep-models",
        default="resnet50,resnet50-224,bert-sweep,cnn",
        help="batch sweep models: resnet50, resnet50-224, resnet18, bert-sweep, bert, cnn (the shipped CNN)",
    )
    parser.add_argument(
        "--quiet-cores",
        type=float,
        default=0.3,
        help="measure a row when other processes use fewer cores than this, and again if they used more",
    )
    parser.add_argument(
        "--max-wait", type=float, default=90, help="seconds to wait for quiet before each row"
    )
    parser.add_argument("--retries", type=int, default=1, help="how often a disturbed row is measured again")
    parser.add_argument("--batches", help="batch sweep sizes, comma-separated (default 8 ... 512)")
    parser.add_argument("--json")
    parser.add_argument(
        "--sweep-child", help=argparse.SUPPRESS
    )  # internal: one model's batch sweep, in its own process
    args = parser.parse_args()
    if args.sweep_child:
        sweep_child(json.loads(args.sweep_child))
        return
    q = args.quick
    args.k, args.text_k = 100, 32
    args.matrix_n = 200 if q else 500
    args.writer_n = 400 if q else 1000
    args.text_n = 32 if q else 64
    args.cmd_n, args.cmd_text_n = (800, 64) if q else (2000, 128)
    args.sweep_n = 256 if q else 512
    args.sweep_n_224 = 32 if q else 64
    default_batches = [16, 32, 64, 128, 256] if q else [8, 16, 32, 64, 128, 256, 512]
    args.batches = [int(b) for b in args.batches.split(",")] if args.batches else default_batches
    args.repeats = 1 if q else 2
    args.rounds = 3
    args.writer_threads = [2] if q else [2, 1]

    QUIET.update(cores=args.quiet_cores, wait=args.max_wait, retries=args.retries)
    configure_threads()  # the allocator tuning, as the relstitch command applies it (pieces 1, 2 and 4)
    import torch

    args.threads_default = min(
        2, os.cpu_count() or 1
    )  # what torch picks on this machine; the relstitch command keeps it
    torch.set_num_threads(args.threads_default)
    started = time.perf_counter()
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}; "
        f"1-min load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="relstitch-machinery-") as tmp:
        setup = prepare(Path(tmp), args)
        for name in filter(None, args.parts.split(",")):
            with part(name):
                PIECES[name](setup, args)
    total = time.perf_counter() - started
    print(f"\nSummary ({'quick' if q else 'full'} run, {total:.0f} s):")
    print("| piece | workload | ratio | meaning | load / other cores |\n| --- | --- | --- | --- | --- |")
    for row in SUMMARY:
        print("| " + " | ".join(row) + " |")
    RESULTS.append({"total_s": round(total, 1), "quick": q})
    finish(args.json)


if __name__ == "__main__":
    main()

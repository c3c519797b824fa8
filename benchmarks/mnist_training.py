"""Keras against PyTorch on the mnist sample: seconds per epoch and test accuracy, side by side.

    python -m benchmarks mnist_training      # about 1 to 2 minutes on 2 cores

Both trainers run as a user runs them, as subprocesses of their real CLIs (`python -m
mnist.train --sample`, `python -m mnist.train_torch --sample`), with the same epochs, batch size,
learning rate and seed, and each figure comes from the metrics.json they write. Seconds per epoch
is the trainer's own `train_seconds` (its training loop, including the per-epoch validation pass,
excluding imports and data loading) divided by the epochs; `wall_seconds` is the whole command.

Threads: each trainer's default, which on this machine is every core for both (TensorFlow's
intra-op pool, train_torch's share of the CPU affinity); the torch run prints its count.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3
BATCH_SIZE = 32  # both CLIs' default
TIMEOUT = 600  # seconds per training command; only stops a hang
SHOWN = re.compile(r"^(epoch|test_accuracy)=")  # child lines worth echoing as progress
TORCH_THREADS = re.compile(r"(\d+) threads")


def run_logged(argv: Sequence[str], log_path: Path, label: str) -> float:
    """Run argv from the repository root, everything into log_path; return its wall seconds.

    Its epoch and test_accuracy lines are echoed to stderr as they come, as progress; a failure
    raises with the end of the log.
    """
    started = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # progress as it happens
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        # Reading its output blocks until it ends, so a hang is cut short by a timer instead.
        watchdog = threading.Timer(TIMEOUT, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if SHOWN.match(line):
                    print(f"  {label}: {line.strip()}", file=sys.stderr, flush=True)
            code = proc.wait()
        finally:
            watchdog.cancel()
    seconds = time.perf_counter() - started
    if code != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{label}: {' '.join(argv)} exited {code}\n{tail}")
    return seconds


def train(module: str, workdir: Path, label: str) -> dict:
    """metrics.json of `python -m <module> --sample` with the shared settings, plus wall_seconds."""
    model_dir = workdir / label
    argv = [sys.executable, "-m", module, "--sample", f"--epochs={EPOCHS}"]
    argv += [f"--batch-size={BATCH_SIZE}", f"--model-dir={model_dir}"]
    print(f"mnist_training: {label}, {EPOCHS} epochs on the sample ...", file=sys.stderr)
    log_path = workdir / f"{label}.log"
    wall = run_logged(argv, log_path, label)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    torch_threads = TORCH_THREADS.search(log_path.read_text())  # train_torch prints its count
    threads = f"{torch_threads[1]} (torch)" if torch_threads else "TensorFlow default (all cores)"
    return metrics | {"wall_seconds": wall, "threads": threads}


def run() -> Iterator[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-mnist-training-") as tmp:
        runs = {
            "keras": train("mnist.train", Path(tmp), "keras"),
            "torch": train("mnist.train_torch", Path(tmp), "torch"),
        }
    common = {"epochs": EPOCHS, "batch_size": BATCH_SIZE, "data": "sample (3600 train images)"}
    timing = "train_seconds from metrics.json / epochs (training loop + validation, no imports)"
    per_epoch = {name: m["train_seconds"] / EPOCHS for name, m in runs.items()}
    for name, other in (("keras", "torch"), ("torch", "keras")):
        yield {
            "name": f"{name}_seconds_per_epoch",
            "value": round(per_epoch[name], 3),
            "unit": "s",
            "compared_with": f"{other}_seconds_per_epoch ({per_epoch[other]:.3f} s)",
            "timing": timing,
            "wall_seconds": round(runs[name]["wall_seconds"], 1),
            "threads": runs[name]["threads"],
            **common,
        }
        other_accuracy = runs[other]["test_accuracy"]
        yield {
            "name": f"{name}_test_accuracy",
            "value": round(runs[name]["test_accuracy"], 4),
            "unit": "fraction of 1000 test images",
            "compared_with": f"{other}_test_accuracy ({other_accuracy:.4f}); chance 0.10",
            **common,
        }

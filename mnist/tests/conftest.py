"""Fixtures shared by the mnist tests: one smoke training run for the whole session.

`python -m mnist.train --sample --epochs 3` takes about 20 seconds here. test_train.py checks
what it printed and wrote; serving, the Seldon test and the rest use the model it trained.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_EPOCHS = 3  # about 0.93-0.95 test accuracy on the sample; 2 epochs land too close to 0.90


@dataclass
class TrainingRun:
    """The real CLI's run: where it wrote, what it printed, how long it took."""

    model_dir: Path
    stdout: str
    seconds: float


@pytest.fixture(scope="session")
def smoke_training(tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    """`python -m mnist.train --sample --epochs 3`, as Katib and the harness run it."""
    model_dir = tmp_path_factory.mktemp("mnist-model")
    cmd = [sys.executable, "-m", "mnist.train", "--sample", "--epochs", str(SMOKE_EPOCHS)]
    start = time.perf_counter()
    run = subprocess.run(
        [*cmd, "--model-dir", str(model_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return TrainingRun(model_dir, run.stdout, time.perf_counter() - start)


@pytest.fixture(scope="session")
def trained_model_dir(smoke_training: TrainingRun) -> Path:
    """A folder with model.keras, metrics.json and history.json trained on the sample."""
    return smoke_training.model_dir

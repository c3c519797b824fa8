"""Fixtures shared by the income_census tests: one smoke training run for the whole session.

`python -m income_census.train --sample` (the book's RandomForest) takes about 3 seconds here;
test_train.py checks what it printed and wrote, serving and the pipeline tests use the model.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TrainingRun:
    """The real CLI's run: where it wrote and what it printed."""

    model_dir: Path
    stdout: str


def train_cli(model_dir: Path, *args: str) -> TrainingRun:
    """`python -m income_census.train --sample --model-dir DIR ARGS`, as Katib runs it."""
    cmd = [sys.executable, "-m", "income_census.train", "--sample", "--model-dir", str(model_dir)]
    run = subprocess.run([*cmd, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return TrainingRun(model_dir, run.stdout)


@pytest.fixture(scope="session")
def smoke_training(tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    """The book's RandomForest on the sample."""
    return train_cli(tmp_path_factory.mktemp("income-rf"))


@pytest.fixture(scope="session")
def trained_model_dir(smoke_training: TrainingRun) -> Path:
    """A folder with model.joblib, background.csv and metrics.json trained on the sample."""
    return smoke_training.model_dir

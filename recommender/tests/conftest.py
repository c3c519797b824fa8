"""Fixtures shared by the recommender tests: one smoke training run per session.

`python -m recommender.train` with case.toml's smoke arguments (the sample, 10 epochs) takes about
20 seconds here. test_train.py checks what it printed and wrote against case.toml's floors;
serving, export, the notebooks and the rest use the model it trained. case.toml is read with
tomllib, not the harness, so these tests run in a case folder copied alone.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CASE_TOML = tomllib.loads((REPO_ROOT / "recommender" / "case.toml").read_text())
SMOKE = CASE_TOML["smoke"]
SMOKE_ARGS = SMOKE["train_args"]
MODEL_FLOORS = SMOKE["floors"]
# How far the model must beat the popularity baseline on the same split.
MARGIN_OVER_POPULARITY = CASE_TOML["floors"]["over_popularity"]
BPR_FLOORS = CASE_TOML["floors"]["bpr"]


@dataclass
class TrainingRun:
    """The real CLI's run: where it wrote, what it printed, how long it took."""

    model_dir: Path
    stdout: str
    seconds: float


def train_cli(model_dir: Path, *args: str) -> TrainingRun:
    """`python -m recommender.train --model-dir DIR ARGS`, as Katib and the harness run it."""
    cmd = [sys.executable, "-m", "recommender.train", "--model-dir", str(model_dir), *args]
    start = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return TrainingRun(model_dir, run.stdout, time.perf_counter() - start)


@pytest.fixture(scope="session")
def smoke_training(tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    """The model with case.toml's smoke arguments on the sample, as the harness runs it."""
    return train_cli(tmp_path_factory.mktemp("recommender"), *SMOKE_ARGS)


@pytest.fixture(scope="session")
def trained_model_dir(smoke_training: TrainingRun) -> Path:
    """A folder with model.keras, mappings.json, metrics.json and history.json."""
    return smoke_training.model_dir

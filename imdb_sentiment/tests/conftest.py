"""Fixtures shared by the imdb_sentiment tests: one smoke training run of each model per session.

`python -m imdb_sentiment.train` with case.toml's smoke arguments (the BiLSTM on the sample, 5
epochs) takes about 20 seconds here, the TF-IDF baseline 2. test_train.py checks what they printed
and wrote against case.toml's floors; serving, the notebooks' helpers and the rest use the models
they trained. case.toml is read with tomllib, not the harness, so these tests run in a case folder
copied alone.
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
CASE_TOML = tomllib.loads((REPO_ROOT / "imdb_sentiment" / "case.toml").read_text())
SMOKE = CASE_TOML["smoke"]
SMOKE_ARGS = SMOKE["train_args"]
SMOKE_FLOORS = SMOKE["floors"]
SMOKE_CEILINGS = SMOKE.get("ceilings", {})
TFIDF_FLOORS = CASE_TOML["floors"]["tfidf"]


@dataclass
class TrainingRun:
    """The real CLI's run: where it wrote, what it printed, how long it took."""

    model_dir: Path
    stdout: str
    seconds: float


def train_cli(model_dir: Path, *args: str) -> TrainingRun:
    """`python -m imdb_sentiment.train --model-dir DIR ARGS`, as Katib and the harness run it."""
    cmd = [sys.executable, "-m", "imdb_sentiment.train", "--model-dir", str(model_dir), *args]
    start = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return TrainingRun(model_dir, run.stdout, time.perf_counter() - start)


@pytest.fixture(scope="session")
def smoke_training(tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    """The BiLSTM with case.toml's smoke arguments, as the harness runs it."""
    return train_cli(tmp_path_factory.mktemp("imdb-bilstm"), *SMOKE_ARGS)


@pytest.fixture(scope="session")
def trained_model_dir(smoke_training: TrainingRun) -> Path:
    """A folder with model.keras, calibration.json, metrics.json and history.json."""
    return smoke_training.model_dir


@pytest.fixture(scope="session")
def tfidf_training(tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    """The TF-IDF baseline on the sample."""
    return train_cli(tmp_path_factory.mktemp("imdb-tfidf"), "--sample", "--model", "tfidf")


@pytest.fixture(scope="session")
def tfidf_model_dir(tfidf_training: TrainingRun) -> Path:
    """A folder with model.joblib, calibration.json and metrics.json."""
    return tfidf_training.model_dir

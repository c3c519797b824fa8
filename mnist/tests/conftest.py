"""Fixtures shared by the mnist tests: one trained model for the whole session.

Serving, the pipeline and the notebooks all need a trained Keras model; training one takes about
15 seconds on the sample, so it is trained once per session by the real CLI and shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_EPOCHS = 2  # about 0.93 test accuracy on the sample: good enough to tell digits apart


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with model.keras and metrics.json from `python -m mnist.train --sample`."""
    model_dir = tmp_path_factory.mktemp("mnist-model")
    cmd = [sys.executable, "-m", "mnist.train", "--sample", "--epochs", str(SHARED_EPOCHS)]
    run = subprocess.run(
        [*cmd, "--model-dir", str(model_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.85, metrics  # the tests that use it need a real model
    return model_dir

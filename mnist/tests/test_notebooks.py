"""Both notebooks execute top to bottom on small data, and show what they promise.

papermill runs the jupytext sources with their parameters overridden; the executed notebooks are
then read back for the plots and the printed answers a reader would look at.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness import notebooks

CASE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE_DIR.parent

pytestmark = pytest.mark.notebook


def digits_after(label: str, text: str) -> list[int]:
    match = re.search(rf"{re.escape(label)}\s*\[([\d, ]+)\]", text)
    assert match, f"{label!r} not printed"
    return [int(d) for d in match[1].split(",")]


def test_walkthrough_trains_plots_and_serves(tmp_path: Path) -> None:
    executed = notebooks.execute(
        CASE_DIR / "notebooks/walkthrough.py",
        parameters={"sample": True, "epochs": 2, "work_dir": str(tmp_path / "work")},
        cwd=REPO_ROOT,
        output=tmp_path / "walkthrough.ipynb",
    )
    text, images = notebooks.outputs(executed)
    # digits, class counts, learning curves, confusion matrix, misclassified digits
    assert images >= 5, text[-2000:]
    accuracy = float(re.search(r"test accuracy (\d\.\d+) on 1000 digits", text)[1])
    assert accuracy >= 0.85, text[-2000:]
    served = digits_after("served digits:", text)
    assert served == digits_after("in-process digits:", text)
    assert len(served) == 4
    assert re.search(r"digit\.png: \d \(probability", text), text[-2000:]


def test_kubeflow_notebook_runs_every_step_locally(tmp_path: Path) -> None:
    executed = notebooks.execute(
        CASE_DIR / "notebooks/kubeflow.py",
        parameters={"cluster": False, "work_dir": str(tmp_path / "work"), "timeout": 900},
        cwd=REPO_ROOT,
        output=tmp_path / "kubeflow.ipynb",
        timeout=1200,
    )
    text, images = notebooks.outputs(executed)
    assert "TFJobSucceeded" in text, text[-3000:]
    assert "Best Trial Name:" in text and "Trials Succeeded:           3" in text, text[-3000:]
    assert "tasks run:" in text and "deploy" in text.split("tasks run:")[1].splitlines()[0]
    assert images >= 1  # the trials' scatter plot
    served = digits_after("served digits:", text)
    assert len(served) == 3
    assert served == digits_after("in-process digits:", text)

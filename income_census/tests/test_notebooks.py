"""Both notebooks execute top to bottom on the sample, and show what they promise.

papermill runs the jupytext sources with their parameters overridden; the executed notebooks are
then read back for the plots, the printed answers and the Markdown a reader would look at.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness import notebooks, procs

CASE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE_DIR.parent

pytestmark = pytest.mark.notebook


def list_after(label: str, text: str) -> list[str]:
    match = re.search(rf"{re.escape(label)}\s*\[([^\]]*)\]", text)
    assert match, f"{label!r} not printed"
    return [item.strip(" '\"") for item in match[1].split(",")]


def anchor(label: str, text: str) -> tuple[list[str], float]:
    """The conditions and precision printed for the person predicted `label`."""
    match = re.search(
        rf"predicted {re.escape(label)} because\n(.*?)\nprecision (\d\.\d+)", text, re.DOTALL
    )
    assert match, f"no anchor printed for a {label} prediction"
    conditions = [c.strip().removeprefix("AND ") for c in match[1].splitlines()]
    return conditions, float(match[2])


def test_walkthrough_explores_trains_explains_and_serves(tmp_path: Path) -> None:
    executed = notebooks.execute(
        CASE_DIR / "notebooks/walkthrough.py",
        parameters={"sample": True, "work_dir": str(tmp_path / "work")},
        cwd=REPO_ROOT,
        output=tmp_path / "walkthrough.ipynb",
    )
    text, images = notebooks.outputs(executed)
    # class balance, income share by group, age and hours by class, feature importances,
    # confusion matrix, the anchor re-enactment
    assert images >= 6, text[-2000:]
    accuracy = float(re.search(r"test accuracy (\d\.\d+) on 2000 people", text)[1])
    assert accuracy >= 0.82, text[-2000:]

    low, low_precision = anchor("<=50K", text)
    assert low_precision >= 0.9 and 1 <= len(low) <= 3, (low, low_precision)
    high, high_precision = anchor(">50K", text)
    # The book's point: the minority class needs a longer rule, and it still holds less often.
    assert len(high) > len(low) and high_precision < low_precision, (high, high_precision)

    assert "served probabilities equal in-process: True" in text, text[-2000:]
    served = list_after("served labels:", text)
    assert served == list_after("in-process labels:", text) and len(served) == 2
    assert "served explanation equals in-process: True" in text, text[-2000:]
    # The notebook started income_census.serve itself and stopped it by its process id.
    pid = int(re.search(r"process (\d+) stopped: by SIGTERM", text)[1])
    assert not procs.alive(pid)
    assert not notebooks.warnings_in(executed)


def test_walkthrough_needs_nothing_but_the_case_folder() -> None:
    """A reader who copied the folder alone runs it: the test harness is not imported."""
    source = (CASE_DIR / "notebooks/walkthrough.py").read_text()
    assert not re.search(r"^\s*(from|import) tests\b", source, re.M)


def test_kubeflow_notebook_runs_every_step_locally(tmp_path: Path) -> None:
    executed = notebooks.execute(
        CASE_DIR / "notebooks/kubeflow.py",
        parameters={"cluster": False, "work_dir": str(tmp_path / "work"), "timeout": 900},
        cwd=REPO_ROOT,
        output=tmp_path / "kubeflow.ipynb",
        timeout=1200,
    )
    text, images = notebooks.outputs(executed)
    # The TrainJob the SDK objects describe, run by the harness on two nodes.
    assert "TrainJob income-xgboost on xgboost-distributed: 2 nodes" in text, text[-3000:]
    assert "TrainJob income-xgboost: Complete" in text, text[-3000:]
    assert "Best Trial Name:" in text and "Trials Succeeded:           3" in text, text[-3000:]
    tasks = text.split("tasks run:")[1].splitlines()[0]
    assert "explain" in tasks and "deploy" in tasks, tasks
    assert images >= 1  # the trials' scatter plot
    # The explain step's Markdown report, shown as Markdown, with a row for each class.
    assert "# Anchors: why the model decided" in text, text[-3000:]
    assert "| <=50K |" in text and "| >50K |" in text
    served = list_after("served labels:", text)
    assert served == list_after("in-process labels:", text) and len(served) == 2
    assert "served probabilities equal in-process: True" in text, text[-2000:]
    assert re.search(r"the book's person: <=50K because \S", text), text[-2000:]

"""Both notebooks execute top to bottom on the noisy phantom, and show what they promise.

papermill runs the jupytext sources with their parameters overridden; the executed notebooks are
then read back for the plots, the printed answers and the HTML a reader would look at. The
walkthrough takes about 15 s here; the kubeflow notebook about 50 s, most of it two Spark runs
(the SparkApplication and the pipeline's SVD step).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness import notebooks

CASE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE_DIR.parent

pytestmark = pytest.mark.notebook


def decibels(label: str, text: str) -> float:
    match = re.search(rf"{re.escape(label)}\s*(-?\d+\.\d+) dB", text)
    assert match, f"{label!r} not printed"
    return float(match[1])


def test_walkthrough_reads_denoises_measures_and_serves(tmp_path: Path) -> None:
    executed = notebooks.execute(
        CASE_DIR / "notebooks/walkthrough.py",
        parameters={"work_dir": str(tmp_path / "work")},
        cwd=REPO_ROOT,
        output=tmp_path / "walkthrough.ipynb",
    )
    text, images = notebooks.outputs(executed)
    # truth and noisy slices, slice correlations, the spectrum, slices at each percentage,
    # the PSNR curve, the served slice
    assert images >= 6, text[-2000:]
    assert "48 DICOM files -> volume (48, 64, 64) in HU" in text, text[:2000]
    assert "A: (4096, 48) (pixels x slices)" in text
    # The randomized SVD is NumPy's exact one where k + p covers every slice.
    error = float(re.search(r"largest relative error against numpy (\S+)", text)[1])
    assert error < 1e-9, text[-2000:]

    noisy = decibels("noisy input: PSNR", text)
    best = decibels("PSNR at 5 %:", text)
    assert best > noisy + 2.5, (best, noisy)  # case.toml's floor on psnr_gain
    # train.py, the script the Katib trials run, computes the same.
    script, here = re.search(
        r"train\.py: psnr at 5 % (\S+) dB; this notebook: (\S+) dB", text
    ).groups()
    assert script == here, (script, here)

    assert "served equals in-process: True" in text, text[-2000:]
    assert "'kept': 18" in text  # the server says how many singular values it kept at 5 %
    sent, served = (
        float(x) for x in re.search(r"(\S+) dB as sent, (\S+) dB as served", text).groups()
    )
    assert served > sent, (sent, served)


def test_kubeflow_notebook_runs_every_step_locally(tmp_path: Path) -> None:
    executed = notebooks.execute(
        CASE_DIR / "notebooks/kubeflow.py",
        parameters={"cluster": False, "work_dir": str(tmp_path / "work"), "timeout": 900},
        cwd=REPO_ROOT,
        output=tmp_path / "kubeflow.ipynb",
        timeout=1200,
    )
    text, images = notebooks.outputs(executed)
    assert "SparkApplication ct-scans-svd: COMPLETED" in text, text[-3000:]
    assert "spark master=local[2] partitions=2" in text  # two executors of one core
    assert "Best Trial Name:" in text and "Trials Succeeded:           3" in text, text[-3000:]
    assert images >= 1  # the trials' scatter plot
    tasks = text.split("tasks run:")[1].splitlines()[0]
    for task in ("load-scan", "dicom-to-matrix", "svd-on-spark", "visualize"):
        assert task in tasks, tasks
    step = re.search(r"svd-on-spark: psnr (\S+) dB \(noisy (\S+) dB\)", text)
    assert step and float(step[1]) > float(step[2]) + 2.5, text[-3000:]
    # The visualize step's HTML report, shown as HTML: the slices and the PSNR curve.
    assert "<h2>Denoised CT slices</h2>" in text
    assert text.count("<img src='data:image/png;base64,") >= 2
    assert "served equals in-process: True" in text, text[-2000:]

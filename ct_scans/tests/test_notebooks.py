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

from tests.harness import katib, manifests, notebooks, procs

CASE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE_DIR.parent
KUBEFLOW = CASE_DIR / "notebooks/kubeflow.py"

pytestmark = pytest.mark.notebook

# A Trial of the Experiment as Katib 0.19 stores it (pkg/apis/controller/trials/v1beta1 and
# common/v1beta1: parameter values and metric values are strings), trimmed.
KATIB_TRIAL = {
    "apiVersion": "kubeflow.org/v1beta1",
    "kind": "Trial",
    "metadata": {
        "name": "ct-scans-psnr-5n7x2kqd",
        "labels": {"katib.kubeflow.org/experiment": "ct-scans-psnr"},
    },
    "spec": {
        "objective": {
            "type": "maximize",
            "goal": 40.0,
            "objectiveMetricName": "psnr",
            "additionalMetricNames": ["ssim", "psnr_gain"],
            "metricStrategies": [
                {"name": "psnr", "value": "max"},
                {"name": "ssim", "value": "max"},
                {"name": "psnr_gain", "value": "max"},
            ],
        },
        "parameterAssignments": [
            {"name": "rank", "value": "21"},
            {"name": "percent", "value": "2.4"},
        ],
    },
    "status": {
        "conditions": [
            {"type": "Created", "status": "True"},
            {"type": "Running", "status": "False"},
            {"type": "Succeeded", "status": "True"},
        ],
        "observation": {
            "metrics": [
                {"name": "psnr", "latest": "26.8", "min": "26.8", "max": "26.8"},
                {"name": "ssim", "latest": "0.71", "min": "0.71", "max": "0.71"},
                {"name": "psnr_gain", "latest": "3.1", "min": "3.1", "max": "3.1"},
            ]
        },
    },
}


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
    # The notebook started ct_scans.serve itself and stopped it by its process id.
    pid = int(re.search(r"process (\d+) stopped: by SIGTERM", text)[1])
    assert not procs.alive(pid)
    assert not notebooks.warnings_in(executed)


def test_walkthrough_needs_nothing_but_the_case_folder() -> None:
    """A reader who copied the folder alone runs it: the test harness is not imported."""
    source = (CASE_DIR / "notebooks/walkthrough.py").read_text()
    assert not re.search(r"^\s*(from|import) tests\b", source, re.M)


def test_kubeflow_notebook_runs_every_step_locally(tmp_path: Path) -> None:
    executed = notebooks.execute(
        KUBEFLOW,
        parameters={"cluster": False, "work_dir": str(tmp_path / "work"), "timeout": 900},
        cwd=REPO_ROOT,
        output=tmp_path / "kubeflow.ipynb",
        timeout=1200,
    )
    text, images = notebooks.outputs(executed)
    assert "SparkApplication ct-scans-svd: COMPLETED" in text, text[-3000:]
    assert "spark master=local[2] partitions=2" in text  # two executors of one core
    assert "Best Trial Name:" in text and "Trials Succeeded:           3" in text, text[-3000:]
    # The table the plot reads came out of trial_table, the cluster branch's code.
    table = notebooks.cell_output(executed, "trials = trial_table(katib_trials, experiment_doc)")
    html = table["text/html"]
    for column in ("trial", "status", "rank", "percent", "psnr", "ssim", "psnr_gain"):
        assert f"<th>{column}</th>" in html, html
    assert html.count("<td>Succeeded</td>") == 3, html
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
    assert "Warning" not in notebooks.stderr_of(executed), notebooks.stderr_of(executed)


def test_trial_table_reads_katib_trials_as_the_cluster_returns_them() -> None:
    cells = notebooks.run_cells(KUBEFLOW, {}, through="def trial_table(", only=True)
    trial_table = cells["trial_table"]
    experiment = manifests.load(CASE_DIR / "manifests/katib-experiment.yaml")[0]
    failed = {
        "metadata": {"name": "ct-scans-psnr-q8wz4bmd"},
        "spec": {"parameterAssignments": [{"name": "rank", "value": "9"}]},
        "status": {"conditions": [{"type": "Failed", "status": "True"}]},
    }

    table = trial_table([KATIB_TRIAL, failed], experiment)

    assert list(table.columns) == [
        "trial",
        "status",
        "rank",
        "percent",
        "psnr",
        "ssim",
        "psnr_gain",
    ]
    first = table.iloc[0]
    assert (first["trial"], first["status"]) == ("ct-scans-psnr-5n7x2kqd", "Succeeded")
    assert (first["rank"], first["percent"]) == (21, 2.4)  # int and double, as declared
    assert (first["psnr"], first["ssim"], first["psnr_gain"]) == (26.8, 0.71, 3.1)
    assert table.iloc[1]["status"] == "Failed" and table.iloc[1].isna()["psnr"]


def test_local_trials_reach_the_table_as_katib_would_report_them() -> None:
    cells = notebooks.run_cells(KUBEFLOW, {}, through="def trial_table(", only=True)
    trial_table = cells["trial_table"]
    as_katib_trial = cells["as_katib_trial"]  # defined in the same cell
    experiment = manifests.load(CASE_DIR / "manifests/katib-experiment.yaml")[0]
    trial = katib.Trial(
        name="ct-scans-psnr-b4qz7wxk",
        parameters={"rank": "40", "percent": "5.0"},
        status="Succeeded",
        metrics={
            "psnr": {"latest": 26.7, "min": 26.7, "max": 26.7},
            "psnr_gain": {"latest": 3.0, "min": 3.0, "max": 3.0},
        },
        objective=26.7,
    )
    row = trial_table([as_katib_trial(trial)], experiment).iloc[0]
    assert row["psnr"] == trial.objective and row["psnr_gain"] == 3.0
    assert (row["rank"], row["percent"]) == (40, 5.0)

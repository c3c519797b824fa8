"""The Katib Experiment in smoke form, through the harness: 3 trials on the phantom.

The overrides come from case.toml, so this runs what `python -m tests.harness run --smoke
ct_scans/manifests/katib-experiment.yaml` runs: the manifest's trial Job, its rank and
percentage drawn by Optuna's GP sampler (Katib's bayesianoptimization), PSNR read from stdout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_scans import train
from tests.harness import cases, katib, manifests

CASE = cases.load_case(Path(__file__).resolve().parents[1])
EXPERIMENT = CASE.path / "manifests/katib-experiment.yaml"
CLUSTER = manifests.load(EXPERIMENT)[0]  # the Experiment as a cluster gets it


@pytest.fixture(scope="module")
def smoke_experiment(tmp_path_factory: pytest.TempPathFactory) -> katib.ExperimentResult:
    return katib.run_smoke(CASE, workdir=tmp_path_factory.mktemp("katib"), timeout=600)


def test_the_smoke_form_is_the_cluster_experiment_with_fewer_trials() -> None:
    # The trials run the phantom on the cluster too (the only scan with a truth to measure PSNR
    # against), so case.toml changes only how many trials run and how many at once.
    assert sorted(CASE.overrides_for(EXPERIMENT)) == [
        "spec.maxTrialCount",
        "spec.parallelTrialCount",
    ]
    katib.plan_experiment(CLUSTER)  # bayesianoptimization, as the harness runs Katib's


def test_smoke_experiment_reports_the_best_trial(smoke_experiment: katib.ExperimentResult) -> None:
    result = smoke_experiment
    assert result.succeeded, result.describe()
    assert len(result.trials) == 3 and result.count("Succeeded") == 3, result.format_trials()
    scores = [t.objective for t in result.trials]
    # The goal is out of reach for the phantom's noise, so max trials ends it.
    assert max(scores) < CLUSTER["spec"]["objective"]["goal"], scores
    assert result.reason == "ExperimentMaxTrialsReached", result.describe()
    assert result.optimal_trial.objective == max(scores)
    # Every trial got a value of the cluster's search space for every parameter, and denoised
    # into a real picture of the phantom: far above a flat image's 11.5 dB.
    assert katib.outside_search_space(CLUSTER, result.trials) == []
    assert min(scores) >= CASE.floor("psnr", "katib"), result.format_trials()


def test_the_optimal_trial_is_what_train_py_gives_for_its_parameters(
    smoke_experiment: katib.ExperimentResult, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A user takes the best trial's rank and percentage and trains with them: the same PSNR
    (the SVD's projection is seeded), so each trial parameter reached the flag it is meant for."""
    best = smoke_experiment.optimal_trial
    assert best is not None
    metrics = train.main(
        [
            "--sample",
            f"--data-dir={tmp_path / 'data'}",
            f"--model-dir={tmp_path / 'model'}",
            f"--rank={best.parameters['rank']}",
            f"--percent={best.parameters['percent']}",
        ]
    )
    capsys.readouterr()  # its metric lines
    assert metrics["psnr"] == pytest.approx(best.objective, abs=1e-6), (best.parameters, metrics)
    assert metrics["ssim"] == pytest.approx(best.metrics["ssim"]["max"], abs=1e-6)

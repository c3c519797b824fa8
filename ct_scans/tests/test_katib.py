"""The Katib Experiment in smoke form, through the harness: 3 trials on the phantom.

The overrides come from case.toml, so this runs what `python -m tests.harness run --smoke
ct_scans/manifests/katib-experiment.yaml` runs: the manifest's trial Job, its rank and
percentage drawn by Optuna's GP sampler (Katib's bayesianoptimization), PSNR read from stdout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import cases, katib, manifests

CASE_DIR = Path(__file__).resolve().parents[1]
EXPERIMENT = CASE_DIR / "manifests/katib-experiment.yaml"


@pytest.fixture(scope="module")
def smoke_experiment(tmp_path_factory: pytest.TempPathFactory) -> katib.ExperimentResult:
    case = cases.load_case(CASE_DIR)
    doc = manifests.apply_overrides(manifests.load(EXPERIMENT)[0], case.overrides_for(EXPERIMENT))
    assert manifests.validate(doc) == []
    result = katib.run_experiment(doc, workdir=tmp_path_factory.mktemp("katib"), timeout=600)
    print(result.format_trials())
    return result


def test_the_manifest_tunes_rank_and_percentage_for_psnr() -> None:
    spec = manifests.load(EXPERIMENT)[0]["spec"]
    assert spec["objective"]["objectiveMetricName"] == "psnr"
    assert spec["objective"]["type"] == "maximize"
    assert {p["name"] for p in spec["parameters"]} == {"rank", "percent"}
    args = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--sample" in args  # the phantom: the only scan with a truth to measure PSNR against


def test_smoke_experiment_reports_the_best_trial(smoke_experiment: katib.ExperimentResult) -> None:
    result = smoke_experiment
    assert result.succeeded and result.reason == "ExperimentMaxTrialsReached", result.describe()
    assert len(result.trials) == 3 and result.count("Succeeded") == 3, result.format_trials()
    scores = [t.objective for t in result.trials]
    assert result.optimal_trial.objective == max(scores)
    for t in result.trials:
        assert 5 <= int(t.parameters["rank"]) <= 48
        assert 0.5 <= float(t.parameters["percent"]) <= 30
        assert 10.0 < t.objective < 40.0, t.objective  # a real PSNR in dB, below the goal

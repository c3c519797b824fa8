"""The Katib Experiment in smoke form, through the harness: 3 TPE trials on the sample.

The overrides come from case.toml, so this runs what `make demo` and `python -m tests.harness
run --smoke income_census/manifests/katib-experiment.yaml` run: the manifest's own trial Job,
its parameters drawn by Optuna's TPE sampler, metrics read from the trial's stdout.
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
    print(result.describe())
    return result


def test_the_manifest_tunes_xgboost_with_tpe_for_test_accuracy() -> None:
    spec = manifests.load(EXPERIMENT)[0]["spec"]
    assert spec["algorithm"]["algorithmName"] == "tpe"
    assert spec["objective"]["type"] == "maximize"
    assert spec["objective"]["objectiveMetricName"] == "test_accuracy"
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    assert {p["name"] for p in spec["parameters"]} == {
        "n_estimators",
        "max_depth",
        "learning_rate",
        "min_child_weight",
    }
    trial = spec["trialTemplate"]["trialSpec"]
    assert (trial["apiVersion"], trial["kind"]) == ("batch/v1", "Job")
    assert "--model=xgboost" in trial["spec"]["template"]["spec"]["containers"][0]["args"]


def test_smoke_experiment_reports_the_best_trial(smoke_experiment: katib.ExperimentResult) -> None:
    result = smoke_experiment
    assert result.succeeded, result.describe()
    assert result.reason == "ExperimentMaxTrialsReached", result.describe()  # 0.90 is out of reach
    assert len(result.trials) == 3 and result.count("Succeeded") == 3, result.format_trials()
    scores = {t.name: t.objective for t in result.trials}
    best = result.optimal_trial
    assert best is not None and best.objective == max(scores.values()), scores
    # Every trial is a real model: well above the 0.7775 of always answering <=50K.
    assert min(scores.values()) >= 0.82, scores
    for t in result.trials:
        assert 50 <= int(t.parameters["n_estimators"]) <= 400
        assert 0.02 <= float(t.parameters["learning_rate"]) <= 0.3

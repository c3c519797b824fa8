"""The Katib Experiment in smoke form, through the harness: 3 TPE trials on the sample.

The overrides come from case.toml, so this runs what `make demo` and `python -m tests.harness
run --smoke income_census/manifests/katib-experiment.yaml` run: the manifest's own trial Job,
its parameters drawn by Optuna's TPE sampler, metrics read from the trial's stdout.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from income_census.tests.conftest import train_cli
from tests.harness import cases, katib, manifests

CASE = cases.load_case(Path(__file__).resolve().parents[1])
EXPERIMENT = CASE.path / "manifests/katib-experiment.yaml"
CLUSTER = manifests.load(EXPERIMENT)[0]  # the Experiment as a cluster gets it


@pytest.fixture(scope="module")
def smoke_experiment(tmp_path_factory: pytest.TempPathFactory) -> katib.ExperimentResult:
    return katib.run_smoke(CASE, workdir=tmp_path_factory.mktemp("katib"), timeout=600)


def test_the_smoke_form_searches_what_the_cluster_searches() -> None:
    # case.toml shrinks the trial count and starts TPE's model after 2 random trials instead of
    # 4, so the third smoke trial is TPE's own suggestion; what is searched and how it is judged
    # stay the cluster's.
    overrides = CASE.overrides_for(EXPERIMENT)
    searched = ("spec.objective", "spec.parameters", "spec.metricsCollectorSpec")
    assert [key for key in overrides if key.startswith(searched)] == []
    assert "spec.algorithm.algorithmName" not in overrides
    katib.plan_experiment(CLUSTER)  # TPE and its settings, as the harness runs Katib's


def test_smoke_experiment_reports_the_best_trial(smoke_experiment: katib.ExperimentResult) -> None:
    result = smoke_experiment
    assert result.succeeded, result.describe()
    assert len(result.trials) == 3 and result.count("Succeeded") == 3, result.format_trials()
    scores = {t.name: t.objective for t in result.trials}
    # The goal is above what the Adult data allows, so max trials ends it.
    assert max(scores.values()) < CLUSTER["spec"]["objective"]["goal"], scores
    assert result.reason == "ExperimentMaxTrialsReached", result.describe()
    best = result.optimal_trial
    assert best is not None and best.objective == max(scores.values()), scores
    # Every trial is a real model: well above the 0.7775 of always answering <=50K.
    floor = CASE.floor("test_accuracy", "katib")
    assert min(scores.values()) >= floor, scores
    # Every trial got a value of the cluster's search space for every parameter.
    assert katib.outside_search_space(CLUSTER, result.trials) == []
    # DESIGN.md: a single-process trial is a plain batch/v1 Job, which Katib runs on any cluster.
    assert {t.job.kind for t in result.trials} == {"Job"}


def test_the_optimal_trial_is_what_train_py_gives_for_its_parameters(
    smoke_experiment: katib.ExperimentResult, tmp_path: Path
) -> None:
    """A user takes the best trial's parameters and trains with them: the same model (XGBoost on
    the sample samples nothing), so each trial parameter reached the flag it is meant for."""
    best = smoke_experiment.optimal_trial
    assert best is not None
    flags = {
        "n_estimators": "--n-estimators",
        "max_depth": "--max-depth",
        "learning_rate": "--learning-rate",
        "min_child_weight": "--min-samples-leaf",
    }
    args = [f"{flags[name]}={value}" for name, value in best.parameters.items()]
    train_cli(tmp_path, "--model=xgboost", "--n-jobs=1", *args)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(best.objective), (best.parameters, metrics)
    assert metrics["test_auc"] == pytest.approx(best.metrics["test_auc"]["max"])

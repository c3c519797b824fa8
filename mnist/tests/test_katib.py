"""The Katib Experiment in smoke form, through the harness: 3 trials, 1 epoch, the sample.

The overrides come from case.toml, so this runs what `make demo` and `python -m tests.harness
run --smoke mnist/manifests/katib-experiment.yaml` run: the manifest's own trial TrainJob on the
case's tensorflow-distributed runtime, with its trial parameters filled in by a random sampler,
metrics read from node 0's stdout (worker 0, the chief).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import cases, katib, manifests, trainer

CASE = cases.load_case(Path(__file__).resolve().parents[1])
EXPERIMENT = CASE.path / "manifests/katib-experiment.yaml"
CLUSTER = manifests.load(EXPERIMENT)[0]  # the Experiment as a cluster gets it


@pytest.fixture(scope="module")
def smoke_experiment(tmp_path_factory: pytest.TempPathFactory) -> katib.ExperimentResult:
    return katib.run_smoke(CASE, workdir=tmp_path_factory.mktemp("katib"), timeout=900)


def test_the_smoke_form_searches_what_the_cluster_searches() -> None:
    # case.toml shrinks how many trials run and how long each trains, never what is searched or
    # how it is judged: the smoke run tests the cluster's search.
    searched = ("spec.objective", "spec.algorithm", "spec.parameters", "spec.metricsCollectorSpec")
    changed = [key for key in CASE.overrides_for(EXPERIMENT) if key.startswith(searched)]
    assert changed == [], changed
    katib.plan_experiment(CLUSTER)  # an algorithm and settings the harness runs as Katib would


def test_katib_collects_metrics_from_the_container_the_runtime_runs() -> None:
    # Katib's webhook wraps primaryContainerName and its sidecar reads that container's output;
    # a name the runtime's pods do not have gets the trial's pod refused. The harness refuses it
    # too, but only when a trial runs: this says so before any does.
    template = CLUSTER["spec"]["trialTemplate"]
    trial = template["trialSpec"]
    runtime = trainer.resolve(trial, trainer.runtimes_beside(EXPERIMENT))
    assert trainer.node(trial, runtime).container["name"] == template["primaryContainerName"]


def test_smoke_experiment_runs_three_trials(smoke_experiment: katib.ExperimentResult) -> None:
    result = smoke_experiment
    assert result.succeeded, result.describe()
    assert len(result.trials) == 3
    assert result.count("Succeeded") == 3, result.format_trials()
    # The goal is out of reach in one epoch on the sample, so max trials ends it.
    goal = CLUSTER["spec"]["objective"]["goal"]
    assert all(t.objective < goal for t in result.trials), result.format_trials()
    assert result.reason == "ExperimentMaxTrialsReached", result.describe()
    # Every trial got a value of the cluster's search space for every parameter ...
    assert katib.outside_search_space(CLUSTER, result.trials) == []
    # ... and printed every metric the Experiment collects.
    objective = CLUSTER["spec"]["objective"]
    names = {objective["objectiveMetricName"], *objective["additionalMetricNames"]}
    for t in result.trials:
        assert names <= set(t.metrics), t.metrics
        # DESIGN.md: distributed trials are Trainer v2 TrainJobs (Katib 0.19 runs them), not the
        # v1 TFJob Kubeflow no longer installs.
        assert t.job is not None and t.job.kind == "TrainJob" and t.job.reason == "Complete"


def test_optimal_trial_is_the_best_of_its_trials(smoke_experiment: katib.ExperimentResult) -> None:
    result = smoke_experiment
    best = result.optimal_trial
    assert best is not None, result.describe()
    objectives = [t.objective for t in result.trials]
    assert best.objective == max(objectives), result.format_trials()
    # The objective is the max val_accuracy over the trial's epochs, as Katib's default strategy.
    assert best.objective == best.metrics["val_accuracy"]["max"]
    # One epoch on 3,600 digits: a real CNN is far above chance (0.10) whatever the optimizer.
    assert best.objective >= CASE.floor("val_accuracy", "katib"), result.format_trials()
    assert f"Best Trial Name:  {best.name}" in result.describe()

"""The Katib Experiment in smoke form, through the harness: 3 trials, one node each, the sample.

The overrides come from case.toml, so this runs what `make demo` and `python -m tests.harness
run --smoke imdb_sentiment/manifests/katib-experiment.yaml` run: the manifest's own trial
TrainJob on the case's TensorFlow runtime, with its trial parameters (learning rate, epochs,
global batch size) filled in by a Gaussian-process sampler as Katib's `bayesianoptimization`
suggests them, metrics read from node 0's stdout (worker 0, the chief).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness import cases, katib, manifests, trainer

CASE = cases.load_case(Path(__file__).resolve().parents[1])
EXPERIMENT = CASE.path / "manifests/katib-experiment.yaml"
CLUSTER = manifests.load(EXPERIMENT)[0]  # the Experiment as a cluster gets it


@pytest.fixture(scope="module")
def smoke_experiment(tmp_path_factory: pytest.TempPathFactory) -> katib.ExperimentResult:
    return katib.run_smoke(CASE, workdir=tmp_path_factory.mktemp("katib"), timeout=900)


# Copied from mnist.tests.test_katib.test_the_smoke_form_searches_what_the_cluster_searches
def test_the_smoke_form_searches_what_the_cluster_searches() -> None:
    # case.toml shrinks how many trials run and how long each trains, never what is searched or
    # how it is judged: the smoke run tests the cluster's search.
    searched = ("spec.objective", "spec.algorithm", "spec.parameters", "spec.metricsCollectorSpec")
    changed = [key for key in CASE.overrides_for(EXPERIMENT) if key.startswith(searched)]
    assert changed == [], changed
    katib.plan_experiment(CLUSTER)  # an algorithm and settings the harness runs as Katib would


# Copied from mnist.tests.test_katib.test_katib_collects_metrics_from_the_container_the_runtime_runs
def test_katib_collects_metrics_from_the_container_the_runtime_runs() -> None:
    # Katib's webhook wraps primaryContainerName and its sidecar reads that container's output;
    # a name the runtime's pods do not have gets the trial's pod refused. The harness refuses it
    # too, but only when a trial runs: this says so before any does.
    template = CLUSTER["spec"]["trialTemplate"]
    trial = template["trialSpec"]
    runtime = trainer.resolve(trial, trainer.runtimes_beside(EXPERIMENT))
    assert trainer.node(trial, runtime).container["name"] == template["primaryContainerName"]


def test_the_search_is_the_one_the_issue_asks_for() -> None:
    # As the TensorFlow 2 Keras sample for Kubeflow had it: maximise val_accuracy towards a goal
    # by Bayesian optimisation over the learning rate, the epochs and the batch size, read from
    # stdout; every trial a TrainJob.
    spec = CLUSTER["spec"]
    assert spec["objective"]["type"] == "maximize" and spec["objective"]["goal"] > 0.5
    assert spec["objective"]["objectiveMetricName"] == "val_accuracy"
    assert spec["algorithm"]["algorithmName"] == "bayesianoptimization"
    assert {p["name"] for p in spec["parameters"]} == {"learning_rate", "epochs", "batch_size"}
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    assert spec["trialTemplate"]["trialSpec"]["kind"] == "TrainJob"
    # Every global batch the search may pick splits evenly over the trial's nodes.
    nodes = spec["trialTemplate"]["trialSpec"]["spec"]["trainer"]["numNodes"]
    (batch,) = [p for p in spec["parameters"] if p["name"] == "batch_size"]
    assert all(int(b) % nodes == 0 for b in batch["feasibleSpace"]["list"])


def test_smoke_experiment_runs_three_trials(smoke_experiment: katib.ExperimentResult) -> None:
    result = smoke_experiment
    assert result.succeeded, result.describe()
    assert len(result.trials) == 3
    assert result.count("Succeeded") == 3, result.format_trials()
    # The goal is out of reach on the sample, so max trials ends it.
    goal = CLUSTER["spec"]["objective"]["goal"]
    assert all(t.objective < goal for t in result.trials), result.format_trials()
    assert result.reason == "ExperimentMaxTrialsReached", result.describe()
    # Every trial got a value of the cluster's search space for every parameter ...
    assert katib.outside_search_space(CLUSTER, result.trials) == []
    # ... and printed every metric the Experiment collects, once per epoch it was given.
    objective = CLUSTER["spec"]["objective"]
    names = {objective["objectiveMetricName"], *objective["additionalMetricNames"]}
    for t in result.trials:
        assert names <= set(t.metrics), t.metrics
        # DESIGN.md: distributed trials are Trainer v2 TrainJobs (Katib 0.19 runs them), not the
        # v1 TFJob Kubeflow no longer installs.
        assert t.job is not None and t.job.kind == "TrainJob" and t.job.reason == "Complete"
        epochs = int(t.parameters["epochs"])
        # Katib's wrapping sends node 0's output to the metrics file its collector reads.
        log = t.metrics_log.read_text() if t.metrics_log else ""
        assert len(re.findall(r"^epoch=", log, re.M)) == epochs, t.parameters


def test_optimal_trial_is_the_best_of_its_trials(smoke_experiment: katib.ExperimentResult) -> None:
    result = smoke_experiment
    best = result.optimal_trial
    assert best is not None, result.describe()
    objectives = [t.objective for t in result.trials]
    assert best.objective == max(objectives), result.format_trials()
    # The objective is the max val_accuracy over the trial's epochs, as Katib's default strategy.
    assert best.objective == best.metrics["val_accuracy"]["max"]
    # The best of three short trainings on 640 reviews is well above chance (0.50).
    assert best.objective >= CASE.floor("val_accuracy", "katib"), result.format_trials()
    assert f"Best Trial Name:  {best.name}" in result.describe()

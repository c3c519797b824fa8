"""The Katib Experiments in smoke form, through the harness: the TrainJob-trial search (3 trials at
once, one node each) and the legacy TFJob-trial one (1 trial, Chief + Worker), on the sample.

The overrides come from case.toml, so this runs what `python -m tests.harness run --smoke
recommender/manifests/katib-experiment.yaml` runs: the manifest's own trial TrainJob on the
case's TensorFlow runtime, its trial parameters (n_factors, dropout, learning rate) filled in by
Optuna's TPE as Katib's `multivariate-tpe` suggests them, the objective (validation NDCG@10)
read from node 0's output (worker 0, the chief), which Katib's command wrapping sends to its
metrics file. The search must find a model that ranks a
customer's held-out purchase clearly better than the most popular products do on the same
validation split.
"""

from __future__ import annotations

import copy
import os
import re
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from recommender import baselines, data
from recommender.metrics import evaluate
from recommender.train import K, named
from recommender.train_distributed import parse_args
from tests.harness import cases, katib, manifests, trainer

CASE = cases.load_case(Path(__file__).resolve().parents[1])
EXPERIMENT = CASE.path / "manifests/katib-experiment.yaml"
LEGACY = CASE.path / "manifests/legacy-v1/katib-experiment.yaml"
CLUSTER = manifests.load(EXPERIMENT)[0]  # the Experiment as a cluster gets it
LEGACY_CLUSTER = manifests.load(LEGACY)[0]
FLOORS = CASE.floors("katib")
PROGRAM = ["python", "-m", "recommender.train_distributed"]
# What the smoke forms may change in a trial's flags: how much data and how long; never a
# searched flag, the model folder or the checkpoints.
SIZE_FLAGS = ("--sample", "--data-dir=", "--epochs=", "--batch-size=", "--checkpoint-steps=")
SEARCHED = ("spec.objective", "spec.algorithm", "spec.parameters", "spec.metricsCollectorSpec")
# One trial's values, as Katib passes them: strings.
ASSIGNMENT = {"n_factors": "50", "dropout": "0.25", "learning_rate": "0.002"}


@pytest.fixture(scope="module")
def smoke_experiment(tmp_path_factory: pytest.TempPathFactory) -> katib.ExperimentResult:
    return katib.run_smoke(CASE, workdir=tmp_path_factory.mktemp("katib"), timeout=900)


@pytest.fixture(scope="module")
def legacy_experiment(tmp_path_factory: pytest.TempPathFactory) -> katib.ExperimentResult:
    manifest = LEGACY.relative_to(CASE.path)
    return katib.run_smoke(CASE, manifest, workdir=tmp_path_factory.mktemp("tfjob"), timeout=600)


def smoke_form(path: Path) -> dict:
    return manifests.apply_overrides(manifests.load(path)[0], CASE.overrides_for(path))


def trial_containers(trial_spec: Mapping) -> list[dict]:
    """Where a trial's program and flags are: the TrainJob's trainer, or each TFJob replica's
    container (command + args, as one list)."""
    spec = trial_spec["spec"]
    if trial_spec["kind"] == "TrainJob":
        return [spec["trainer"]]
    replicas = spec["tfReplicaSpecs"].values()
    return [r["template"]["spec"]["containers"][0] for r in replicas]


def program(container: Mapping) -> list[str]:
    return [*(container.get("command") or []), *container["args"]]


def without_sizes(doc: Mapping) -> dict:
    """The Experiment less what a smoke form may change: trial counts, nodes, sizes."""
    doc = copy.deepcopy(dict(doc))
    spec = doc["spec"]
    for key in ("maxTrialCount", "parallelTrialCount", "maxFailedTrialCount"):
        spec.pop(key, None)
    job = spec["trialTemplate"]["trialSpec"]
    if job["kind"] == "TrainJob":
        node = job["spec"]["trainer"]
        nodes = node.pop("numNodes")
        # The runtime is told the count in TF_NUM_NODES, which must follow numNodes.
        assert node.pop("env") == [{"name": "TF_NUM_NODES", "value": str(nodes)}]
    for container in trial_containers(job):
        container["args"] = [a for a in container["args"] if not a.startswith(SIZE_FLAGS)]
    return doc


# Copied from mnist.tests.test_katib.test_the_smoke_form_searches_what_the_cluster_searches
def test_the_smoke_form_searches_what_the_cluster_searches() -> None:
    # case.toml shrinks how many trials run and how long each trains, never what is searched or
    # how it is judged: the smoke run tests the cluster's search.
    searched = ("spec.objective", "spec.algorithm", "spec.parameters", "spec.metricsCollectorSpec")
    changed = [key for key in CASE.overrides_for(EXPERIMENT) if key.startswith(searched)]
    assert changed == [], changed
    katib.plan_experiment(CLUSTER)  # an algorithm and settings the harness runs as Katib would


@pytest.mark.parametrize("path", [EXPERIMENT, LEGACY], ids=["trainjob", "tfjob"])
def test_the_smoke_form_is_the_cluster_experiment_but_for_sizes(path: Path) -> None:
    cluster, smoke = manifests.load(path)[0], smoke_form(path)
    assert manifests.validate(smoke) == []
    assert not [key for key in CASE.overrides_for(path) if key.startswith(SEARCHED)]
    assert without_sizes(smoke) == without_sizes(cluster)
    # Smaller: the sample, fewer trials, one node per TrainJob trial; trials still run at once
    # where the cluster's do.
    assert smoke["spec"]["maxTrialCount"] < cluster["spec"]["maxTrialCount"]
    for container in trial_containers(smoke["spec"]["trialTemplate"]["trialSpec"]):
        assert "--sample" in container["args"]
    if path == EXPERIMENT:
        assert smoke["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"]["numNodes"] == 1
        assert smoke["spec"]["parallelTrialCount"] == smoke["spec"]["maxTrialCount"] > 1


@pytest.mark.parametrize("path", [EXPERIMENT, LEGACY], ids=["trainjob", "tfjob"])
def test_the_trial_counts_are_ones_katib_accepts(path: Path) -> None:
    # Katib 0.19's Experiment webhook (pkg/webhook/v1beta1/experiment/validator/validator.go)
    # refuses parallelTrialCount or maxFailedTrialCount above maxTrialCount; the harness would
    # run either, so a smoke form applied to a cluster would be refused there first.
    for doc in (manifests.load(path)[0], smoke_form(path)):
        spec = doc["spec"]
        assert 0 < spec["parallelTrialCount"] <= spec["maxTrialCount"], spec
        assert 0 <= spec["maxFailedTrialCount"] <= spec["maxTrialCount"], spec


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
    # n_factors, dropout and the learning rate; the objective NDCG@10 on validation, read from
    # stdout; every trial a TrainJob (the legacy Component's, a TFJob).
    spec = CLUSTER["spec"]
    assert spec["objective"]["type"] == "maximize"
    assert spec["objective"]["objectiveMetricName"] == "val_ndcg_at_10"
    assert {p["name"] for p in spec["parameters"]} == set(ASSIGNMENT)
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    assert spec["trialTemplate"]["trialSpec"]["kind"] == "TrainJob"
    # The book's model (50 factors) and the trainer's defaults lie inside the space.
    defaults = parse_args([])
    trial = katib.Trial(
        name="defaults",
        parameters={
            "n_factors": str(defaults.n_factors),
            "dropout": str(defaults.dropout),
            "learning_rate": str(defaults.learning_rate),
        },
    )
    assert defaults.n_factors == 50
    assert katib.outside_search_space(CLUSTER, [trial]) == []


def test_the_legacy_experiment_searches_the_same_with_tfjob_trials() -> None:
    default, legacy = CLUSTER["spec"], LEGACY_CLUSTER["spec"]
    for key in (
        "objective",
        "algorithm",
        "parameters",
        "metricsCollectorSpec",
        "parallelTrialCount",
        "maxTrialCount",
        "maxFailedTrialCount",
    ):
        assert legacy[key] == default[key], key
    references = [
        {(p["name"], p["reference"]) for p in spec["trialTemplate"]["trialParameters"]}
        for spec in (default, legacy)
    ]
    assert references[0] == references[1]
    job = legacy["trialTemplate"]["trialSpec"]
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "TFJob")
    assert set(job["spec"]["tfReplicaSpecs"]) == {"Chief", "Worker"}
    # Katib reads the chief (job-role master): the container of the name the operator gives
    # TF_CONFIG, running the TrainJob trial's program with its flags.
    (trainjob,) = trial_containers(default["trialTemplate"]["trialSpec"])
    for container in trial_containers(job):
        assert container["name"] == legacy["trialTemplate"]["primaryContainerName"]
        assert program(container) == trainjob["args"]
    assert LEGACY_CLUSTER["metadata"]["name"] != CLUSTER["metadata"]["name"]


@pytest.mark.parametrize("path", [EXPERIMENT, LEGACY], ids=["trainjob", "tfjob"])
def test_each_searched_value_reaches_the_trainer_as_its_flag(path: Path) -> None:
    plan = katib.plan_experiment(manifests.load(path)[0])
    rendered = katib.render_trial_spec(plan, ASSIGNMENT, f"{plan.name}-b2c4d6f8")
    for container in trial_containers(rendered):
        argv = program(container)
        assert argv[:3] == PROGRAM
        args = parse_args(argv[3:])  # the trainer's own parser: flags it knows, values it takes
        assert args.n_factors == int(ASSIGNMENT["n_factors"])
        assert args.dropout == float(ASSIGNMENT["dropout"])
        assert args.learning_rate == float(ASSIGNMENT["learning_rate"])
        # Each trial checkpoints into its own folder on the shared volume.
        assert args.checkpoint_dir.name == f"{plan.name}-b2c4d6f8"


# --- Katib's metrics collector on the trial's primary container ---------------------------------
# For the StdOut collector Katib 0.19's pod webhook rewrites the primary container's command
# (pkg/webhook/v1beta1/pod/utils.go, wrapWorkerContainer): command and args joined with spaces,
# unquoted, into one `sh -c` line that sends stdout and stderr to /var/log/katib/metrics.log and
# then marks the run completed; a leading `sh -c` or `bash -c` of the container's own is kept as
# the shell. The harness's Katib runs every trial so (katib.katib_command; the smoke runs below
# go through it); these run that line for one trial of each Experiment as its pod would, with a
# stand-in `python` that prints one metric, so a broken entry point fails in a second.


def run_as_katib_would(argv: list[str], env: Mapping[str, str], folder: Path) -> str:
    """The wrapped command's metrics log; fails unless it printed the metric and was marked done."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "python"
    stand_in.write_text('#!/bin/sh\necho "argv: $*"\necho val_ndcg_at_10=0.5\n')
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IEXEC)
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    wrapped = katib.katib_command(argv, "StdOut", str(folder / "metrics.log"))
    run = subprocess.run(wrapped, env=env, capture_output=True, text=True, timeout=30)
    log = (folder / "metrics.log").read_text() if (folder / "metrics.log").exists() else ""
    assert run.returncode == 0, (run.returncode, log[-2000:], run.stderr[-2000:])
    assert [p.read_text() for p in folder.glob("*.pid")] == ["completed\n"]
    return log


def test_the_tfjob_trial_runs_under_katibs_metrics_collector(tmp_path: Path) -> None:
    plan = katib.plan_experiment(LEGACY_CLUSTER)
    rendered = katib.render_trial_spec(plan, ASSIGNMENT, "recommender-tpe-tfjob-b2c4d6f8")
    chief = rendered["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]
    log = run_as_katib_would(program(chief), {}, tmp_path)
    assert f"argv: {' '.join(program(chief)[1:])}\n" in log
    assert katib.parse_text_metrics(log, [plan.objective_metric]) == [("val_ndcg_at_10", 0.5)]


def test_the_trainjob_trial_runs_under_katibs_metrics_collector(tmp_path: Path) -> None:
    plan = katib.plan_experiment(CLUSTER)
    rendered = katib.render_trial_spec(plan, ASSIGNMENT, "recommender-tpe-b2c4d6f8")
    runtime = trainer.resolve(rendered, trainer.runtimes_beside(EXPERIMENT))
    node = trainer.node(rendered, runtime).container  # the pod's container, as JobSet gets it
    env = {e["name"]: e["value"] for e in node["env"] if "value" in e}
    env |= {"JOB_COMPLETION_INDEX": "0", "JOBSET_NAME": "recommender-tpe-b2c4d6f8"}
    log = run_as_katib_would(program(node), env, tmp_path)
    assert f"argv: {' '.join(rendered['spec']['trainer']['args'][1:])}\n" in log
    assert katib.parse_text_metrics(log, [plan.objective_metric]) == [("val_ndcg_at_10", 0.5)]


# --- the smoke runs -----------------------------------------------------------------------------


def popularity_on_validation() -> dict[str, float]:
    """What the most popular products score on the trials' validation split (the sample, split
    by customer with the trainer's default seed), by the same full ranking."""
    fit, val, _ = data.split_by_user(data.load_sample(), parse_args([]).seed)
    return named("val", evaluate(baselines.popularity(fit), fit, val, K))


def test_smoke_experiment_runs_three_trials_at_once(
    smoke_experiment: katib.ExperimentResult,
) -> None:
    result = smoke_experiment
    assert result.succeeded, result.describe()
    assert len(result.trials) == 3
    assert result.count("Succeeded") == 3, result.format_trials()
    # No goal: max trials ends it.
    assert result.reason == "ExperimentMaxTrialsReached", result.describe()
    # The three ran at once: each was created before the first of them had finished.
    first_end = min(t.created + t.seconds for t in result.trials)
    assert all(t.created < first_end for t in result.trials), result.format_trials()
    # Every trial got a value of the cluster's search space for every parameter ...
    assert katib.outside_search_space(CLUSTER, result.trials) == []
    # ... and printed every metric the Experiment collects, after every epoch it was given.
    objective = CLUSTER["spec"]["objective"]
    names = {objective["objectiveMetricName"], *objective["additionalMetricNames"]}
    smoke_args = smoke_form(EXPERIMENT)["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"]
    epochs = int(next(a for a in smoke_args["args"] if a.startswith("--epochs=")).split("=")[1])
    for t in result.trials:
        assert names <= set(t.metrics), t.metrics
        # DESIGN.md: distributed trials are Trainer v2 TrainJobs (Katib 0.19 runs them), not the
        # v1 TFJob Kubeflow no longer installs.
        assert t.job is not None and t.job.kind == "TrainJob" and t.job.reason == "Complete"
        # Katib wrapped node 0: the runtime's script ran in Katib's shell (its line before the
        # program's in the pod's log), the program's output went to the metrics file.
        node = t.job.replica("Node", 0).log()
        assert "tensorflow-distributed: node 0 of 1" in node and "epoch=" not in node
        assert t.metrics_log is not None, t.message
        log = t.metrics_log.read_text()
        assert len(re.findall(r"^epoch=", log, re.M)) == epochs, t.parameters


def test_optimal_trial_ranks_clearly_better_than_popularity(
    smoke_experiment: katib.ExperimentResult,
) -> None:
    result = smoke_experiment
    best = result.optimal_trial
    assert best is not None, result.describe()
    assert best.objective == max(t.objective for t in result.trials), result.format_trials()
    # The objective is the best epoch's val_ndcg_at_10 node 0 printed (to Katib's metrics file),
    # as Katib's default strategy (max) keeps it from what its collector reads.
    log = best.metrics_log.read_text()
    values = [v for _, v in katib.parse_text_metrics(log, ["val_ndcg_at_10"])]
    assert best.objective == best.metrics["val_ndcg_at_10"]["max"] == max(values)
    assert best.objective >= FLOORS["val_ndcg_at_10"], result.format_trials()
    popularity = popularity_on_validation()["val_ndcg_at_10"]
    lead = best.objective - popularity
    assert lead >= FLOORS["over_popularity_val_ndcg_at_10"], (lead, result.format_trials())
    assert f"Best Trial Name:  {best.name}" in result.describe()


def test_the_tfjob_trial_experiment_runs(legacy_experiment: katib.ExperimentResult) -> None:
    result = legacy_experiment
    assert result.succeeded, result.describe()
    assert result.count("Succeeded") == len(result.trials) == 1, result.format_trials()
    assert result.reason == "ExperimentMaxTrialsReached", result.describe()
    assert katib.outside_search_space(LEGACY_CLUSTER, result.trials) == []
    (trial,) = result.trials
    assert trial.job is not None and trial.job.kind == "TFJob", trial.message
    # Katib wraps and reads the chief (its output in the metrics file); the worker, unwrapped,
    # trained the same weights, so its log has the same validation figures.
    chief, worker = trial.metrics_log.read_text(), trial.job.replica("Worker", 0).log()
    seen = katib.parse_text_metrics(chief, ["val_ndcg_at_10"])
    assert seen and trial.objective == max(v for _, v in seen)
    assert seen == katib.parse_text_metrics(worker, ["val_ndcg_at_10"])
    names = {"val_ndcg_at_10", *LEGACY_CLUSTER["spec"]["objective"]["additionalMetricNames"]}
    assert names <= set(trial.metrics), trial.metrics

"""The Katib harness: samplers, trial specs, metrics collection and the stop conditions.

Trials run tests.fixtures.katib.score, whose accuracy peaks at lr=0.3, units=3; each one is a
short local process, so every experiment here takes a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.harness import katib
from tests.harness.cases import Case, load_case
from tests.harness.jobs import run_job

FIXTURES = Path(__file__).parent / "fixtures" / "katib"


def experiment(*args: str, **spec: object) -> dict:
    """The fixture Experiment with spec fields replaced and extra args for the trial script."""
    doc = yaml.safe_load((FIXTURES / "experiment.yaml").read_text())
    doc["spec"].update(spec)
    container(doc)["command"] += list(args)
    return doc


def container(doc: dict) -> dict:
    return doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]


def printed(trial: katib.Trial) -> str:
    """What the trial script printed: under the StdOut collector Katib's wrapping sends it to the
    metrics file, not to the container's log."""
    assert trial.metrics_log is not None, trial.message
    return trial.metrics_log.read_text()


def received(trial: katib.Trial) -> dict:
    """What the trial script printed it was given."""
    line = next(x for x in printed(trial).splitlines() if x.startswith("received "))
    return json.loads(line.removeprefix("received "))


def expected_accuracy(params: dict) -> float:
    return 1 - (float(params["lr"]) - 0.3) ** 2 - 0.01 * abs(int(params["units"]) - 3)


def overlap(timeline: Path) -> int:
    """The most trials that were running at the same moment."""
    events = []
    for line in timeline.read_text().splitlines():
        kind, _, stamp = line.split()
        events.append((float(stamp), 1 if kind == "start" else -1))
    running = peak = 0
    for _, step in sorted(events):
        running += step
        peak = max(peak, running)
    return peak


def test_stops_at_the_goal(tmp_path: Path) -> None:
    doc = experiment(maxTrialCount=8, parallelTrialCount=1)
    doc["spec"]["objective"]["goal"] = 0.97
    result = katib.run_experiment(doc, workdir=tmp_path)
    assert result.succeeded and result.reason == "ExperimentGoalReached"
    assert len(result.trials) < 8
    assert result.trials[-1].objective >= 0.97
    assert all(t.objective < 0.97 for t in result.trials[:-1])


def test_keeps_to_max_and_parallel_trial_counts(tmp_path: Path) -> None:
    timeline = tmp_path / "timeline.txt"
    doc = experiment("--sleep=0.4", maxTrialCount=5)
    doc["spec"]["objective"].pop("goal")
    seen = []
    env = {"KATIB_TEST_TIMELINE": str(timeline)}
    result = katib.run_experiment(doc, workdir=tmp_path / "run", env=env, on_trial=seen.append)
    assert result.succeeded and result.reason == "ExperimentMaxTrialsReached"
    assert len(result.trials) == 5 and len(seen) == 5
    assert overlap(timeline) == 2  # parallelTrialCount: 2, and they did run side by side
    assert len({t.name for t in result.trials}) == 5
    assert all(t.name.startswith("score-") and len(t.name) == len("score-") + 8 for t in seen)


def test_max_failed_trial_count_fails_the_experiment(tmp_path: Path) -> None:
    doc = experiment("--fail", maxTrialCount=6, parallelTrialCount=1, maxFailedTrialCount=2)
    result = katib.run_experiment(doc, workdir=tmp_path)
    assert not result.succeeded and result.reason == "ExperimentFailed"
    assert [t.status for t in result.trials] == ["Failed", "Failed"]
    assert result.optimal_trial is None
    assert "Trials Failed:              2" in result.describe()


def test_optimal_trial_is_the_best_and_got_its_parameters(tmp_path: Path) -> None:
    doc = experiment(maxTrialCount=4)
    doc["spec"]["objective"].pop("goal")
    result = katib.run_experiment(doc, workdir=tmp_path)
    best = result.optimal_trial
    assert best.objective == max(t.objective for t in result.trials)
    for trial in result.trials:
        # Values reach the trial as strings through ${trialParameters.x}, and its name too.
        assert received(trial) == {
            "lr": float(trial.parameters["lr"]),
            "units": int(trial.parameters["units"]),
            "optimizer": trial.parameters["optimizer"],
        }
        assert f'"--trial-name={trial.name}"' in printed(trial)
        # The default strategy of a maximised objective is max (epoch 2), not latest (epoch 3).
        accuracy = trial.metrics["accuracy"]
        assert (
            trial.objective == accuracy["max"] == pytest.approx(expected_accuracy(received(trial)))
        )
        assert accuracy["latest"] < accuracy["max"] and "loss" in trial.metrics
    table, status = result.format_trials(), result.describe()
    for text in (table, status):
        assert best.name in text
        assert all(value in text for value in best.parameters.values())
    assert f"Best Trial Name:  {best.name}" in status
    assert table.splitlines()[0].split()[:4] == ["NAME", "TYPE", "STATUS", "AGE"]


def test_latest_metric_strategy(tmp_path: Path) -> None:
    doc = experiment(maxTrialCount=1)
    doc["spec"]["objective"]["metricStrategies"] = [{"name": "accuracy", "value": "latest"}]
    (trial,) = katib.run_experiment(doc, workdir=tmp_path).trials
    assert trial.objective == trial.metrics["accuracy"]["latest"] < trial.metrics["accuracy"]["max"]


@pytest.mark.parametrize(
    ("args", "collector"),
    [
        (
            ["--format=custom"],
            {
                "collector": {"kind": "StdOut"},
                "source": {"filter": {"metricsFormat": [r"([\w|-]+)\s*:\s*([+-]?\d*(\.\d+)?)"]}},
            },
        ),
        (
            ["--format=text-file", "--metrics-file=/var/log/katib/metrics.log"],
            {"collector": {"kind": "File"}},  # Katib's default path and TEXT format
        ),
        (
            ["--format=json-file", "--metrics-file=/katib/out/metrics.json"],
            {
                "collector": {"kind": "File"},
                "source": {
                    "fileSystemPath": {
                        "path": "/katib/out/metrics.json",
                        "kind": "File",
                        "format": "JSON",
                    }
                },
            },
        ),
    ],
    ids=["stdout-custom-format", "file-text", "file-json"],
)
def test_collectors_read_the_right_values(tmp_path: Path, args: list, collector: dict) -> None:
    doc = experiment(*args, maxTrialCount=2, metricsCollectorSpec=collector)
    result = katib.run_experiment(doc, workdir=tmp_path)
    assert [t.status for t in result.trials] == ["Succeeded", "Succeeded"]
    for trial in result.trials:
        score = expected_accuracy(trial.parameters)
        assert trial.metrics["accuracy"]["max"] == pytest.approx(score)
        assert trial.metrics["accuracy"]["min"] == pytest.approx(score * 0.5)
        assert trial.metrics["accuracy"]["latest"] == pytest.approx(score * 0.9)


def test_no_objective_metric_is_metrics_unavailable(tmp_path: Path) -> None:
    doc = experiment("--format=none", maxTrialCount=3, parallelTrialCount=1, maxFailedTrialCount=1)
    result = katib.run_experiment(doc, workdir=tmp_path)
    # Katib counts MetricsUnavailable trials with the failed ones for maxFailedTrialCount.
    assert [t.status for t in result.trials] == ["MetricsUnavailable"]
    assert not result.succeeded and result.reason == "ExperimentFailed"


def test_json_metrics_count_only_string_values() -> None:
    text = '{"accuracy": "0.5", "loss": 0.3}\n{"accuracy": 0.9}\n\n{"accuracy": "0.7"}\n'
    assert katib.parse_json_metrics(text, ["accuracy", "loss"]) == [
        ("accuracy", 0.5),
        ("accuracy", 0.7),
    ]


def test_default_filter_reads_katib_style_lines() -> None:
    text = (
        "2022-01-23T05:19:53Z INFO Epoch[5] Train-accuracy=0.93 loss=3.0e-02 other=1\n"
        "no metrics here\nTrain-accuracy=.95\nTrain-accuracy=\n"
    )
    found = katib.parse_text_metrics(text, ["Train-accuracy", "loss"])
    assert found == [("Train-accuracy", 0.93), ("loss", 0.03), ("Train-accuracy", 0.95)]


def test_grid_visits_every_point_once(tmp_path: Path) -> None:
    parameters = [
        {
            "name": "lr",
            "parameterType": "double",
            "feasibleSpace": {"min": "0.1", "max": "0.3", "step": "0.1"},
        },
        {"name": "units", "parameterType": "int", "feasibleSpace": {"min": "3", "max": "3"}},
        {
            "name": "optimizer",
            "parameterType": "categorical",
            "feasibleSpace": {"list": ["sgd", "adam"]},
        },
    ]
    doc = experiment(parameters=parameters, algorithm={"algorithmName": "grid"})
    doc["spec"].pop("maxTrialCount")
    doc["spec"]["objective"].pop("goal")
    result = katib.run_experiment(doc, workdir=tmp_path)
    points = [tuple(t.parameters.values()) for t in result.trials]
    assert sorted(points) == sorted(
        (lr, "3", opt) for lr in ("0.1", "0.2", "0.3") for opt in ("sgd", "adam")
    )
    assert result.succeeded and result.reason == "ExperimentSuggestionEndReached"


def test_grid_rejects_what_katib_rejects(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Max Trial Count: 40 > all possible search"):
        katib.run_experiment(
            experiment(maxTrialCount=40, algorithm={"algorithmName": "grid"}), workdir=tmp_path
        )
    doc = experiment(algorithm={"algorithmName": "grid"})
    del doc["spec"]["parameters"][0]["feasibleSpace"]["step"]
    with pytest.raises(ValueError, match="'lr' has no step"):
        katib.run_experiment(doc, workdir=tmp_path)


@pytest.mark.parametrize(
    ("algorithm", "settings"),
    [
        ("random", {"random_state": "1"}),
        ("tpe", {"random_state": "1", "n_startup_trials": "1"}),
        ("multivariate-tpe", {"random_state": "1", "n_startup_trials": "1"}),
        ("cmaes", {"random_state": "1", "sigma": "0.1"}),
        ("sobol", {"random_state": "1"}),
        ("bayesianoptimization", {"random_state": "1", "n_initial_points": "1"}),
    ],
)
def test_each_algorithm_runs(tmp_path: Path, algorithm: str, settings: dict) -> None:
    spec_settings = [{"name": k, "value": v} for k, v in settings.items()]
    doc = experiment(
        maxTrialCount=3,
        parallelTrialCount=1,
        algorithm={"algorithmName": algorithm, "algorithmSettings": spec_settings},
    )
    doc["spec"]["objective"].pop("goal")
    result = katib.run_experiment(doc, workdir=tmp_path)
    assert [t.status for t in result.trials] == ["Succeeded"] * 3
    for trial in result.trials:
        assert 0.1 <= float(trial.parameters["lr"]) <= 0.5
        assert trial.parameters["units"] in {"2", "3", "4"}


@pytest.mark.parametrize(
    ("algorithm", "settings", "message"),
    [
        ("hyperband", [], "not run locally"),
        ("enas", [], "not run locally"),
        ("annealing", [], "unknown algorithm"),
        ("random", [{"name": "n_startup_trials", "value": "3"}], "unknown algorithmSetting"),
        ("tpe", [{"name": "random_state", "value": "x"}], "random_state='x'"),
        ("bayesianoptimization", [{"name": "base_estimator", "value": "RF"}], "GP"),
    ],
)
def test_unsupported_algorithms_and_settings_are_clear_errors(
    tmp_path: Path, algorithm: str, settings: list, message: str
) -> None:
    doc = experiment(algorithm={"algorithmName": algorithm, "algorithmSettings": settings})
    with pytest.raises(ValueError, match=message):
        katib.run_experiment(doc, workdir=tmp_path)
    assert not (tmp_path / "trials").exists() or not any((tmp_path / "trials").iterdir())


def test_trial_spec_substitution(tmp_path: Path) -> None:
    doc = experiment()
    doc["spec"]["trialTemplate"]["trialSpec"]["metadata"] = {"labels": {"team": "ml"}}
    doc["spec"]["trialTemplate"]["trialParameters"].append(
        {"name": "team", "reference": "${trialSpec.Labels[team]}"}
    )
    container(doc)["env"] = [{"name": "TEAM", "value": "${trialParameters.team}"}]
    plan = katib.plan_experiment(doc)
    spec = katib.render_trial_spec(plan, {"lr": "0.2", "units": "3", "optimizer": "adam"}, "t-1")
    rendered = spec["spec"]["template"]["spec"]["containers"][0]
    assert "--lr=0.2" in rendered["command"] and "--trial-name=t-1" in rendered["command"]
    assert rendered["env"] == [{"name": "TEAM", "value": "ml"}]
    assert spec["metadata"]["name"] == "t-1" and spec["metadata"]["namespace"] == "kubeflow"
    container(doc)["command"].append("--x=${trialParameters.missing}")
    with pytest.raises(ValueError, match="missing"):
        katib.plan_experiment(doc)


def test_batch_job_retries_up_to_its_backoff_limit(tmp_path: Path) -> None:
    doc = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "flaky"},
        "spec": {
            "backoffLimit": 1,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "command": ["python", "-c", "print('try'); raise SystemExit(3)"],
                        }
                    ],
                }
            },
        },
    }
    job = run_job(doc, workdir=tmp_path)
    assert not job.succeeded and job.reason == "BackoffLimitExceeded"
    assert job.primary().exit_codes == [3, 3]
    assert job.primary().log().count("try") == 1  # a new pod, and a fresh log, per attempt
    assert len(list((tmp_path / "logs").glob("pod-*.log"))) == 2


def test_tfjob_trials_run_through_jobs(tmp_path: Path) -> None:
    doc = yaml.safe_load((FIXTURES / "tfjob-experiment.yaml").read_text())
    result = katib.run_experiment(doc, workdir=tmp_path)
    assert result.succeeded and result.reason == "ExperimentMaxTrialsReached"
    for trial in result.trials:
        assert trial.status == "Succeeded" and trial.job.kind == "TFJob"
        # Katib wrapped the chief (job-role=master) alone: its output went to the metrics file
        # the collector read; the worker's went to its own log.
        assert trial.job.primary().replica_type == "Chief"
        assert trial.objective == pytest.approx(expected_accuracy(trial.parameters))
        assert "accuracy=" in printed(trial)
        chief, worker = trial.job.replica("Chief", 0).log(), trial.job.replica("Worker", 0).log()
        assert "accuracy=" not in chief and " -c " in chief.splitlines()[0]
        assert " -c " not in worker.splitlines()[0]  # the worker ran its own command


# --- run_smoke: a case's Experiment in smoke form ------------------------------------------------

# A runtime of the case's own, beside the Experiment, whose entry point runs the TrainJob's args
# only if a variable of its own is there: a trial on it succeeds only when run_smoke found it.
# Its entry point is shaped to survive Katib's wrapping (`sh -c`, kept as Katib's shell; a script
# whose last line takes what Katib appends): see UNWRAPPABLE_ENTRY_POINT below.
OWN_RUNTIME = """
apiVersion: trainer.kubeflow.org/v1alpha1
kind: TrainingRuntime
metadata:
  name: own
spec:
  mlPolicy:
    numNodes: 1
  template:
    spec:
      replicatedJobs:
        - name: node
          template:
            metadata:
              labels:
                trainer.kubeflow.org/trainjob-ancestor-step: trainer
            spec:
              template:
                spec:
                  containers:
                    - name: node
                      image: example.org/own:1
                      command: [sh, -c, 'test "$FROM_OWN" = yes && run() { if [ "$1" = own ]; then shift; fi; "$@"; } && run "$@"', own]
                      env:
                        - name: FROM_OWN
                          value: "yes"
"""


def smoke_case(tmp_path: Path, overrides: str) -> Case:
    """A case folder whose Experiment's trials are TrainJobs on the runtime beside it."""
    folder = tmp_path / "demo"
    (folder / "manifests").mkdir(parents=True)
    doc = experiment()
    command = container(doc)["command"]
    doc["spec"]["trialTemplate"]["primaryContainerName"] = "node"
    doc["spec"]["trialTemplate"]["trialSpec"] = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "spec": {
            "runtimeRef": {
                "name": "own",
                "kind": "TrainingRuntime",
                "apiGroup": "trainer.kubeflow.org",
            },
            "trainer": {"numNodes": 1, "args": command},
        },
    }
    (folder / "manifests/katib-experiment.yaml").write_text(yaml.safe_dump(doc))
    (folder / "manifests/runtime.yaml").write_text(OWN_RUNTIME)
    (folder / "case.toml").write_text(
        f'image = "example.org/demo:1"\n[smoke.overrides."manifests/katib-experiment.yaml"]\n{overrides}'
    )
    return load_case(folder)


def test_run_smoke_runs_the_case_toml_form_on_the_runtimes_beside_it(
    tmp_path: Path, capsys
) -> None:
    case = smoke_case(tmp_path, '"spec.maxTrialCount" = 2\n"spec.parallelTrialCount" = 1\n')
    result = katib.run_smoke(case, workdir=tmp_path / "run", timeout=120)
    # 2 trials, not the manifest's 4: case.toml's overrides were applied.
    assert result.succeeded and result.reason == "ExperimentMaxTrialsReached", result.describe()
    assert [t.status for t in result.trials] == ["Succeeded", "Succeeded"]
    for trial in result.trials:
        assert trial.job.kind == "TrainJob"
        assert trial.objective == pytest.approx(expected_accuracy(trial.parameters))
    assert katib.outside_search_space(katib_doc(case), result.trials) == []
    out = capsys.readouterr().out
    assert result.format_trials() in out and result.describe() in out  # for the test's log


def katib_doc(case: Case) -> dict:
    return yaml.safe_load((case.path / "manifests/katib-experiment.yaml").read_text())


def test_run_smoke_refuses_an_override_the_schema_does_not_know(tmp_path: Path) -> None:
    case = smoke_case(tmp_path, '"spec.maxTrialCont" = 2\n')
    with pytest.raises(ValueError, match="maxTrialCont"):
        katib.run_smoke(case, workdir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # before any trial


def test_outside_search_space_names_each_value_the_space_does_not_hold() -> None:
    doc = experiment()  # lr double [0.1, 0.5] step 0.1, units int [2, 4], optimizer sgd/adam

    def trial(name: str, **params: str) -> katib.Trial:
        return katib.Trial(name=name, parameters=params)

    inside = [
        trial("a", lr="0.1", units="2", optimizer="sgd"),
        trial("b", lr="0.5", units="4", optimizer="adam"),
        trial("c", lr="0.30000000000000004", units="3", optimizer="sgd"),
    ]
    assert katib.outside_search_space(doc, inside) == []
    outside = [
        trial("low", lr="0.05", units="2", optimizer="sgd"),
        trial("high", lr="0.3", units="5", optimizer="sgd"),
        trial("half", lr="0.3", units="2.5", optimizer="sgd"),
        trial("word", lr="fast", units="2", optimizer="sgd"),
        trial("other", lr="0.3", units="2", optimizer="lbfgs"),
        trial("missing", lr="0.3", units="2"),
    ]
    problems = katib.outside_search_space(doc, outside)
    assert problems == [
        "low: lr=0.05 is outside double [0.1, 0.5] step 0.1",
        "high: units=5 is outside int [2, 4]",
        "half: units=2.5 is outside int [2, 4]",
        "word: lr=fast is outside double [0.1, 0.5] step 0.1",
        "other: optimizer=lbfgs is outside categorical ['sgd', 'adam']",
        "missing: got ['lr', 'units'], the space has ['lr', 'optimizer', 'units']",
    ]


# --- Katib's pod webhook: the primary container runs Katib's wrapped command ---------------------

SCORE = "python -m tests.fixtures.katib.score"
FLAGS = (
    "--lr=${trialParameters.learningRate} --units=${trialParameters.units} "
    "--optimizer=${trialParameters.optimizer}"
)


def one_trial(tmp_path: Path, command: list[str], **spec: object) -> katib.Trial:
    doc = experiment(maxTrialCount=1, parallelTrialCount=1, maxFailedTrialCount=1, **spec)
    container(doc)["command"] = command
    (trial,) = katib.run_experiment(doc, workdir=tmp_path).trials
    return trial


def test_katib_command_is_the_webhooks_rewrite() -> None:
    # pkg/webhook/v1beta1/pod/utils.go, wrapWorkerContainer: joined with spaces, unquoted.
    mark = "&& echo completed > /var/log/katib/$$.pid"
    assert katib.katib_command(
        ["python", "-c", "print('a b')"], "StdOut", katib.DEFAULT_METRICS_FILE
    ) == [
        "sh",
        "-c",
        f"python -c print('a b') 1>/var/log/katib/metrics.log 2>&1 {mark}",
    ]
    # The container's own `sh -c` / `bash -c` stays the shell; `/bin/sh` is not those words.
    for shell in ("sh", "bash"):
        assert katib.katib_command([shell, "-c", "echo a", "x"], "StdOut", "/m/f.log") == [
            shell,
            "-c",
            "echo a x 1>/m/f.log 2>&1 && echo completed > /m/$$.pid",
        ]
    assert katib.katib_command(["/bin/sh", "-c", "echo a"], "File", "/m/f.log") == [
        "sh",
        "-c",
        "/bin/sh -c echo a && echo completed > /m/$$.pid",  # File: the program writes the file
    ]


def test_metrics_come_from_the_wrapped_commands_file(tmp_path: Path) -> None:
    trial = one_trial(tmp_path, ["sh", "-c", f'echo "trial $KATIB_TRIAL_NAME"; {SCORE} {FLAGS}'])
    assert trial.status == "Succeeded", trial.message
    assert trial.objective == pytest.approx(expected_accuracy(trial.parameters))
    # The program's output went to Katib's metrics file (the trial's /var/log/katib), not the
    # pod's log: the redirect follows the last command only, so the echo before it did not.
    # The trial's name reached the container; the shell marked itself completed.
    assert trial.metrics_log == trial.workdir / "fs/var/log/katib/metrics.log"
    log = trial.job.primary().log()
    assert "accuracy=" in printed(trial) and "accuracy=" not in log
    assert f"trial {trial.name}\n" in log and "trial " not in printed(trial)
    (mark,) = (trial.workdir / "fs/var/log/katib").glob("*.pid")
    assert mark.stem.isdigit() and mark.read_text() == "completed\n"


def test_a_quoted_argument_with_spaces_breaks_as_on_katib(tmp_path: Path) -> None:
    program = "print('accuracy=0.9 loss=0.1')"
    trial = one_trial(tmp_path / "katib", ["python", "-c", program])
    # Joined unquoted, the program is no longer one argument: the shell cannot even parse it.
    assert trial.status == "Failed" and trial.job.primary().exit_codes == [2], trial.message
    assert "syntax error" in trial.job.primary().log().lower() and trial.metrics_log is None
    # The same container, run as it is (no Katib), succeeds: the wrapping alone breaks it.
    doc = experiment()
    container(doc)["command"] = ["python", "-c", program]
    doc["spec"]["trialTemplate"]["trialSpec"]["metadata"] = {"name": "plain"}
    assert run_job(doc["spec"]["trialTemplate"]["trialSpec"], workdir=tmp_path / "plain").succeeded


def test_a_leading_sh_c_is_kept_but_not_a_leading_bin_sh(tmp_path: Path) -> None:
    kept = one_trial(tmp_path / "sh", ["sh", "-c", f"{SCORE} {FLAGS}"])
    assert kept.status == "Succeeded", kept.message
    # `/bin/sh -c python -m ...` inside Katib's shell runs a bare `python` (the rest are its $0
    # and arguments): no metrics.
    lost = one_trial(tmp_path / "bin-sh", ["/bin/sh", "-c", f"{SCORE} {FLAGS}"])
    assert lost.status == "MetricsUnavailable", lost.message


def test_a_command_that_ends_the_shell_before_the_mark_fails(tmp_path: Path) -> None:
    # `exec` replaces Katib's shell: the output reaches the file but the completion mark is never
    # written, so Katib's collector fails the pod.
    trial = one_trial(tmp_path, ["sh", "-c", f"exec {SCORE} {FLAGS}"])
    assert trial.status == "Failed" and "completed" in trial.message, trial.message
    assert "accuracy=" in printed(trial)


def test_a_pod_without_the_primary_container_is_refused(tmp_path: Path) -> None:
    doc = experiment(maxTrialCount=1, parallelTrialCount=1, maxFailedTrialCount=1)
    doc["spec"]["trialTemplate"]["primaryContainerName"] = "trainer"
    (trial,) = katib.run_experiment(doc, workdir=tmp_path).trials
    assert trial.status == "Failed" and trial.job is None
    assert "unable to find primary container 'trainer'" in trial.message


def test_primary_pod_labels_choose_the_wrapped_pod(tmp_path: Path) -> None:
    doc = yaml.safe_load((FIXTURES / "tfjob-experiment.yaml").read_text())
    doc["spec"]["maxTrialCount"] = 1
    doc["spec"]["tfReplicaSpecs"] = None
    job = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]
    job["successPolicy"] = "AllWorkers"
    job["tfReplicaSpecs"].pop("Chief")  # worker 0 then has job-role=master
    doc["spec"].pop("tfReplicaSpecs")
    job["tfReplicaSpecs"]["Worker"]["replicas"] = 2
    (default,) = katib.run_experiment(doc, workdir=tmp_path / "default").trials
    assert default.status == "Succeeded", default.message
    logs = [default.job.replica("Worker", i).log() for i in (0, 1)]
    assert "accuracy=" not in logs[0] and "accuracy=" in logs[1]
    doc["spec"]["trialTemplate"]["primaryPodLabels"] = {"training.kubeflow.org/replica-index": "1"}
    (chosen,) = katib.run_experiment(doc, workdir=tmp_path / "chosen").trials
    assert chosen.status == "Succeeded", chosen.message
    logs = [chosen.job.replica("Worker", i).log() for i in (0, 1)]
    assert "accuracy=" in logs[0] and "accuracy=" not in logs[1]


# The entry point OWN_RUNTIME had before: `exec "$@"` of a /bin/sh script given its arguments.
# Katib joins it into one line, so the script's words and the TrainJob's args run in Katib's own
# shell (kubeflow/katib#1736): every trial on such a runtime fails on a cluster, and here.
UNWRAPPABLE_ENTRY_POINT = """[/bin/sh, -c, 'test "$FROM_OWN" = yes && exec "$@"', own]"""


def test_a_runtime_entry_point_katib_cannot_wrap_fails_its_trials(tmp_path: Path) -> None:
    case = smoke_case(tmp_path, '"spec.maxTrialCount" = 1\n"spec.parallelTrialCount" = 1\n')
    runtime = case.path / "manifests/runtime.yaml"
    text = runtime.read_text()
    start = text.index("command: ") + len("command: ")
    runtime.write_text(text[:start] + UNWRAPPABLE_ENTRY_POINT + text[text.index("\n", start) :])
    result = katib.run_smoke(case, workdir=tmp_path / "run", timeout=120)
    (trial,) = result.trials
    assert trial.status == "Failed" and trial.job.kind == "TrainJob", trial.message

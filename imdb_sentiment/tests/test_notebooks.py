"""Both notebooks execute top to bottom on the sample, and show what they promise.

papermill runs the jupytext sources with their parameters overridden; the executed notebooks are
then read back for the plots and the printed answers a reader would look at. The cluster branch
of the kubeflow notebook cannot run here, so one test runs its own trial table against Katib
Trials as the Kubernetes API returns them.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest

from tests.harness import katib, manifests, notebooks, procs

CASE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE_DIR.parent
WALKTHROUGH = CASE_DIR / "notebooks/walkthrough.py"
KUBEFLOW = CASE_DIR / "notebooks/kubeflow.py"
CASE_TOML = tomllib.loads((CASE_DIR / "case.toml").read_text())

pytestmark = pytest.mark.notebook

# A Trial as Katib 0.19 stores it (parameter values and metric values are strings), trimmed.
KATIB_TRIAL = {
    "apiVersion": "kubeflow.org/v1beta1",
    "kind": "Trial",
    "metadata": {
        "name": "imdb-sentiment-bayesian-x2lqbq9c",
        "labels": {"katib.kubeflow.org/experiment": "imdb-sentiment-bayesian"},
    },
    "spec": {
        "objective": {
            "type": "maximize",
            "goal": 0.88,
            "objectiveMetricName": "val_accuracy",
            "additionalMetricNames": ["accuracy", "test_accuracy"],
            "metricStrategies": [
                {"name": "val_accuracy", "value": "max"},
                {"name": "accuracy", "value": "max"},
                {"name": "test_accuracy", "value": "latest"},
            ],
        },
        "parameterAssignments": [
            {"name": "learning_rate", "value": "0.0021783"},
            {"name": "epochs", "value": "4"},
            {"name": "batch_size", "value": "64"},
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
                {"name": "val_accuracy", "latest": "0.86", "min": "0.71", "max": "0.874"},
                {"name": "accuracy", "latest": "0.93", "min": "0.6", "max": "0.93"},
                {"name": "test_accuracy", "latest": "0.87", "min": "0.87", "max": "0.87"},
            ]
        },
    },
}


def test_walkthrough_trains_compares_calibrates_explains_and_serves(tmp_path: Path) -> None:
    executed = notebooks.execute(
        WALKTHROUGH,
        parameters={"sample": True, "epochs": 5, "work_dir": str(tmp_path / "work")},
        cwd=REPO_ROOT,
        output=tmp_path / "walkthrough.ipynb",
    )
    text, images = notebooks.outputs(executed)
    # review lengths, learning curves, reliability diagram, attributions
    assert images >= 4, text[-2000:]
    assert "800 training reviews (50% positive)" in text, text[:2000]
    assert re.search(r"\d+ of 800 training reviews contain <br />", text), text[:3000]
    assert "raw:" in text and "cleaned:" in text and "<br" not in text.split("cleaned:")[1][:300]
    assert "Total params:" in text  # the model is shown
    accuracy = float(re.search(r"test accuracy (\d\.\d+) on 400 reviews", text)[1])
    assert accuracy >= 0.8, text[-3000:]
    # The baseline beside the network, in one table.
    table = notebooks.cell_output(executed, "comparison.round(3)")["text/html"]
    for row in ("test accuracy", "test calibration error (ECE)", "reviews trained per second"):
        assert f"<th>{row}</th>" in table, table
    assert "TF-IDF + logistic regression" in table and "BiLSTM" in table
    assert re.search(r"ECE before calibration 0\.\d+, after 0\.\d+", text), text[-3000:]
    # The attributions point the way removing the words moves the probability.
    assert "attributions point the right way: True" in text, text[-2000:]
    # The server the notebook started answers as the model does in the notebook's process.
    assert "served probabilities equal in-process: True" in text, text[-2000:]
    served = re.search(r"served labels:\s*(\[.*\])", text)[1]
    assert served == re.search(r"in-process labels:\s*(\[.*\])", text)[1]
    explained = re.search(r"served explanation: (.*)\nin-process:\s+(.*)\n", text)
    assert explained and explained[1] == explained[2], text[-2000:]
    pid = int(re.search(r"process (\d+) stopped: by SIGTERM", text)[1])
    assert not procs.alive(pid)
    assert not notebooks.warnings_in(executed)


def test_walkthrough_needs_nothing_but_the_case_folder() -> None:
    """A reader who copied the folder alone runs it: the test harness is not imported."""
    assert not re.search(r"^\s*(from|import) tests\b", WALKTHROUGH.read_text(), re.M)


def test_kubeflow_notebook_runs_every_step_locally(tmp_path: Path) -> None:
    executed = notebooks.execute(
        KUBEFLOW,
        parameters={"cluster": False, "work_dir": str(tmp_path / "work"), "timeout": 900},
        cwd=REPO_ROOT,
        output=tmp_path / "kubeflow.ipynb",
        timeout=1200,
    )
    text, images = notebooks.outputs(executed)
    # The TrainJob the SDK objects describe, run by the harness on two nodes with the runtime.
    assert "TrainJob imdb-sentiment on TrainingRuntime imdb-tensorflow-distributed:" in text
    assert "TrainJob imdb-sentiment: Complete" in text, text[-3000:]
    assert re.search(r"tensorflow-distributed: node 0 of 2, TF_CONFIG \{", text), text[:3000]
    # The Experiment's trials, through the table the cluster branch uses too.
    assert "Best Trial Name:" in text and "Trials Succeeded:           3" in text, text[-3000:]
    table = notebooks.cell_output(executed, "trials = trial_table(katib_trials, experiment_doc)")
    html = table["text/html"]
    for column in ("trial", "status", "learning_rate", "epochs", "batch_size", "val_accuracy"):
        assert f"<th>{column}</th>" in html, html
    assert html.count("<td>Succeeded</td>") == 3, html
    assert images >= 1  # the trials' scatter plot
    # The pipeline: tune, train, evaluate, and deploy when the accuracy reached the threshold.
    tasks = text.split("tasks run:")[1].splitlines()[0]
    found = re.search(r"test accuracy (\d\.\d+), threshold (\d\.\d+)", text)
    accuracy, threshold = float(found[1]), float(found[2])
    assert threshold == CASE_TOML["smoke"]["pipeline"]["arguments"]["threshold"]
    assert ("deploy" in tasks) == (accuracy >= threshold), (tasks, accuracy)
    assert all(step in tasks for step in ("tune", "train", "evaluate")), tasks
    assert re.search(r"tuned flags: \['--learning-rate=[\d.e-]+', '--epochs=\d'", text), text
    assert "# Katib Experiment imdb-sentiment-bayesian-" in text  # the tune step's report
    # The InferenceService's server answers as the model does in this process.
    assert "HTTP 200 and 200" in text, text[-2000:]
    assert "served probabilities equal in-process: True" in text, text[-2000:]
    assert "served labels:     ['positive', 'negative']" in text, text[-2000:]
    assert "Warning" not in notebooks.stderr_of(executed), notebooks.stderr_of(executed)


def test_trial_table_reads_katib_trials_as_the_cluster_returns_them() -> None:
    cells = notebooks.run_cells(KUBEFLOW, {}, through="def trial_table(", only=True)
    experiment = manifests.load(CASE_DIR / "manifests/katib-experiment.yaml")[0]
    running = copy.deepcopy(KATIB_TRIAL)
    running["status"] = {"conditions": [{"type": "Running", "status": "True"}]}
    unavailable = copy.deepcopy(KATIB_TRIAL)
    unavailable["status"]["observation"]["metrics"][0]["max"] = "unavailable"

    table = cells["trial_table"]([KATIB_TRIAL, running, unavailable], experiment)

    assert list(table.columns) == [
        "trial", "status", "learning_rate", "epochs", "batch_size",
        "val_accuracy", "accuracy", "test_accuracy",
    ]  # fmt: skip
    first = table.iloc[0]
    assert first["status"] == "Succeeded"
    # Parameters typed as the Experiment declares them (batch_size is "discrete": kept a
    # string), metrics by the trial's strategies.
    assert first["learning_rate"] == 0.0021783 and first["epochs"] == 4
    assert first["val_accuracy"] == 0.874  # max
    assert first["test_accuracy"] == 0.87  # latest
    assert table.iloc[1]["status"] == "Running" and table.iloc[1].isna()["val_accuracy"]
    assert table.iloc[2].isna()["val_accuracy"]  # Katib's "unavailable"


def test_local_trials_reach_the_table_as_katib_would_report_them() -> None:
    cells = notebooks.run_cells(KUBEFLOW, {}, through="def trial_table(", only=True)
    experiment = manifests.load(CASE_DIR / "manifests/katib-experiment.yaml")[0]
    trial = katib.Trial(
        name="imdb-sentiment-bayesian-b4qz7wxk",
        parameters={"learning_rate": "0.0031", "epochs": "3", "batch_size": "32"},
        status="Succeeded",
        metrics={"val_accuracy": {"latest": 0.81, "min": 0.7, "max": 0.83}},
        objective=0.83,
    )
    row = cells["trial_table"]([cells["as_katib_trial"](trial)], experiment).iloc[0]
    assert row["val_accuracy"] == trial.objective
    assert (row["learning_rate"], row["epochs"], int(row["batch_size"])) == (0.0031, 3, 32)


# Copied from mnist.tests.test_notebooks._Done
class _Done:
    """What the Kubernetes client returns for async_req=True: a handle with .get(timeout)."""

    def __init__(self, value: dict) -> None:
        self.value = value

    def get(self, timeout: float | None = None) -> dict:
        return self.value


# Copied from mnist.tests.test_notebooks._TrainerAPI
class _TrainerAPI:
    """The two calls TrainerClient.train makes: read the runtime, create the TrainJob."""

    def __init__(self, runtime: dict) -> None:
        self.runtime, self.created = runtime, []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs):
        assert (group, plural, name) == (
            "trainer.kubeflow.org",
            "trainingruntimes",
            self.runtime["metadata"]["name"],
        )
        return _Done(self.runtime)

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kwargs):
        self.created.append((namespace, plural, body))


# The kubeflow SDK's own pydantic models warn that their class-based config is deprecated.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:kubeflow.*")
def test_trainer_client_creates_the_manifests_trainjob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notebook's SDK objects, given to TrainerClient.train as its cluster branch does,
    create manifests/trainjob.yaml's TrainJob, but for what the SDK cannot say otherwise."""
    from kubeflow.trainer import KubernetesBackendConfig, TrainerClient
    from kubeflow.trainer.backends.kubernetes.backend import KubernetesBackend
    from kubernetes.client import Configuration

    monkeypatch.chdir(REPO_ROOT)
    parameters = {"cluster": True, "namespace": "team-a", "work_dir": str(tmp_path)}
    cells = notebooks.run_cells(KUBEFLOW, parameters, through="volume_patch = RuntimePatch(")
    # No cluster: skip the control-plane version probe and answer the API calls here.
    monkeypatch.setattr(KubernetesBackend, "verify_backend", lambda self: None)
    client = TrainerClient(
        backend_config=KubernetesBackendConfig(
            namespace="team-a", client_configuration=Configuration()
        )
    )
    client.backend.custom_api = api = _TrainerAPI(cells["runtime"])

    found = client.get_runtime(cells["runtime_ref"]["name"])
    name = client.train(runtime=found, trainer=cells["trainer"], options=cells["options"])

    assert found.kind.value == "TrainingRuntime" and found.trainer.framework == "tensorflow"
    ((namespace, plural, created),) = api.created
    assert (name, namespace, plural) == ("imdb-sentiment", "team-a", "trainjobs")
    expected = manifests.load(CASE_DIR / "manifests/trainjob.yaml")[0]
    spec = expected["spec"]
    # What the SDK does its own way: it names itself as the patch's manager, leaves the
    # runtimeRef's apiGroup to its default, and sets requests equal to limits.
    spec["runtimePatches"][0]["manager"] = "trainer.kubeflow.org/kubeflow-sdk"
    del spec["runtimeRef"]["apiGroup"]
    spec["trainer"]["resourcesPerNode"]["requests"] = spec["trainer"]["resourcesPerNode"]["limits"]
    assert created["metadata"] == expected["metadata"]
    assert created["spec"] == spec

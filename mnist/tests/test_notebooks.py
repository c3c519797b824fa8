"""Both notebooks execute top to bottom on small data, and show what they promise.

papermill runs the jupytext sources with their parameters overridden; the executed notebooks are
then read back for the plots and the printed answers a reader would look at. The cluster
branches of the kubeflow notebook cannot run here, so two tests run the notebook's own cells in
this process against what a cluster would answer: the TrainJob its TrainerClient call creates,
and its table of Katib Trials as the Kubernetes API returns them.
"""

from __future__ import annotations

import ast
import copy
import re
import sys
from pathlib import Path

import pytest

from tests.harness import katib, manifests, notebooks, procs

CASE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE_DIR.parent
KUBEFLOW = CASE_DIR / "notebooks/kubeflow.py"

pytestmark = pytest.mark.notebook

# A Trial as Katib 0.19 stores it (pkg/apis/controller/trials/v1beta1/trial_types.go and
# common/v1beta1/common_types.go: parameter values and metric values are strings), trimmed.
KATIB_TRIAL = {
    "apiVersion": "kubeflow.org/v1beta1",
    "kind": "Trial",
    "metadata": {
        "name": "mnist-random-x2lqbq9c",
        "namespace": "kubeflow-user-example-com",
        "labels": {"katib.kubeflow.org/experiment": "mnist-random"},
    },
    "spec": {
        "objective": {
            "type": "maximize",
            "goal": 0.99,
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
            {"name": "num_layers", "value": "2"},
            {"name": "optimizer", "value": "adam"},
        ],
        "primaryContainerName": "node",
    },
    "status": {
        "conditions": [
            {"type": "Created", "status": "True", "reason": "TrialCreated"},
            {"type": "Running", "status": "False", "reason": "TrialRunning"},
            {"type": "Succeeded", "status": "True", "reason": "TrialSucceeded"},
        ],
        "observation": {
            "metrics": [
                {"name": "val_accuracy", "latest": "0.981", "min": "0.952", "max": "0.9835"},
                {"name": "accuracy", "latest": "0.97", "min": "0.91", "max": "0.971"},
                {"name": "test_accuracy", "latest": "0.979", "min": "0.979", "max": "0.979"},
            ]
        },
    },
}


def digits_after(label: str, text: str) -> list[int]:
    match = re.search(rf"{re.escape(label)}\s*\[([\d, ]+)\]", text)
    assert match, f"{label!r} not printed"
    return [int(d) for d in match[1].split(",")]


def test_walkthrough_trains_plots_and_serves(tmp_path: Path) -> None:
    executed = notebooks.execute(
        CASE_DIR / "notebooks/walkthrough.py",
        parameters={"sample": True, "epochs": 2, "work_dir": str(tmp_path / "work")},
        cwd=REPO_ROOT,
        output=tmp_path / "walkthrough.ipynb",
    )
    text, images = notebooks.outputs(executed)
    # digits, class counts, learning curves, confusion matrix, misclassified digits
    assert images >= 5, text[-2000:]
    accuracy = float(re.search(r"test accuracy (\d\.\d+) on 1000 digits", text)[1])
    assert accuracy >= 0.85, text[-2000:]
    served = digits_after("served digits:", text)
    assert served == digits_after("in-process digits:", text)
    assert len(served) == 4
    assert re.search(r"digit\.png: \d \(probability", text), text[-2000:]
    assert "Total params:" in text  # the model is shown
    # The notebook started mnist.serve itself and stopped it by its process id.
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
    # The TrainJob the SDK objects describe, run by the harness on two nodes with the runtime.
    assert "TrainJob mnist on TrainingRuntime tensorflow-distributed:" in text, text[:3000]
    assert "  2 nodes, each {'cpu': '2', 'memory': '4Gi'}, env {'TF_NUM_NODES': '2'}" in text
    assert "TrainJob mnist: Complete" in text, text[-3000:]
    # The runtime's command wrote node 0's TF_CONFIG, naming both nodes' addresses.
    assert re.search(r"tensorflow-distributed: node 0 of 2, TF_CONFIG \{\"cluster\"", text), text
    assert "local-process backend: not run" in text
    assert "Best Trial Name:" in text and "Trials Succeeded:           3" in text, text[-3000:]
    # The table the plot reads came out of trial_table, the cluster branch's code.
    table = notebooks.cell_output(executed, "trials = trial_table(katib_trials, experiment_doc)")
    html = table["text/html"]
    for column in ("trial", "status", "learning_rate", "num_layers", "optimizer", "val_accuracy"):
        assert f"<th>{column}</th>" in html, html
    assert html.count("<td>Succeeded</td>") == 3, html
    assert "tasks run:" in text and "deploy" in text.split("tasks run:")[1].splitlines()[0]
    assert images >= 1  # the trials' scatter plot
    served = digits_after("served digits:", text)
    assert len(served) == 3
    assert served == digits_after("in-process digits:", text)
    assert "Warning" not in notebooks.stderr_of(executed), notebooks.stderr_of(executed)


def test_trial_table_reads_katib_trials_as_the_cluster_returns_them() -> None:
    cells = notebooks.run_cells(KUBEFLOW, {}, through="def trial_table(", only=True)
    experiment = manifests.load(CASE_DIR / "manifests/katib-experiment.yaml")[0]
    running = copy.deepcopy(KATIB_TRIAL)
    running["metadata"]["name"] = "mnist-random-7fzv2m4d"
    running["status"] = {"conditions": [{"type": "Running", "status": "True"}]}
    unavailable = copy.deepcopy(KATIB_TRIAL)
    unavailable["status"]["observation"]["metrics"][0]["max"] = "unavailable"

    table = cells["trial_table"]([KATIB_TRIAL, running, unavailable], experiment)

    assert list(table.columns) == [
        "trial", "status", "learning_rate", "num_layers", "optimizer",
        "val_accuracy", "accuracy", "test_accuracy",
    ]  # fmt: skip
    first = table.iloc[0]
    assert first["trial"] == "mnist-random-x2lqbq9c" and first["status"] == "Succeeded"
    # Parameters typed as the Experiment declares them, metrics by the trial's strategies.
    assert first["learning_rate"] == 0.0021783 and first["num_layers"] == 2
    assert first["optimizer"] == "adam"
    assert first["val_accuracy"] == 0.9835  # max
    assert first["test_accuracy"] == 0.979  # latest
    assert table.iloc[1]["status"] == "Running" and table.iloc[1].isna()["val_accuracy"]
    assert table.iloc[2].isna()["val_accuracy"]  # Katib's "unavailable"


def test_local_trials_reach_the_table_as_katib_would_report_them() -> None:
    cells = notebooks.run_cells(KUBEFLOW, {}, through="def trial_table(", only=True)
    experiment = manifests.load(CASE_DIR / "manifests/katib-experiment.yaml")[0]
    trial = katib.Trial(
        name="mnist-random-b4qz7wxk",
        parameters={"learning_rate": "0.0031", "num_layers": "3", "optimizer": "sgd"},
        status="Succeeded",
        metrics={"val_accuracy": {"latest": 0.91, "min": 0.85, "max": 0.925}},
        objective=0.925,  # the harness's own reading: max, Katib's default when maximising
    )
    row = cells["trial_table"]([cells["as_katib_trial"](trial)], experiment).iloc[0]
    assert row["val_accuracy"] == trial.objective
    assert (row["learning_rate"], row["num_layers"], row["optimizer"]) == (0.0031, 3, "sgd")


class _Done:
    """What the Kubernetes client returns for async_req=True: a handle with .get(timeout)."""

    def __init__(self, value: dict) -> None:
        self.value = value

    def get(self, timeout: float | None = None) -> dict:
        return self.value


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
    assert (name, namespace, plural) == ("mnist", "team-a", "trainjobs")
    expected = manifests.load(CASE_DIR / "manifests/trainjob.yaml")[0]
    spec = expected["spec"]
    # What the SDK does its own way: it names itself as the patch's manager, leaves the
    # runtimeRef's apiGroup to its default, and sets requests equal to limits.
    spec["runtimePatches"][0]["manager"] = "trainer.kubeflow.org/kubeflow-sdk"
    del spec["runtimeRef"]["apiGroup"]
    spec["trainer"]["resourcesPerNode"]["requests"] = spec["trainer"]["resourcesPerNode"]["limits"]
    assert created["metadata"] == expected["metadata"]
    assert created["spec"] == spec


def module_imports(module: str) -> set[str]:
    """Top-level distributions a case module imports when it loads, following the case's own
    modules (imports inside functions and TYPE_CHECKING blocks load nothing at start)."""
    seen, found, todo = set(), set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse((REPO_ROOT / (name.replace(".", "/") + ".py")).read_text())
        for node in tree.body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for full in names:
                top = full.split(".")[0]
                if top == "mnist":
                    if (REPO_ROOT / (full.replace(".", "/") + ".py")).is_file():
                        todo.append(full)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.add(top)
    return found


def test_local_process_cell_installs_what_the_torch_trainer_imports() -> None:
    """The local-process backend's fresh venv holds only what the cell pip-installs."""
    cells = notebooks.run_cells(
        KUBEFLOW, {"local_process": False}, through="torch_trainer_packages =", only=True
    )
    assert module_imports("mnist.train_torch") <= set(cells["torch_trainer_packages"])
    pinned = (CASE_DIR / "requirements.txt").read_text()
    for package in cells["torch_trainer_packages"]:
        assert re.search(rf"^{package}==", pinned, re.M), f"{package} is not pinned"

"""Both notebooks execute top to bottom on the sample, and show what they promise.

papermill runs the jupytext sources with their parameters overridden; the executed notebooks are
then read back for the plots, tables and printed answers a reader would look at. The kubeflow
notebook runs locally on the session's smoke model (conftest.trained_model_dir) instead of its
own TrainJob (tests/test_distributed.py runs that TrainJob); its cluster-only pieces are checked
in-process: the TrainJob TrainerClient creates, the Katib trial table and plot, and the recurring
run's request.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest

from tests.harness import manifests, notebooks

CASE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE_DIR.parent
WALKTHROUGH = CASE_DIR / "notebooks/walkthrough.py"
KUBEFLOW = CASE_DIR / "notebooks/kubeflow.py"
CASE_TOML = tomllib.loads((CASE_DIR / "case.toml").read_text())
OVER_POPULARITY = CASE_TOML["floors"]["over_popularity"]

pytestmark = pytest.mark.notebook

# A Trial as Katib 0.19 stores it (parameter values and metric values are strings), trimmed.
KATIB_TRIAL = {
    "apiVersion": "kubeflow.org/v1beta1",
    "kind": "Trial",
    "metadata": {
        "name": "recommender-tpe-x2lqbq9c",
        "labels": {"katib.kubeflow.org/experiment": "recommender-tpe"},
    },
    "spec": {
        "objective": {
            "type": "maximize",
            "objectiveMetricName": "val_ndcg_at_10",
            "additionalMetricNames": ["val_hit_rate_at_10", "test_ndcg_at_10"],
            "metricStrategies": [
                {"name": "val_ndcg_at_10", "value": "max"},
                {"name": "val_hit_rate_at_10", "value": "max"},
                {"name": "test_ndcg_at_10", "value": "latest"},
            ],
        },
        "parameterAssignments": [
            {"name": "n_factors", "value": "37"},
            {"name": "dropout", "value": "0.21"},
            {"name": "learning_rate", "value": "0.0042"},
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
                {"name": "val_ndcg_at_10", "latest": "0.35", "min": "0.12", "max": "0.362"},
                {"name": "val_hit_rate_at_10", "latest": "0.57", "min": "0.24", "max": "0.58"},
                {"name": "test_ndcg_at_10", "latest": "0.364", "min": "0.364", "max": "0.364"},
            ]
        },
    },
}


def test_notebooks_are_generated_from_their_sources() -> None:
    for source in (WALKTHROUGH, KUBEFLOW):
        assert notebooks.drift(source) is None, notebooks.drift(source)


def test_walkthrough_shows_the_data_trains_recommends_and_compares(tmp_path: Path) -> None:
    executed = notebooks.execute(
        WALKTHROUGH,
        parameters={"epochs": 5, "work_dir": str(tmp_path / "work")},
        cwd=REPO_ROOT,
        output=tmp_path / "walkthrough.ipynb",
    )
    text, images = notebooks.outputs(executed)
    assert images >= 3, text[-2000:]  # the matrix and popularity, the curves, the bars
    # The interaction matrix of the sample (sample/README.md: 12,218 pairs of 1,000 x 300).
    assert "1,000 customers x 300 products = 300,000 cells;" in text, text[:3000]
    assert "12,218 are purchases: density 4.07%, sparsity 95.93%" in text, text[:3000]
    low, high = map(float, re.search(r"values in \[(\S+), (\S+)\]", text).groups())
    assert 0 < low < high == 1.0
    assert "Total params:" in text  # the model is shown
    # The curves come from history.json: one validation NDCG@10 per epoch, rising.
    curves = notebooks.cell_output(executed, "history_table.round(4)")["text/plain"]
    ndcgs = [float(line.split()[-1]) for line in curves.splitlines()[2:]]
    assert len(ndcgs) == 5 and ndcgs[-1] > ndcgs[0] + 0.1, curves
    # Three customers: what they bought, their list (nothing bought again), what came next.
    table = notebooks.cell_output(executed, "def top_n(")["text/html"]
    rows = re.findall(r"<tr>\s*<th>(\w+)</th>\s*((?:<td>.*?</td>\s*){4})</tr>", table, re.S)
    assert len(rows) == 3, table
    for _, cells in rows:
        bought, listed, later, found = re.findall(r"<td>(.*?)</td>", cells)
        bought_ids = {p.split()[0] for p in bought.split(", ")}
        listed_ids = [p.split()[0].rstrip("*") for p in listed.split(", ")]
        assert len(listed_ids) == 10 and not bought_ids & set(listed_ids), (bought, listed)
        hits = sum(p.split()[0] in listed_ids for p in later.split(", "))
        assert found == f"{hits} of {len(later.split(', '))}"
    # The model beside the baselines, one table, on the same split.
    comparison = notebooks.cell_output(executed, "comparison.round(3)")["text/plain"]
    figures = {
        name: tuple(map(float, re.search(rf"{re.escape(name)}\s+(\S+)\s+(\S+)", comparison).groups()))
        for name in ("deep CF (this model)", "BPR (implicit)", "most popular", "random")
    }  # fmt: skip
    model, popular, chance = (
        figures["deep CF (this model)"],
        figures["most popular"],
        figures["random"],
    )
    assert model[0] >= popular[0] + OVER_POPULARITY["hit_rate_at_10"], comparison
    assert model[1] >= popular[1] + OVER_POPULARITY["ndcg_at_10"], comparison
    assert popular[1] > chance[1] and chance[0] < 0.1, comparison
    assert not notebooks.warnings_in(executed)


def test_walkthrough_needs_nothing_but_the_case_folder() -> None:
    """A reader who copied the folder alone runs it: the test harness is not imported."""
    assert not re.search(r"^\s*(from|import) tests\b", WALKTHROUGH.read_text(), re.M)


def test_kubeflow_notebook_runs_locally(tmp_path: Path, trained_model_dir: Path) -> None:
    executed = notebooks.execute(
        KUBEFLOW,
        parameters={
            "cluster": False,
            "work_dir": str(tmp_path / "work"),
            "model_dir": str(trained_model_dir),
        },
        cwd=REPO_ROOT,
        output=tmp_path / "kubeflow.ipynb",
    )
    text, _ = notebooks.outputs(executed)
    # The TrainJob the SDK objects describe, shrunk to the sample by case.toml.
    assert "TrainJob recommender on TrainingRuntime recommender-tensorflow-distributed:" in text
    assert re.search(r"args: python -m recommender\.train_distributed --sample", text), text
    # The cluster's Experiment: TPE over the three parameters for validation NDCG@10.
    assert "maximize val_ndcg_at_10, 12 trials, 3 at a time, each a TrainJob" in text, text
    space = notebooks.cell_output(executed, '"drawn": p.feasible_space')["text/plain"]
    assert all(name in space for name in ("n_factors", "dropout", "learning_rate")), space
    # The recurring run, as kfp.Client sends it: every 30 minutes, one at a time, no catch-up.
    assert "schedule {'cron': '0 */30 * * * *'" in text, text
    assert "max_concurrency 1, no_catchup True, mode ENABLE" in text, text
    assert (
        "requests to the KFP API: ['experiment_service_list_experiments', "
        "'experiment_service_create_experiment', 'recurring_run_service_create_recurring_run']"
    ) in text
    found = re.search(r"recurring run (\S+) \((\S+)\) in experiment (\S+):", text)
    assert found.groups() == (
        "recommender-model-update",
        "local-recurring-run-3",
        "local-experiment-2",
    )
    assert "tasks ['condition-1', 'evaluate', 'train', 'update-data']" in text, text
    arguments = notebooks.cell_output(executed, "run_arguments = pd.DataFrame(")["text/plain"]
    assert re.search(r"epochs\s+20\s+default", arguments), arguments
    # The InferenceService's server answers as the model ranks in this process.
    assert re.search(r"HTTP 200 \| model version (\S+) \| header x-model-version \1\n", text)
    assert "customer 1 (personal):" in text and "customer 8 (personal):" in text
    fallback = re.search(r"customer a-new-customer \(fallback: most popular\): (.*)\n", text)
    assert fallback and len(fallback[1].split(", ")) == 3, text[-2000:]
    assert "products offered again to a customer who bought them: none" in text, text[-2000:]
    assert not notebooks.warnings_in(executed)


def test_trial_table_and_plot_read_katib_trials_as_the_cluster_returns_them() -> None:
    cells = notebooks.run_cells(KUBEFLOW, {}, through="def trial_table(", only=True)
    experiment = manifests.load(CASE_DIR / "manifests/katib-experiment.yaml")[0]
    running = copy.deepcopy(KATIB_TRIAL)
    running["status"] = {"conditions": [{"type": "Running", "status": "True"}]}
    unavailable = copy.deepcopy(KATIB_TRIAL)
    unavailable["status"]["observation"]["metrics"][0]["max"] = "unavailable"

    table = cells["trial_table"]([KATIB_TRIAL, running, unavailable], experiment)

    assert list(table.columns) == [
        "trial", "status", "n_factors", "dropout", "learning_rate",
        "val_ndcg_at_10", "val_hit_rate_at_10", "test_ndcg_at_10", "test_hit_rate_at_10",
    ]  # fmt: skip
    first = table.iloc[0]
    assert first["status"] == "Succeeded"
    assert (first["n_factors"], first["dropout"], first["learning_rate"]) == (37, 0.21, 0.0042)
    assert first["val_ndcg_at_10"] == 0.362  # max
    assert first["test_ndcg_at_10"] == 0.364  # latest
    assert table.iloc[1]["status"] == "Running" and table.iloc[1].isna()["val_ndcg_at_10"]
    assert table.iloc[2].isna()["val_ndcg_at_10"]  # Katib's "unavailable"

    import matplotlib

    matplotlib.use("Agg")
    figure = cells["plot_trials"](table, experiment)
    (axes, colorbar) = figure.axes
    (points,) = axes.collections
    assert len(points.get_offsets()) == 1  # the one scored trial
    assert axes.get_xscale() == "log" and colorbar.get_ylabel() == "dropout"
    assert cells["plot_trials"](table.iloc[1:2], experiment) is None  # nothing scored yet


# The kubeflow SDK's own pydantic models warn that their class-based config is deprecated.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:kubeflow.*")
def test_recurring_run_request_is_what_kfp_client_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notebook's stand-in for the KFP API gets the requests a KFP server would: one
    experiment, then the recurring run of the compiled pipeline with its schedule."""
    monkeypatch.chdir(REPO_ROOT)  # the notebook's first cell moves to the repository root
    parameters = {"cluster": False, "work_dir": str(tmp_path), "model_dir": str(tmp_path)}
    parameters["pipeline_arguments"] = {"epochs": 5}
    cells = notebooks.run_cells(KUBEFLOW, parameters, through="pipeline.schedule(")
    recurring, recorded = cells["recurring"], cells["recorded"]
    methods = [method for method, _ in recorded.requests]
    assert methods[-2:] == [
        "experiment_service_create_experiment",
        "recurring_run_service_create_recurring_run",
    ]
    experiment = recorded.requests[-2][1]["experiment"]
    assert (experiment.display_name, experiment.namespace) == (
        "recommender-model-update",
        "kubeflow-user-example-com",
    )
    assert recurring.experiment_id == experiment.experiment_id
    assert recurring.trigger.cron_schedule.cron == "0 */30 * * * *"
    assert (recurring.max_concurrency, recurring.no_catchup) == (1, True)
    assert recurring.runtime_config.parameters == {"epochs": 5}
    compiled = manifests.load(CASE_DIR / "manifests/pipeline.yaml")[0]
    assert recurring.pipeline_spec["pipeline_spec"] == compiled


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

    assert found.kind.value == "TrainingRuntime"
    ((namespace, plural, created),) = api.created
    assert (name, namespace, plural) == ("recommender", "team-a", "trainjobs")
    expected = manifests.load(CASE_DIR / "manifests/trainjob.yaml")[0]
    spec = expected["spec"]
    # What the SDK does its own way: it names itself as the patch's manager, leaves the
    # runtimeRef's apiGroup to its default, and sets requests equal to limits.
    spec["runtimePatches"][0]["manager"] = "trainer.kubeflow.org/kubeflow-sdk"
    spec["runtimeRef"].pop("apiGroup", None)
    spec["trainer"]["resourcesPerNode"]["requests"] = spec["trainer"]["resourcesPerNode"]["limits"]
    assert created["metadata"] == expected["metadata"]
    assert created["spec"] == spec

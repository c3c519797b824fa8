# %% [markdown]
# # Product recommendations on Kubeflow: train distributed, tune, serve, keep fresh
#
# `walkthrough.ipynb` trained the deep collaborative filter on this machine and measured it
# against most popular and BPR. This notebook takes it onto a Kubeflow cluster with the official
# SDKs, one Kubeflow piece per section:
#
# 1. a distributed **TrainJob** (Kubeflow Trainer v2) on the repository's own TensorFlow runtime,
#    submitted and watched with the Kubeflow SDK's `TrainerClient`;
# 2. a **Katib Experiment** that tunes the embedding size, the dropout and the learning rate for
#    the validation NDCG@10, each trial a TrainJob, its trials read back into a table and a plot;
# 3. the book's "recommender model update" as a **Kubeflow Pipeline** run every 30 minutes, at
#    most one at a time: a **recurring run** created with `kfp.Client`; each run retrains, scores
#    the new model and the serving one on the same frozen holdout, and publishes the new one,
#    gradually, only when it is better;
# 4. an **InferenceService** created with the KServe SDK, asked for recommendations by raw
#    customer id.
#
# Every section builds its resource from the files in `recommender/manifests/`, the ones
# `kubectl apply -k recommender/manifests` would create. With `cluster = True` (run it in a
# Kubeflow notebook server, or anywhere with a kubeconfig for your profile's namespace) each
# resource is created on the cluster and the notebook waits for it. With `cluster = False` it
# runs on this machine in a minute: each section shows the object it would create (the
# recurring run as the very request `kfp.Client` would send), and the InferenceService's server
# runs here on a trained model, through the repository's test harness (`tests/harness`).

# %% tags=["parameters"]
cluster = False  # True: create everything on the cluster of the current kubeconfig
namespace = "kubeflow-user-example-com"  # your Kubeflow profile's namespace
kfp_host = None  # None inside a Kubeflow notebook server; else the KFP API URL
work_dir = "runs/recommender-kubeflow"  # local runs write their logs and models here
timeout = 1800  # seconds to wait for each step before giving up
# Local only: the model folder the local server serves in section 4 (what train.py or the
# TrainJob wrote). None runs the TrainJob of section 1 here first: two nodes on the sample.
model_dir = None
pipeline_arguments = {}  # the recurring run's pipeline arguments; {}: the pipeline's defaults

# %%
import os
import sys
from pathlib import Path

root = next(
    p for p in [Path.cwd(), *Path.cwd().parents] if (p / "recommender" / "case.toml").exists()
)
os.chdir(root)
sys.path.insert(0, str(root))
work = Path(work_dir).resolve()
work.mkdir(parents=True, exist_ok=True)

from tests.harness import cases, manifests

case = cases.load_case(root / "recommender")


def manifest(name: str, shrink: bool = True) -> dict:
    """A manifest as the cluster gets it, or, for what runs here, shrunk to the sample by
    case.toml's smoke overrides."""
    path = case.path / "manifests" / name
    doc = manifests.load(path)[0]
    if shrink and not cluster:
        doc = manifests.apply_overrides(doc, case.overrides_for(path))
    doc.setdefault("metadata", {})["namespace"] = namespace
    return doc


print("cluster" if cluster else "local run through tests/harness", "| namespace", namespace)

# %% [markdown]
# ## 1. Distributed training: a TrainJob
#
# `manifests/trainjob.yaml` asks Kubeflow Trainer for two nodes, each running
# `python -m recommender.train_distributed`. The book's TFJob ran a single worker; here
# `MultiWorkerMirroredStrategy` splits every global batch of purchases and negatives between the
# nodes and sums their gradients at every step, so the two copies of the model stay identical.
# Trainer ships no TensorFlow runtime, so the TrainJob names the repository's own,
# `manifests/tensorflow-runtime.yaml`: a namespaced `TrainingRuntime` called
# `recommender-tensorflow-distributed`, which your profile may create without cluster-admin. Its
# container command writes `TF_CONFIG` from what JobSet tells every pod (its completion index and
# the DNS names of its peers) and then runs the TrainJob's `args`. Node 0 is the chief: it
# writes `model.keras`, `mappings.json` (the raw ids), `purchases.npz` and `metrics.json` (the
# model's and both baselines' figures on the test split) to `/mnt/pvc/recommender` on the
# `recommender-models` volume, which the InferenceService of section 4 serves.
#
# The Kubeflow SDK's `TrainerClient` submits it. `CustomTrainerContainer` says which image runs
# on how many nodes, with what resources and environment; `TrainerArgs` what each node runs; a
# `RuntimePatch` adds the shared volume and the pods' `fsGroup` to the runtime's `node` job (a
# TrainJob's trainer cannot declare volumes); `Name` and `Labels` name it. Each value is read
# from the manifest, so the SDK creates the TrainJob `kubectl apply` would, but for one thing:
# the SDK sets a node's resource requests equal to its limits. (On a cluster that still runs the
# Training Operator v1, the `legacy-v1/` kustomize Component swaps in `tfjob.yaml`, the same
# training as a TFJob with a chief and a worker.)

# %%
from kubeflow.trainer import CustomTrainerContainer
from kubeflow.trainer.options import (
    ContainerPatch,
    JobSetSpecPatch,
    JobSetTemplatePatch,
    JobSpecPatch,
    JobTemplatePatch,
    Labels,
    Name,
    PodSpecPatch,
    PodTemplatePatch,
    ReplicatedJobPatch,
    RuntimePatch,
    TrainerArgs,
    TrainingRuntimeSpecPatch,
)

runtime = manifest("tensorflow-runtime.yaml")
trainjob = manifest("trainjob.yaml")
spec = trainjob["spec"]
# The manifest's patch of the runtime's `node` job: its pods' template and `node` container.
patched = spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
(node_job,) = patched["replicatedJobs"]
pod = node_job["template"]["spec"]["template"]
(node_container,) = pod["spec"]["containers"]

trainer = CustomTrainerContainer(
    image=spec["trainer"]["image"],
    num_nodes=spec["trainer"]["numNodes"],
    resources_per_node=spec["trainer"]["resourcesPerNode"]["limits"],
    env={e["name"]: e["value"] for e in spec["trainer"].get("env", [])},
)
pod_patch = PodSpecPatch(
    security_context=pod["spec"].get("securityContext"),
    volumes=pod["spec"]["volumes"],
    containers=[
        ContainerPatch(name=node_container["name"], volume_mounts=node_container["volumeMounts"])
    ],
)
volume_patch = RuntimePatch(
    training_runtime_spec=TrainingRuntimeSpecPatch(
        template=JobSetTemplatePatch(
            spec=JobSetSpecPatch(
                replicated_jobs=[
                    ReplicatedJobPatch(
                        name=node_job["name"],
                        template=JobTemplatePatch(
                            spec=JobSpecPatch(
                                template=PodTemplatePatch(
                                    metadata=pod.get("metadata"), spec=pod_patch
                                )
                            )
                        ),
                    )
                ]
            )
        )
    )
)
options = [
    Name(trainjob["metadata"]["name"]),
    Labels(trainjob["metadata"]["labels"]),
    TrainerArgs(spec["trainer"]["args"]),
    volume_patch,
]
runtime_ref = spec["runtimeRef"]
print(f"TrainJob {trainjob['metadata']['name']} on {runtime_ref['kind']} {runtime_ref['name']}:")
print(f"  {trainer.num_nodes} nodes, each {trainer.resources_per_node}, env {trainer.env}")
print("  args:", " ".join(spec["trainer"]["args"]))

# %% [markdown]
# On a cluster the runtime goes first: the Kubernetes client creates the `TrainingRuntime` in
# your namespace (or replaces it, if an earlier run left one). Then `train` creates the
# TrainJob, `wait_for_job_status` polls it until Trainer marks it `Complete` (or raises when it
# fails), and `get_job_logs` reads node 0's log. A TrainJob's name is taken until you delete it
# (`kubectl delete trainjob recommender`), so run this cell once per name.
#
# Locally, with `model_dir = None`, the harness builds the JobSet the runtime describes from the
# same two objects and starts each node as a process on 127.0.0.1, with the environment a pod
# would get, on the sample (case.toml's smoke arguments); given a `model_dir`, it serves that.

# %%
if cluster:
    from kubeflow.trainer import KubernetesBackendConfig, TrainerClient
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    config.load_config()
    api = client.CustomObjectsApi()
    runtimes = ("trainer.kubeflow.org", "v1alpha1", namespace, "trainingruntimes")
    try:
        api.create_namespaced_custom_object(*runtimes, runtime)
    except ApiException as e:
        if e.status != 409:  # 409: it exists; replace it with this version
            raise
        name = runtime["metadata"]["name"]
        current = api.get_namespaced_custom_object(*runtimes, name)
        runtime["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        api.replace_namespaced_custom_object(*runtimes, name, runtime)

    trainer_client = TrainerClient(backend_config=KubernetesBackendConfig(namespace=namespace))
    found = trainer_client.get_runtime(runtime_ref["name"])
    print(f"runtime {found.name}: {found.kind.value}, framework {found.trainer.framework}")
    job_name = trainer_client.train(runtime=found, trainer=trainer, options=options)
    finished = trainer_client.wait_for_job_status(job_name, timeout=timeout, polling_interval=10)
    print(f"TrainJob {job_name}: {finished.status}")
    # node-0 is worker 0, the chief: the node that evaluates and writes the model.
    node_0 = list(trainer_client.get_job_logs(job_name, step="node-0"))
    print("\n".join(node_0[-12:]))
elif model_dir is None:
    from tests.harness import jobs

    job = jobs.run_job(trainjob, workdir=work / "trainjob", timeout=timeout, runtimes=[runtime])
    print(job.summary())
    job.raise_for_failure()
    print(f"TrainJob {job.name}: {job.reason}")
    print("\n".join(job.primary().log().splitlines()[-12:]))
    # Node 0, the chief, wrote the model where /mnt/pvc/recommender stands on this machine.
    model_dir = next((work / "trainjob").rglob("model.keras")).parent
else:
    print(f"local: section 4 serves {model_dir}; set model_dir = None to run the TrainJob here")

# %% [markdown]
# ## 2. Hyperparameter search: a Katib Experiment
#
# `manifests/katib-experiment.yaml` searches the embedding size `n_factors` (the book's 50 in
# the middle of its range), the dropout and Adam's learning rate for the largest validation
# NDCG@10, the figure the model is judged by (its loss is not: section 4 of the walkthrough
# shows why). Its algorithm is multivariate TPE: after a few random trials it models which
# combinations score well, the three values together. Each trial is a two-node TrainJob on the
# runtime of section 1 (so that runtime must exist in the namespace), and Katib's StdOut
# collector reads the `val_ndcg_at_10=...` lines node 0 prints after every epoch. The Katib SDK
# cannot share this environment (it pins an old protobuf), so the Experiment goes through
# Katib's API model from the `kubeflow` package and the Kubernetes client.

# %%
import json

import pandas as pd
from kubeflow_katib_api.models import V1beta1Experiment

# Nothing of it runs here, so it is the cluster's Experiment, locally too.
experiment = V1beta1Experiment.from_dict(manifest("katib-experiment.yaml", shrink=False))
experiment_doc = experiment.to_dict()
print(
    f"Experiment {experiment.metadata.name}: {experiment.spec.algorithm.algorithm_name},",
    f"{experiment.spec.objective.type} {experiment.spec.objective.objective_metric_name},",
    f"{experiment.spec.max_trial_count} trials, {experiment.spec.parallel_trial_count} at a time,",
    f"each a {experiment.spec.trial_template.trial_spec['kind']}",
)
pd.DataFrame(
    [
        {
            "parameter": p.name,
            "type": p.parameter_type,
            "from": p.feasible_space.min,
            "to": p.feasible_space.max,
            "drawn": p.feasible_space.distribution or "uniform",
        }
        for p in experiment.spec.parameters
    ]
).set_index("parameter")

# %% [markdown]
# Katib keeps each trial as a `Trial` object (`kubectl get trials -o json` shows them): its
# `spec.parameterAssignments` (name and value, as strings) and, once the collector has read
# them, `status.observation.metrics` (each metric's `latest`, `min` and `max`, also strings).
# `trial_table` turns a list of Trials into one row per trial, typed as the Experiment's
# parameters are, and `plot_trials` draws it.

# %%
import math

import matplotlib.pyplot as plt
import pandas as pd


# Copied from mnist.notebooks.kubeflow.trial_table
def trial_table(trials: list[dict], experiment: dict) -> pd.DataFrame:
    """One row per Katib Trial (JSON as the API returns it): name, status, parameters, metrics."""
    spec = experiment["spec"]
    kinds = {"int": int, "double": float}
    types = {p["name"]: kinds.get(p["parameterType"], str) for p in spec["parameters"]}
    metric_names = [
        spec["objective"]["objectiveMetricName"],
        *(spec["objective"].get("additionalMetricNames") or []),
    ]
    rows = []
    for trial in trials:
        status = trial.get("status") or {}
        # The trial's own objective carries the metric strategies Katib defaulted.
        objective = trial["spec"].get("objective") or spec["objective"]
        default = "max" if objective["type"] == "maximize" else "min"
        strategy = {s["name"]: s["value"] for s in objective.get("metricStrategies") or []}
        true = [c["type"] for c in status.get("conditions") or [] if c["status"] == "True"]
        row = {"trial": trial["metadata"]["name"], "status": true[-1] if true else "Created"}
        for p in trial["spec"].get("parameterAssignments") or []:
            row[p["name"]] = types.get(p["name"], str)(p["value"])
        for m in (status.get("observation") or {}).get("metrics") or []:
            try:  # Katib writes "unavailable" when the collector found no value
                row[m["name"]] = float(m.get(strategy.get(m["name"], default)))
            except (TypeError, ValueError):
                row[m["name"]] = math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=["trial", "status", *types, *metric_names])


def plot_trials(trials: pd.DataFrame, experiment: dict):
    """Each scored trial's validation NDCG@10 against its learning rate, over the range searched;
    the point's size is n_factors, its colour the dropout. Returns the figure (None: no scores)."""
    spec = experiment["spec"]
    metric = spec["objective"]["objectiveMetricName"]
    scored = trials.dropna(subset=[metric])
    if scored.empty:
        return None
    space = next(p["feasibleSpace"] for p in spec["parameters"] if p["name"] == "learning_rate")
    dropout = next(p["feasibleSpace"] for p in spec["parameters"] if p["name"] == "dropout")
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    points = ax.scatter(
        scored["learning_rate"],
        scored[metric],
        s=scored["n_factors"] * 2,
        c=scored["dropout"],
        cmap="viridis",
        vmin=float(dropout["min"]),
        vmax=float(dropout["max"]),
        edgecolors="black",
        zorder=2,
    )
    for _, trial in scored.iterrows():
        ax.annotate(f"{trial['n_factors']}", (trial["learning_rate"], trial[metric]),
                    xytext=(8, -3), textcoords="offset points", fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(float(space["min"]) / 1.2, float(space["max"]) * 1.2)
    ax.margins(y=0.2)
    ax.grid(alpha=0.3)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(metric)
    ax.set_title(f"{experiment['metadata']['name']}: one point per trial, labelled n_factors")
    fig.colorbar(points, ax=ax, label="dropout")
    fig.tight_layout()
    return fig


# %% [markdown]
# On a cluster the notebook creates the Experiment, waits for Katib to say it succeeded or
# failed, and lists its Trials by the label Katib puts on each,
# `katib.kubeflow.org/experiment=recommender-tpe`. It reads the Trial objects rather than the
# TrainJobs: Katib deletes a trial's TrainJob once the trial is done, and the Trial keeps what
# the table needs. Locally it shows what it would create (the case's tests run its smoke form,
# case.toml's overrides, through the harness: a few one-node trials on the sample).

# %%
if cluster:
    import time

    from kubernetes import client, config

    config.load_config()
    api = client.CustomObjectsApi()
    katib_api = ("kubeflow.org", "v1beta1", namespace)
    api.create_namespaced_custom_object(*katib_api, "experiments", experiment_doc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.get_namespaced_custom_object(
            *katib_api, "experiments", experiment.metadata.name
        ).get("status", {})
        done = [c for c in status.get("conditions", []) if c["type"] in ("Succeeded", "Failed")]
        if any(c["status"] == "True" for c in done):
            break
        time.sleep(30)
    print(json.dumps(status.get("currentOptimalTrial", {}), indent=2))
    katib_trials = api.list_namespaced_custom_object(
        *katib_api,
        "trials",
        label_selector=f"katib.kubeflow.org/experiment={experiment.metadata.name}",
    )["items"]
    trials = trial_table(katib_trials, experiment_doc)
    display_trials = trials.sort_values(
        experiment.spec.objective.objective_metric_name, ascending=False
    )
    if plot_trials(trials, experiment_doc):
        plt.show()
else:
    trial_spec = experiment_doc["spec"]["trialTemplate"]["trialSpec"]
    print(f"local: each trial would be a {trial_spec['kind']} running")
    print("  ", " ".join(trial_spec["spec"]["trainer"]["args"]))
    display_trials = None  # Katib's trials exist only on a cluster
display_trials

# %% [markdown]
# ## 3. Keeping it fresh: the pipeline, every 30 minutes
#
# The book's "recommender model update" retrained and republished the model every 30 minutes,
# whatever the new model scored. `recommender/pipeline.py` keeps the schedule and adds the
# check: `update-data` reads the newest transactions and the frozen holdout (a tenth of every
# customer's purchases, frozen at the first run, never trained on), `train` runs the TrainJob of
# section 1 on the rest, `evaluate` scores the new model (the challenger) and the serving one
# (the champion) on that same holdout, and `publish` runs only when the challenger's NDCG@10 is
# higher: it becomes the next version and takes the traffic in steps (10, 50, 100 percent), by
# a weighted route across two InferenceServices in KServe's Standard mode, or by
# `canaryTrafficPercent` where KServe runs serverless. A worse model leaves the champion
# serving. It is compiled into `manifests/pipeline.yaml`, which you can also upload in the
# Pipelines UI.
#
# `pipeline.schedule(kfp_client)` creates the recurring run with `kfp.Client`: the compiled
# pipeline in the experiment `recommender-model-update`, on the cron schedule
# `0 */30 * * * *` (KFP reads six fields, seconds first: minute 0 and 30 of every hour), with
# `max_concurrency=1` (a run that takes longer than 30 minutes delays the next one rather than
# racing it for the champion) and `no_catchup=True` (after a pause it runs once, not once per
# missed half hour).
#
# Locally there is no KFP API to talk to. The same `kfp.Client` builds the same request, and a
# stand-in for its API service records what it would have sent: the experiment, then the
# recurring run with the whole compiled pipeline in it (the experiment's link that `kfp.Client`
# shows leads nowhere here). (`recommender/tests/test_pipeline.py`
# runs the pipeline itself twice with `kfp.local`: the second run publishes version 2 only when
# it is better.)

# %%
import warnings
from types import SimpleNamespace

import kfp
import kfp_server_api

from recommender import pipeline


class RecordedKfpApi:
    """Stands in for the KFP API server behind kfp.Client's generated service clients: records
    every request, finds nothing that exists, and creates what it is asked to, with an id."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []

    def __getattr__(self, method: str):
        def call(**kwargs):
            self.requests.append((method, kwargs))
            if "_list_" in method:  # an empty page of anything
                return SimpleNamespace(experiments=[], recurring_runs=[], runs=[], total_size=0)
            if "_create_" in method:  # experiment_service_create_experiment: experiment_id
                kind = method.split("_create_")[1]
                (body,) = kwargs.values()
                setattr(body, f"{kind}_id", f"local-{kind.replace('_', '-')}-{len(self.requests)}")
                return body
            raise kfp_server_api.ApiException(status=404, reason=f"{method}: nothing here")

        return call


with warnings.catch_warnings():  # kfp.Client says which KFP versions it works with: 2.0 and later
    warnings.filterwarnings("ignore", "This client only works", FutureWarning)
    kfp_client = kfp.Client(
        host=kfp_host if cluster else "http://ml-pipeline-ui", namespace=namespace
    )
if not cluster:
    recorded = RecordedKfpApi()
    kfp_client._experiment_api = kfp_client._recurring_run_api = recorded

recurring = pipeline.schedule(kfp_client, namespace=namespace, arguments=pipeline_arguments)
trigger = recurring.trigger.cron_schedule or recurring.trigger.periodic_schedule
print(f"recurring run {recurring.display_name} ({recurring.recurring_run_id})",
      f"in experiment {recurring.experiment_id}:")  # fmt: skip
print(f"  schedule {trigger}".replace("\n", " "))
print(f"  max_concurrency {recurring.max_concurrency}, no_catchup {recurring.no_catchup},",
      f"mode {recurring.mode}")  # fmt: skip
print(f"  {recurring.description}")

# %% [markdown]
# Every run of it gets the pipeline's defaults, with `pipeline_arguments` over them: the table
# below is what each half-hourly run receives. On a cluster the runs appear under the experiment
# in the Pipelines UI; `kfp_client.list_runs(experiment_id=...)` lists them here, and
# `kfp_client.disable_recurring_run(recurring.recurring_run_id)` pauses the schedule.

# %%
import yaml

compiled = next(yaml.safe_load_all((case.path / "manifests/pipeline.yaml").read_text()))
inputs = compiled["root"]["inputDefinitions"]["parameters"]
sent = recurring.runtime_config.parameters or {}


def shown(value, kind: str):
    """A parameter's value as the pipeline reads it (the compiled YAML keeps integers as floats)."""
    if kind == "NUMBER_INTEGER":
        return int(value)
    if kind == "LIST":
        return [int(v) if float(v).is_integer() else v for v in value]
    return value


run_arguments = pd.DataFrame(
    [
        {
            "parameter": name,
            "each run gets": shown(
                sent.get(name, declared.get("defaultValue")), declared["parameterType"]
            ),
            "from": "pipeline_arguments" if name in sent else "default",
        }
        for name, declared in inputs.items()
    ]
).set_index("parameter")
if not cluster:
    print("requests to the KFP API:", [method for method, _ in recorded.requests])
    tasks = sorted(recurring.pipeline_spec["pipeline_spec"]["root"]["dag"]["tasks"])
    print(f"the recurring run carries the compiled pipeline {compiled['pipelineInfo']['name']}:",
          "tasks", tasks, "(publish inside the condition better-than-champion)")  # fmt: skip
run_arguments

# %% [markdown]
# ## 4. Serving: an InferenceService
#
# The KServe SDK builds the InferenceService; its predictor is the container of
# `manifests/inferenceservice.yaml`: `python -m recommender.serve`, with the model KServe mounts
# at /mnt/models from the models volume (the TrainJob's chief wrote it; the pipeline's publish
# step later points the rollout's InferenceServices at the versions it publishes). The server
# answers what TF Serving cannot: the top N products for a raw customer id, without what that
# customer already bought; the most popular products, marked `fallback`, for a customer it
# does not know; and, in every answer, the model version that gave it.

# %%
from kserve import (
    KServeClient,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1PredictorSpec,
    constants,
)
from kubernetes import client as k8s


class _Response:
    """What ApiClient.deserialize reads: a body with JSON in .data."""

    def __init__(self, doc: dict) -> None:
        self.data = json.dumps(doc)


doc = manifest("inferenceservice.yaml")
predictor = doc["spec"]["predictor"]
containers = [
    k8s.ApiClient().deserialize(_Response(c), "V1Container") for c in predictor["containers"]
]
isvc = V1beta1InferenceService(
    api_version=constants.KSERVE_V1BETA1,
    kind=constants.KSERVE_KIND_INFERENCESERVICE,
    metadata=k8s.V1ObjectMeta(
        name=doc["metadata"]["name"],
        namespace=namespace,
        labels=doc["metadata"].get("labels"),
        annotations=doc["metadata"].get("annotations"),  # KServe's Standard deployment mode
    ),
    spec=V1beta1InferenceServiceSpec(
        predictor=V1beta1PredictorSpec(
            min_replicas=predictor.get("minReplicas"),
            max_replicas=predictor.get("maxReplicas"),
            containers=containers,
        )
    ),
)
rendered = k8s.ApiClient().sanitize_for_serialization(isvc)
assert rendered == doc, "the SDK object differs from manifests/inferenceservice.yaml"
print(isvc.metadata.name, "->", " ".join(containers[0].command + containers[0].args))

# %% [markdown]
# On the cluster the KServe client creates it and waits until it is ready; query it with the
# request in `sample/request.json` (the `curl` line in the manifest's comment shows how, through
# Kubeflow's ingress). Locally the harness starts the very same container command on 127.0.0.1
# with the model of section 1 and asks it about the three customers of `sample/request.json`:
# two it knows, whose lists must leave out everything they bought (`purchases.npz`, beside the
# model, says what that was), and one it does not, who gets the most popular products.

# %%
request = json.loads((case.path / "sample" / "request.json").read_text())
if cluster:
    kserve_client = KServeClient()
    kserve_client.create(isvc, namespace=namespace, watch=True, timeout_seconds=timeout)
    url = kserve_client.get(isvc.metadata.name, namespace=namespace)["status"]["url"]
    print("served at", url)
else:
    from recommender.data import IdMapping
    from recommender.export import Purchases
    from tests.harness import serving

    with serving.serve(rendered, workdir=work / "serving", model_dir=Path(model_dir)) as server:
        answer = server.v1_predict(request["instances"])
    body = answer.json()
    print("HTTP", answer.status_code, "| model version", body["model_version"],
          "| header x-model-version", answer.headers.get("x-model-version"))  # fmt: skip
    mapping, purchases = IdMapping.load(model_dir), Purchases.load(model_dir)
    bought_again = []
    for asked, served in zip(request["instances"], body["predictions"], strict=True):
        customer = asked["customer"]
        kind = "fallback: most popular" if served["fallback"] else "personal"
        print(f"\ncustomer {customer} ({kind}): {', '.join(served['products'])}")
        if customer in mapping.user_index:
            bought = [mapping.item_ids[i] for i in purchases.bought(mapping.user_index[customer])]
            print("  bought before:", ", ".join(bought))
            bought_again += [product for product in served["products"] if product in bought]
    print("\nproducts offered again to a customer who bought them:", bought_again or "none")

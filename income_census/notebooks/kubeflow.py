# %% [markdown]
# # Census income on Kubeflow: distributed XGBoost, tuning, a pipeline, serving with explanations
#
# `walkthrough.ipynb` trained the book's RandomForest, explained two people and served the model
# on this machine. This notebook takes the same code onto a Kubeflow cluster with the official
# SDKs, one Kubeflow piece per section:
#
# 1. a **TrainJob** (Kubeflow Trainer v2): XGBoost trained by two nodes at once on Trainer's
#    stock `xgboost-distributed` runtime, submitted and watched with the Kubeflow SDK's
#    `TrainerClient`;
# 2. a **Katib Experiment** that tunes XGBoost's rounds, depth, learning rate and leaf size with
#    Tree-structured Parzen Estimators;
# 3. a **Kubeflow Pipeline** (load, train, evaluate, explain, deploy if accurate enough) run with
#    `kfp.Client`, whose explain step leaves anchors as a Markdown report;
# 4. an **InferenceService** with a predictor and an explainer, created with the KServe SDK,
#    then asked to predict and to explain.
#
# Every section builds its resource from the files in `income_census/manifests/`, the ones
# `kubectl apply -k income_census/manifests` would create. With `cluster = True` (run it in a
# Kubeflow notebook server, or anywhere with a kubeconfig for your profile's namespace) each
# resource is created on the cluster and the notebook waits for it. With `cluster = False` the
# very same objects run on this machine through the repository's test harness (`tests/harness`)
# and `kfp.local`, shrunk to the committed sample by the overrides in `income_census/case.toml`.

# %% tags=["parameters"]
cluster = False  # True: create everything on the cluster of the current kubeconfig
namespace = "kubeflow-user-example-com"  # your Kubeflow profile's namespace
kfp_host = None  # None inside a Kubeflow notebook server; else the KFP API URL
work_dir = "runs/income-kubeflow"  # local runs write their logs and models here
timeout = 1800  # seconds to wait for each step before giving up

# %%
import os
import sys
from pathlib import Path

root = next(
    p for p in [Path.cwd(), *Path.cwd().parents] if (p / "income_census" / "case.toml").exists()
)
os.chdir(root)
sys.path.insert(0, str(root))
work = Path(work_dir).resolve()
work.mkdir(parents=True, exist_ok=True)

from tests.harness import cases, manifests

case = cases.load_case(root / "income_census")


def manifest(name: str) -> dict:
    """A manifest as the cluster gets it, or shrunk to the sample by case.toml when local."""
    path = case.path / "manifests" / name
    doc = manifests.load(path)[0]
    if not cluster:
        doc = manifests.apply_overrides(doc, case.overrides_for(path))
    doc.setdefault("metadata", {})["namespace"] = namespace
    return doc


print("cluster" if cluster else "local run through tests/harness", "| namespace", namespace)

# %% [markdown]
# ## 1. Distributed training: a TrainJob
#
# `manifests/trainjob.yaml` asks Kubeflow Trainer for two nodes on its stock `xgboost-distributed`
# runtime, each running `python -m income_census.train_distributed`. The runtime tells every
# node who it is: `DMLC_TASK_ID` (its index, 0 or 1), `DMLC_NUM_WORKER` (2) and
# `DMLC_TRACKER_URI`/`DMLC_TRACKER_PORT` (node 0's DNS name and port 29500). Node 0 starts
# XGBoost's tracker there, both join its collective and train on half of the rows each, and the
# gradient statistics are summed across them at every tree level, so they grow one model
# together. Only node 0 writes it, to `/mnt/pvc/income-xgboost` on the `income-models` volume.
#
# The Kubeflow SDK's `TrainerClient` submits it. `CustomTrainerContainer` says which image runs
# on how many nodes with what resources, `TrainerCommand` and `TrainerArgs` what it runs, and a
# `RuntimePatch` adds the shared volume, the pod's `fsGroup` and the container's
# `securityContext` to the runtime's `node` job (a TrainJob's trainer cannot declare volumes).
# Each value is read from the manifest, so the SDK creates the TrainJob `kubectl apply` would.
# (On a cluster that still runs the Training Operator v1, `manifests/legacy-v1/xgboostjob.yaml`
# is the same training as an XGBoostJob.)

# %%
import json

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
    TrainerCommand,
    TrainingRuntimeSpecPatch,
)

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
    # The SDK sets requests and limits alike, as the manifest does.
    resources_per_node=spec["trainer"]["resourcesPerNode"]["limits"],
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
                                    metadata=pod["metadata"],
                                    spec=PodSpecPatch(
                                        security_context=pod["spec"]["securityContext"],
                                        volumes=pod["spec"]["volumes"],
                                        containers=[
                                            ContainerPatch(
                                                name=node_container["name"],
                                                security_context=node_container["securityContext"],
                                                volume_mounts=node_container["volumeMounts"],
                                            )
                                        ],
                                    ),
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
    TrainerCommand(spec["trainer"]["command"]),
    TrainerArgs(spec["trainer"]["args"]),
    volume_patch,
]
print(f"TrainJob {trainjob['metadata']['name']} on {spec['runtimeRef']['name']}:", end=" ")
print(f"{trainer.num_nodes} nodes, each {trainer.resources_per_node}")
print("command:", " ".join(spec["trainer"]["command"] + spec["trainer"]["args"]))

# %%
if cluster:
    from kubeflow.trainer import KubernetesBackendConfig, TrainerClient

    trainer_client = TrainerClient(KubernetesBackendConfig(namespace=namespace))
    job_name = trainer_client.train(
        runtime=spec["runtimeRef"]["name"], trainer=trainer, options=options
    )
    finished = trainer_client.wait_for_job_status(job_name, timeout=timeout, polling_interval=10)
    print(f"TrainJob {job_name}: {finished.status}")
    # node-0 is rank 0: the tracker, and the only node that evaluates and writes the model.
    print("\n".join(trainer_client.get_job_logs(job_name, step="node-0"))[-3000:])
else:
    from tests.harness import jobs

    job = jobs.run_job(trainjob, workdir=work / "trainjob", timeout=timeout)
    print(job.summary())
    job.raise_for_failure()
    print(job.primary().log()[-1500:])
    # Node 0 wrote the model where /mnt/pvc/income-xgboost stands on this machine.
    xgb_model_dir = next((work / "trainjob").rglob("model.joblib")).parent
    print("metrics.json:", json.loads((xgb_model_dir / "metrics.json").read_text()))

# %% [markdown]
# ## 2. Hyperparameter search: a Katib Experiment
#
# `manifests/katib-experiment.yaml` searches XGBoost's number of rounds (50 to 400), depth (3 to
# 10), learning rate (0.02 to 0.3) and `min_child_weight` (1 to 10) with TPE, which models the
# trials so far to propose the next ones: 12 trials, 3 at a time, each a plain batch Job running
# `python -m income_census.train --model=xgboost` (one process: a trial needs no TrainJob).
# Katib's StdOut collector reads the `test_accuracy=...` line it prints. The Katib SDK cannot
# share this environment (it pins an old protobuf), and the `kubeflow` package's
# `OptimizerClient` reads every trial back as a TrainJob, which these are not; so the Experiment
# goes through Katib's API models from the `kubeflow` package and the Kubernetes client, and so
# do its Trials when it is done. (Locally, the smoke form runs 3 trials one at a time: two
# random start-up trials, then one that TPE proposes from their results.)

# %%
from typing import NamedTuple

from kubeflow_katib_api.models import V1beta1Experiment


class TrialPoint(NamedTuple):
    """What the plot below needs of a trial, from the cluster or from the local run."""

    name: str
    parameters: dict[str, str]
    objective: float


experiment = V1beta1Experiment.from_dict(manifest("katib-experiment.yaml"))
print(
    experiment.metadata.name,
    "|",
    experiment.spec.algorithm.algorithm_name,
    "search over",
    [p.name for p in experiment.spec.parameters],
)

# %%
if cluster:
    import time

    from kubernetes import client, config

    config.load_config()
    api = client.CustomObjectsApi()
    body = experiment.to_dict()
    api.create_namespaced_custom_object("kubeflow.org", "v1beta1", namespace, "experiments", body)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.get_namespaced_custom_object(
            "kubeflow.org", "v1beta1", namespace, "experiments", experiment.metadata.name
        ).get("status", {})
        done = [c for c in status.get("conditions", []) if c["type"] in ("Succeeded", "Failed")]
        if any(c["status"] == "True" for c in done):
            break
        time.sleep(30)
    print(json.dumps(status.get("currentOptimalTrial", {}), indent=2))

    # The Experiment's Trials, as `kubectl get trials -l katib.kubeflow.org/experiment=...`.
    from kubeflow_katib_api.models import V1beta1TrialList

    listed = api.list_namespaced_custom_object(
        "kubeflow.org",
        "v1beta1",
        namespace,
        "trials",
        label_selector=f"katib.kubeflow.org/experiment={experiment.metadata.name}",
    )
    objective = experiment.spec.objective
    trials = []
    for t in V1beta1TrialList.from_dict(listed).items:
        observed = {m.name: m for m in (t.status.observation.metrics or [])} if t.status else {}
        metric = observed.get(objective.objective_metric_name)
        if metric is None or metric.max is None:
            continue  # still running, or failed before it printed the metric
        # Katib's default metric strategy: a maximised objective counts a trial's best value.
        value = metric.max if objective.type == "maximize" else metric.min
        parameters = {p.name: p.value for p in t.spec.parameter_assignments}
        trials.append(TrialPoint(t.metadata.name, parameters, float(value)))
    print(f"{len(trials)} trials with {objective.objective_metric_name} read back")
else:
    from tests.harness import katib

    result = katib.run_experiment(experiment.to_dict(), workdir=work / "katib", timeout=timeout)
    print(result.format_trials())
    print(result.describe())
    trials = [
        TrialPoint(t.name, t.parameters, t.objective)
        for t in result.trials
        if t.objective is not None
    ]

# %% [markdown]
# Each trial's test accuracy against its learning rate, labelled with its depth and rounds. On
# this data the differences are small (the accuracies sit within a point or two of each other);
# what tuning buys here is mostly confidence that no corner of the space does much better.

# %%
import matplotlib.pyplot as plt

if trials:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    rates = [float(t.parameters["learning_rate"]) for t in trials]
    accuracies = [t.objective for t in trials]
    ax.scatter(rates, accuracies, color="tab:orange")
    for t, x, y in zip(trials, rates, accuracies, strict=True):
        label = f" depth {t.parameters['max_depth']}, {t.parameters['n_estimators']} rounds"
        ax.annotate(label, (x, y), fontsize=8)
    ax.margins(x=0.3)  # room for the labels
    ax.set_xlabel("learning rate")
    ax.set_ylabel("test_accuracy")
    ax.set_title(f"{experiment.metadata.name}: one point per trial")
    plt.show()

# %% [markdown]
# ## 3. The pipeline: load, train, evaluate, explain, deploy when accurate enough
#
# `income_census/pipeline.py` is compiled into `manifests/pipeline.yaml`, the file you can also
# upload in the Pipelines UI. It trains the book's RandomForest with the same
# `income_census.train` code, logs the accuracy and the confusion matrix the UI draws, explains
# the first test people predicted in each class with anchors, and deploys an InferenceService
# only when the accuracy reaches `threshold`. On a cluster the defaults use the full data;
# locally `case.toml` asks for the sample, a threshold of 0.82 and one explanation per class.

# %%
import income_census.pipeline

arguments = dict(case.smoke.get("pipeline", {}).get("arguments", {})) if not cluster else {}
if cluster:
    import kfp

    kfp_client = kfp.Client(host=kfp_host, namespace=namespace)
    run = kfp_client.create_run_from_pipeline_package(
        str(case.path / "manifests/pipeline.yaml"), arguments=arguments, namespace=namespace
    )
    finished = kfp_client.wait_for_run_completion(run.run_id, timeout=timeout)
    print("pipeline run", run.run_id, finished.state)
    print("the explain step's anchors: the run's page in the Pipelines UI, Visualizations tab")
else:
    import contextlib
    import re
    import warnings

    from tests.harness import pipelines

    # kfp.local streams every task's full executor input to stdout: keep it in a file instead,
    # and skip its warning that CPU and memory settings mean nothing on a laptop.
    log_path = work / "pipeline.log"
    with log_path.open("w") as log, contextlib.redirect_stdout(log), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Task .* have no effect", UserWarning)
        local_run = pipelines.run_local(
            pipelines.find_pipeline(income_census.pipeline), arguments, workdir=work / "pipeline"
        )
    for line in log_path.read_text().splitlines():
        if "finished with status" in line or " because " in line:
            print(re.sub(r"\x1b\[[0-9;]*m", "", line).split(" - INFO - ")[-1].strip())
    print("kfp.local's whole log:", log_path)
    print("tasks run:", local_run.tasks())
    print("evaluated accuracy:", round(local_run.parameters("evaluate")["Output"], 4))

# %% [markdown]
# The explain step's report is a Markdown artifact; the Pipelines UI shows it in the run's
# Visualizations tab. Here it is as the local run wrote it. Expect what the walkthrough found: a
# short, precise rule for a `<=50K` prediction, a long one for `>50K`, because only about a
# quarter of the people the explainer samples from earn more than $50K.

# %%
from IPython.display import Markdown, display

if not cluster:
    display(Markdown(local_run.artifact("explain", "report").read_text()))
    # What the deploy step would create on a cluster (a laptop run renders it only).
    print(local_run.artifact("deploy", "inference_service").read_text())

# %% [markdown]
# ## 4. Serving with explanations: an InferenceService
#
# The KServe SDK builds the InferenceService of `manifests/inferenceservice.yaml`: a predictor
# and an explainer, both running `python -m income_census.serve` on the model folder KServe
# mounts at /mnt/models from `STORAGE_URI`. KServe sends `:predict` and V2 `/infer` to the
# predictor and `:explain` to the explainer, which makes its hundreds of anchor predictions in
# its own process. The manifest points at `income` on the volume, where `manifests/train-job.yaml`
# puts the book's RandomForest; this notebook trained XGBoost into `income-xgboost` with the
# TrainJob, so both containers are pointed there.

# %%
from kserve import (
    KServeClient,
    V1beta1Batcher,
    V1beta1ExplainerSpec,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1PredictorSpec,
    constants,
)
from kubernetes import client as k8s

storage_uri = "pvc://income-models/income-xgboost"  # the TrainJob's --model-dir
doc = manifest("inferenceservice.yaml")
for component in ("predictor", "explainer"):
    for env in doc["spec"][component]["containers"][0]["env"]:
        if env["name"] == "STORAGE_URI":
            env["value"] = storage_uri


class _Response:
    """What ApiClient.deserialize reads: a body with JSON in .data."""

    def __init__(self, doc: dict) -> None:
        self.data = json.dumps(doc)


def containers_of(component: dict) -> list:
    return [
        k8s.ApiClient().deserialize(_Response(c), "V1Container") for c in component["containers"]
    ]


predictor, explainer = doc["spec"]["predictor"], doc["spec"]["explainer"]
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
            # KServe's request batcher: single requests merged into model batches.
            batcher=V1beta1Batcher(
                max_batch_size=predictor["batcher"]["maxBatchSize"],
                max_latency=predictor["batcher"]["maxLatency"],
            ),
            containers=containers_of(predictor),
        ),
        explainer=V1beta1ExplainerSpec(
            min_replicas=explainer.get("minReplicas"),
            max_replicas=explainer.get("maxReplicas"),
            containers=containers_of(explainer),
        ),
    ),
)
rendered = k8s.ApiClient().sanitize_for_serialization(isvc)
assert rendered == doc, "the SDK object differs from manifests/inferenceservice.yaml"
command = isvc.spec.predictor.containers[0]
print(isvc.metadata.name, "->", " ".join(command.command + command.args), "| model", storage_uri)

# %% [markdown]
# `sample/request.json` holds two people: the book's positional row
# `[39, 7, 1, 1, 1, 1, 4, 1, 2174, 0, 40, 9]` (categories as the book's integer codes) and one
# keyed by column name. Locally the harness runs the predictor's command with the TrainJob's
# model folder standing in for /mnt/models; one server answers all three endpoints there. We
# ask it to predict both people and to explain the first, and check the answers against the
# same model in this process.

# %%
import joblib
import numpy as np

from income_census import rows
from income_census.explain import CLASS_NAMES

request = json.loads((case.path / case.smoke["serve"]["request"]).read_text())
if cluster:
    # The pipeline's deploy step may have created `income` already: then replace it.
    kserve_client = KServeClient()
    existing = kserve_client.get(namespace=namespace)["items"]
    if any(i["metadata"]["name"] == isvc.metadata.name for i in existing):
        kserve_client.replace(
            isvc.metadata.name, isvc, namespace=namespace, watch=True, timeout_seconds=timeout
        )
    else:
        kserve_client.create(isvc, namespace=namespace, watch=True, timeout_seconds=timeout)
    url = kserve_client.get(isvc.metadata.name, namespace=namespace)["status"]["url"]
    print("served at", url, "- ask it with:")
    for verb in ("predict", "explain"):
        print(f"  curl -d @income_census/sample/request.json {url}/v1/models/income:{verb}")
else:
    from tests.harness import serving

    with serving.serve(rendered, workdir=work / "serving", model_dir=xgb_model_dir) as server:
        answer = server.v1_predict(request["instances"])
        print("predict: HTTP", answer.status_code, "from", server.url)
        served = answer.json()["predictions"]
        explained = server.post(
            f"/v1/models/{server.model_name}:explain", {"instances": request["instances"][:1]}
        )
        print("explain: HTTP", explained.status_code)
        served_anchor = explained.json()["explanations"][0]

    pipeline = joblib.load(xgb_model_dir / "model.joblib")
    in_process = pipeline.predict_proba(rows.parse_rows(request["instances"]))
    print("served labels:    ", [p["label"] for p in served])
    print("in-process labels:", [CLASS_NAMES[c] for c in in_process.argmax(axis=1)])
    served_probabilities = np.array([p["probabilities"] for p in served])
    print(
        "served probabilities equal in-process:",
        bool(np.allclose(served_probabilities, in_process)),
    )
    print(
        f"the book's person: {served_anchor['label']} because",
        " AND ".join(served_anchor["anchor"]),
        f"(precision {served_anchor['precision']:.3f}, coverage {served_anchor['coverage']:.3f})",
    )

# %% [markdown]
# That is the case study on Kubeflow: the same training code as a distributed job, a search
# over its hyperparameters, a pipeline that explains and deploys its model, and a served model
# that says why it decided.

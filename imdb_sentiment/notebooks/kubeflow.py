# %% [markdown]
# # Movie-review sentiment on Kubeflow: tune, train distributed, pipeline, serve
#
# `walkthrough.ipynb` trained the BiLSTM and its TF-IDF baseline on this machine. This notebook
# takes the network onto a Kubeflow cluster with the official SDKs, one Kubeflow piece per
# section:
#
# 1. a distributed **TrainJob** (Kubeflow Trainer v2) on the repository's own TensorFlow runtime,
#    submitted and watched with the Kubeflow SDK's `TrainerClient`;
# 2. a **Katib Experiment** that tunes the learning rate, the number of epochs and the batch
#    size by Bayesian optimisation, each trial a TrainJob, and its trials read back into a table
#    and a plot;
# 3. a **Kubeflow Pipeline** that chains the two (tune, then train on two nodes with the best
#    values), evaluates the model and deploys it when it is accurate enough, run with
#    `kfp.Client`;
# 4. an **InferenceService** created with the KServe SDK, then asked to predict and to explain.
#
# Every section builds its resource from the files in `imdb_sentiment/manifests/`, the ones
# `kubectl apply -k imdb_sentiment/manifests` would create. With `cluster = True` (run it in a
# Kubeflow notebook server, or anywhere with a kubeconfig for your profile's namespace) each
# resource is created on the cluster and the notebook waits for it. With `cluster = False` the
# very same objects run on this machine through the repository's test harness (`tests/harness`)
# and `kfp.local`, shrunk to the committed sample by the overrides in `imdb_sentiment/case.toml`.

# %% tags=["parameters"]
cluster = False  # True: create everything on the cluster of the current kubeconfig
namespace = "kubeflow-user-example-com"  # your Kubeflow profile's namespace
kfp_host = None  # None inside a Kubeflow notebook server; else the KFP API URL
work_dir = "runs/imdb_sentiment-kubeflow"  # local runs write their logs and models here
timeout = 1800  # seconds to wait for each step before giving up
threshold = None  # deploy at this test accuracy; None: the pipeline's 0.87, or case.toml's locally

# %%
import os
import sys
from pathlib import Path

root = next(
    p for p in [Path.cwd(), *Path.cwd().parents] if (p / "imdb_sentiment" / "case.toml").exists()
)
os.chdir(root)
sys.path.insert(0, str(root))
work = Path(work_dir).resolve()
work.mkdir(parents=True, exist_ok=True)

from tests.harness import cases, manifests

case = cases.load_case(root / "imdb_sentiment")


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
# `manifests/trainjob.yaml` asks Kubeflow Trainer for two nodes, each running
# `python -m imdb_sentiment.train_distributed`, where `MultiWorkerMirroredStrategy` sums the
# gradients of both at every step, so the two copies of the network stay identical. Trainer
# ships no TensorFlow runtime, so the TrainJob names the repository's own,
# `manifests/tensorflow-runtime.yaml`: a namespaced `TrainingRuntime` called
# `imdb-tensorflow-distributed`, which your profile may create without cluster-admin. Its
# container command writes `TF_CONFIG` from what JobSet tells every pod (its completion index and
# the DNS names of its peers) and then runs the TrainJob's `args`; `TF_NUM_NODES` tells it how
# many peers there are. Node 0 is the chief: it writes `model.keras` (raw review text in),
# `calibration.json` and `metrics.json` to `/mnt/pvc/imdb` on the `imdb-models` volume.
#
# The Kubeflow SDK's `TrainerClient` submits it. `CustomTrainerContainer` says which image runs
# on how many nodes, with what resources and environment; `TrainerArgs` what each node runs;
# a `RuntimePatch` adds the shared volume, the pods' `fsGroup` and their label to the runtime's
# `node` job (a TrainJob's trainer cannot declare volumes); `Name` and `Labels` name it. Each
# value is read from the manifest, so the SDK creates the TrainJob `kubectl apply` would, with
# one difference: the SDK sets a node's resource requests equal to its limits, so the notebook
# asks for the manifest's limits. (On a cluster that still runs the Training Operator v1, the
# `legacy-v1/` kustomize Component swaps in `tfjob.yaml`, the same training as a TFJob.)
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
    env={e["name"]: e["value"] for e in spec["trainer"]["env"]},  # TF_NUM_NODES = numNodes
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
    TrainerArgs(spec["trainer"]["args"]),
    volume_patch,
]
runtime_ref = spec["runtimeRef"]
print(f"TrainJob {trainjob['metadata']['name']} on {runtime_ref['kind']} {runtime_ref['name']}:")
print(f"  {trainer.num_nodes} nodes, each {trainer.resources_per_node}, env {trainer.env}")
print("  args:", " ".join(spec["trainer"]["args"]))

# %% [markdown]
# On a cluster the runtime goes first: the Kubernetes client creates the `TrainingRuntime` in
# your namespace (or replaces it, if an earlier run left one). `TrainerClient.get_runtime` looks
# for a runtime in the namespace before the cluster-wide `ClusterTrainingRuntime`s, so the
# TrainJob's `runtimeRef` names the namespaced one. Then `train` creates the TrainJob,
# `wait_for_job_status` polls it until Trainer marks it `Complete` (or raises when it fails),
# and `get_job_logs` reads node 0's log. A TrainJob's name is taken until you delete it
# (`kubectl delete trainjob imdb-sentiment`), so run this cell once per name.
#
# Locally the harness builds the JobSet the runtime describes from the same two objects and
# starts each node as a process on 127.0.0.1, with the environment a pod would get.

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
else:
    from tests.harness import jobs

    job = jobs.run_job(trainjob, workdir=work / "trainjob", timeout=timeout, runtimes=[runtime])
    print(job.summary())
    job.raise_for_failure()
    print(f"TrainJob {job.name}: {job.reason}")
    node_0 = job.primary().log().splitlines()

# The runtime's command says first which node this is and what TF_CONFIG it wrote.
print(next(line for line in node_0 if line.startswith("tensorflow-distributed: node")))
print("...")
print("\n".join(node_0[-10:]))

# %% [markdown]
# ## 2. Hyperparameter search: a Katib Experiment
#
# The Kubeflow TensorFlow samples this case grew from tuned the same network with Katib, and
# stopped at 0.61 validation accuracy. `manifests/katib-experiment.yaml` searches the learning
# rate (0.0003 to 0.01, on a log scale), the number of epochs (1 to 5) and the global batch size
# (32, 64 or 128) with Bayesian optimisation: a Gaussian process models `val_accuracy` from the
# trials so far and proposes the point most likely to beat the best, after a few random ones.
# Up to 12 trials run, 3 at a time, until one reaches the goal; each is a two-node TrainJob on
# the runtime of section 1 (so that runtime must exist in the namespace), and Katib's StdOut
# collector reads the `val_accuracy=...` lines that node 0 prints. The Katib SDK cannot share
# this environment (it pins an old protobuf), so the Experiment goes through Katib's API model
# from the `kubeflow` package and the Kubernetes client. Locally the smoke form runs 3 trials,
# one node each, on the sample.

# %%
import json

from kubeflow_katib_api.models import V1beta1Experiment

experiment = V1beta1Experiment.from_dict(manifest("katib-experiment.yaml"))
print(
    experiment.metadata.name,
    "|",
    experiment.spec.algorithm.algorithm_name,
    "search over",
    [p.name for p in experiment.spec.parameters],
)

# %% [markdown]
# Katib keeps each trial as a `Trial` object (`kubectl get trials -o json` shows them): its
# `spec.parameterAssignments` (name and value, as strings) and, once the collector has read
# them, `status.observation.metrics` (each metric's `latest`, `min` and `max`, also strings).
# `trial_table` turns a list of Trials into one row per trial, typed as the Experiment's
# parameters are; the plot below reads that table. The cluster branch feeds it the Trials it
# reads from the cluster, the local branch the harness's trials put in the same shape
# (`as_katib_trial`), so one piece of code draws both.

# %%
import math

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


# Copied from mnist.notebooks.kubeflow.as_katib_trial
def as_katib_trial(trial) -> dict:
    """A trial the harness ran (tests.harness.katib.Trial), in the shape Katib stores a Trial."""
    metrics = [
        {"name": name, **{k: str(v) for k, v in values.items()}}
        for name, values in trial.metrics.items()
    ]
    assignments = [{"name": k, "value": v} for k, v in trial.parameters.items()]
    return {
        "metadata": {"name": trial.name},
        "spec": {"parameterAssignments": assignments},
        "status": {
            "conditions": [{"type": trial.status, "status": "True"}],
            "observation": {"metrics": metrics},
        },
    }


# %% [markdown]
# On a cluster the notebook creates the Experiment, waits for Katib to say it succeeded or
# failed, and lists its Trials by the label Katib puts on each,
# `katib.kubeflow.org/experiment=imdb-sentiment-bayesian`. It reads the Trial objects rather than
# the TrainJobs: Katib deletes a trial's TrainJob once the trial is done, and the Trial keeps
# what the plot needs. Locally the harness runs the Experiment the same way, trials as
# TrainJobs on the same runtime, and prints what `kubectl get trials` and `kubectl describe
# experiment` would.

# %%
experiment_doc = experiment.to_dict()
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
else:
    import warnings

    with warnings.catch_warnings():  # optuna's progress bars look for ipywidgets; none is shown
        warnings.filterwarnings("ignore", "IProgress not found")
        from tests.harness import katib

    result = katib.run_experiment(
        experiment_doc, workdir=work / "katib", timeout=timeout, runtimes=[runtime]
    )
    print(result.format_trials())
    print(result.describe())
    katib_trials = [as_katib_trial(t) for t in result.trials]

trials = trial_table(katib_trials, experiment_doc)
trials

# %% [markdown]
# Each trial's validation accuracy against its learning rate, over the whole range the search
# draws from: the colour is the batch size, the label beside it the number of epochs. With only a
# few trials the picture is rough, but it already shows the corner worth a longer run; on the
# full data the Gaussian process spends the later trials there.

# %%
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

metric = experiment.spec.objective.objective_metric_name
scored = trials.dropna(subset=[metric])
if len(scored):
    colours = {32: "tab:blue", 64: "tab:orange", 128: "tab:green"}
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    ax.scatter(
        scored["learning_rate"],
        scored[metric],
        c=[colours[int(b)] for b in scored["batch_size"]],
        s=60,
        zorder=2,
    )
    for _, trial in scored.iterrows():  # each point's number of epochs, beside it
        ax.annotate(
            f"{trial['epochs']} epoch" + "s" * (trial["epochs"] > 1),
            (trial["learning_rate"], trial[metric]),
            xytext=(7, -3),
            textcoords="offset points",
            fontsize=9,
        )
    space = next(p.feasible_space for p in experiment.spec.parameters if p.name == "learning_rate")
    low, high = float(space.min), float(space.max)
    ax.set_xscale("log")
    ax.set_xlim(low / 1.15, high * 1.15)
    ticks = [low, 0.001, 0.003, high]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.margins(y=0.2)
    ax.grid(alpha=0.3)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(metric)
    ax.set_title(f"{experiment.metadata.name}: one point per trial")
    handles = [
        Line2D([], [], linestyle="", marker="o", color=c, label=f"batch of {b}")
        for b, c in colours.items()
        if b in set(scored["batch_size"].astype(int))
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 3. The pipeline: tune, train distributed, evaluate, deploy when good enough
#
# `imdb_sentiment/pipeline.py` chains the two pieces above: its `tune` step creates the Katib
# Experiment and waits for it, its `train` step creates the TrainJob with the optimal trial's
# values (as the flags the trials got them by) on `num_nodes` nodes and copies the model the
# chief wrote off the `imdb-models` volume, `evaluate` scores it on the test split (accuracy,
# log loss, calibration error, the confusion matrix the KFP UI draws), and `deploy` creates the
# InferenceService only when the accuracy reaches `threshold`. It is compiled into
# `manifests/pipeline.yaml`, the file you can also upload in the Pipelines UI.
#
# On the cluster `kfp.Client` submits it with the full data and the manifests' search. Locally
# `kfp.local` runs the same pipeline with case.toml's smoke arguments (the sample, 2 trials, 2
# nodes, deploy at 0.8 test accuracy): each step hands its Experiment or TrainJob to the harness
# instead of the cluster, and the deploy step writes the InferenceService it would create.

# %%
import imdb_sentiment.pipeline

arguments = {} if cluster else dict(case.smoke["pipeline"]["arguments"])
if threshold is not None:
    arguments["threshold"] = threshold
if cluster:
    import kfp

    kfp_client = kfp.Client(host=kfp_host, namespace=namespace)
    run = kfp_client.create_run_from_pipeline_package(
        str(case.path / "manifests/pipeline.yaml"), arguments=arguments, namespace=namespace
    )
    finished = kfp_client.wait_for_run_completion(run.run_id, timeout=timeout)
    print("pipeline run", run.run_id, finished.state)
else:
    import contextlib
    import re
    import warnings

    from IPython.display import Markdown, display

    from tests.harness import pipelines

    # kfp.local streams every task's full executor input to stdout: keep it in a file instead,
    # and skip its warning that CPU and memory settings mean nothing on a laptop.
    log_path = work / "pipeline.log"
    with log_path.open("w") as log, contextlib.redirect_stdout(log), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Task .* have no effect", UserWarning)
        local_run = pipelines.run_local(
            pipelines.find_pipeline(imdb_sentiment.pipeline), arguments, workdir=work / "pipeline"
        )
    for line in log_path.read_text().splitlines():
        if "finished with status" in line:
            print(re.sub(r"\x1b\[[0-9;]*m", "", line).split(" - INFO - ")[-1].strip())
    print("kfp.local's whole log:", log_path)
    print("tasks run:", local_run.tasks())
    print("tuned flags:", local_run.parameters("tune")["Output"])
    accuracy = local_run.parameters("evaluate")["Output"]
    print(f"test accuracy {accuracy:.4f}, threshold {arguments['threshold']}")
    display(Markdown(local_run.artifact("tune", "trials").read_text()))

# %% [markdown]
# ## 4. Serving: an InferenceService
#
# The KServe SDK builds the InferenceService; its predictor is the container of
# `manifests/inferenceservice.yaml`: `python -m imdb_sentiment.serve`, with the model KServe
# mounts at /mnt/models from the models volume the TrainJob's chief wrote to.
# The server takes raw review text, cleans it as training did, and answers `:predict` with a
# label and a calibrated probability, and `:explain` with the words that pushed each prediction
# most (by occlusion, as in the walkthrough).

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
# Kubeflow's ingress). Locally the harness starts the very same container command on
# 127.0.0.1 with the model the TrainJob of section 1 wrote, and the notebook asks it about the
# two reviews of `sample/request.json`, then compares its answers with the model's in-process
# ones.

# %%
reviews = json.loads((case.path / "sample" / "request.json").read_text())["instances"]
if cluster:
    kserve_client = KServeClient()
    kserve_client.create(isvc, namespace=namespace, watch=True, timeout_seconds=timeout)
    url = kserve_client.get(isvc.metadata.name, namespace=namespace)["status"]["url"]
    print("served at", url)
else:
    import numpy as np

    from imdb_sentiment.model import SentimentModel
    from tests.harness import serving

    # Node 0, the chief, wrote the model where /mnt/pvc/imdb stands on this machine.
    model_dir = next((work / "trainjob").rglob("model.keras")).parent
    with serving.serve(rendered, workdir=work / "serving", model_dir=model_dir) as server:
        answer = server.v1_predict(reviews)
        explained = server.post(f"/v1/models/{server.model_name}:explain", {"instances": reviews})
    print("HTTP", answer.status_code, "and", explained.status_code)
    predictions = answer.json()["predictions"]
    in_process = SentimentModel.load(model_dir).probabilities(reviews)
    print("served labels:    ", [p["label"] for p in predictions])
    print("served probabilities equal in-process:",
          np.allclose([p["probability_positive"] for p in predictions], in_process, atol=1e-6))  # fmt: skip
    for review, explanation in zip(reviews, explained.json()["explanations"], strict=True):
        top = ", ".join(f"{w['word']} {w['attribution']:+.2f}" for w in explanation["words"][:4])
        print(f"\n{review[:70]}...\n  {explanation['label']}: {top}")

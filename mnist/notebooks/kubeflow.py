# %% [markdown]
# # MNIST on Kubeflow: train, tune, pipeline, serve
#
# `walkthrough.ipynb` trained and served the CNN on this machine. This notebook takes the same
# code onto a Kubeflow cluster with the official SDKs, one Kubeflow piece per section:
#
# 1. a distributed **TrainJob** (Kubeflow Trainer v2) on the repository's own TensorFlow
#    runtime, submitted and watched with the Kubeflow SDK's `TrainerClient`; then the PyTorch
#    twin of the training as a Python function, run by the same SDK's local-process backend;
# 2. a **Katib Experiment** that searches learning rate, depth and optimizer, each trial a
#    TrainJob, and its trials read back into a table and a plot;
# 3. a **Kubeflow Pipeline** (load, train, evaluate, deploy if good enough) run with `kfp.Client`;
# 4. an **InferenceService** created with the KServe SDK, then queried.
#
# Every section builds its resource from the files in `mnist/manifests/`, the ones
# `kubectl apply -k mnist/manifests` would create. With `cluster = True` (run it in a Kubeflow
# notebook server, or anywhere with a kubeconfig for your profile's namespace) each resource is
# created on the cluster and the notebook waits for it. With `cluster = False` the very same
# objects run on this machine through the repository's test harness (`tests/harness`) and
# `kfp.local`, shrunk to the committed sample by the overrides in `mnist/case.toml`.

# %% tags=["parameters"]
cluster = False  # True: create everything on the cluster of the current kubeconfig
namespace = "kubeflow-user-example-com"  # your Kubeflow profile's namespace
kfp_host = None  # None inside a Kubeflow notebook server; else the KFP API URL
work_dir = "runs/mnist-kubeflow"  # local runs write their logs and models here
timeout = 1800  # seconds to wait for each step before giving up
local_process = False  # True: also train with the SDK's local-process backend (pip, minutes)

# %%
import os
import sys
from pathlib import Path

root = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "mnist" / "case.toml").exists())
os.chdir(root)
sys.path.insert(0, str(root))
work = Path(work_dir).resolve()
work.mkdir(parents=True, exist_ok=True)

from tests.harness import cases, manifests

case = cases.load_case(root / "mnist")


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
# `python -m mnist.train_distributed`, where `MultiWorkerMirroredStrategy` keeps the two copies
# of the model in step. Trainer ships no TensorFlow runtime, so the TrainJob names the
# repository's own, `manifests/tensorflow-runtime.yaml`: a namespaced `TrainingRuntime` called
# `tensorflow-distributed`, which your profile may create without cluster-admin. Its container
# command writes `TF_CONFIG` from what JobSet tells every pod (its completion index and the DNS
# names of its peers, `mnist-node-0-0.mnist` and `mnist-node-0-1.mnist`) and then runs the
# TrainJob's `args`; `TF_NUM_NODES` tells it how many peers there are. Node 0 is the chief: it
# writes `model.keras` to `/mnt/pvc/mnist` on the `mnist-models` volume.
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
# (`kubectl delete trainjob mnist`), so run this cell once per name.
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
# ### The same SDK on a laptop: the local-process backend
#
# `TrainerClient` has backends besides Kubernetes. With `LocalProcessBackendConfig()` it runs a
# training *function* (`CustomTrainer(func=...)`) as a process on this machine, on its one
# local runtime, `torch-distributed`: the function's source goes into a file, followed by a call
# with `func_args`, and `torchrun` starts it, as Trainer's `torch-distributed` runtime would in a
# pod. Here the function is the PyTorch twin of the training above, `mnist.train_torch` (the
# program `manifests/trainjob-torch.yaml` runs on that runtime), given its command-line
# arguments.
#
# What the backend does (kubeflow 0.5.0, measured on this repository's 2-core test machine): it
# creates a fresh virtual environment, which does not see this notebook's packages, and
# pip-installs the runtime's `torch` and the function's `packages_to_install` into it (974 MB);
# then `torchrun` runs the function with one process (the backend runs one node), and the
# environment is deleted once the function succeeds (it stays in the temporary folder when it
# fails). The install needs the network and takes most of the time: 50 s in all with pip's
# cache warm (4 s for the venv, 37 s for pip, 7 s for one epoch on the sample), nearly 3
# minutes the first time on a busy machine. So the cell runs only with `local_process = True`.
# Two things to know when you write such a function: this backend calls it with `func_args` as
# one dict argument (the Kubernetes backend unpacks it into keyword arguments instead), and the
# process gets exactly `CustomTrainer.env` as its environment, so the cell passes this one on,
# with `PYTHONPATH` pointing at the repository so that `import mnist` works there.


# %%
def train_mnist_torch(parameters: dict) -> None:
    """mnist.train_torch as a function: what the local-process backend runs under torchrun."""
    import runpy
    import sys

    sys.argv = ["mnist.train_torch", *parameters["args"]]
    runpy.run_module("mnist.train_torch", run_name="__main__")


# What mnist.train_torch imports (a test keeps this list in step with its imports).
torch_trainer_packages = ["torch", "numpy", "tqdm", "pooch", "requests"]
if local_process:
    from kubeflow.trainer import CustomTrainer, LocalProcessBackendConfig, TrainerClient

    pins = dict(
        line.split("==")
        for line in (case.path / "requirements.txt").read_text().splitlines()
        if "==" in line
    )
    local_model = work / "local-process"
    local_client = TrainerClient(backend_config=LocalProcessBackendConfig())
    local_job = local_client.train(
        runtime="torch-distributed",
        trainer=CustomTrainer(
            func=train_mnist_torch,
            func_args={"args": ["--sample", "--epochs=1", f"--model-dir={local_model}"]},
            packages_to_install=[f"{p}=={pins[p]}" for p in torch_trainer_packages],
            env={**os.environ, "PYTHONPATH": str(root)},
        ),
    )
    done = local_client.wait_for_job_status(
        local_job, status={"Complete", "Failed"}, timeout=timeout, polling_interval=5
    )
    log = list(local_client.get_job_logs(local_job))
    print(f"local-process TrainJob {local_job}: {done.status}")
    print("\n".join(line for line in log if "=" in line and " " not in line))  # the metrics
    if done.status != "Complete":
        print("\n".join(log[-60:]))  # the function's error, then torchrun's
else:
    print("local-process backend: not run (set local_process = True; it pip-installs torch)")

# %% [markdown]
# ## 2. Hyperparameter search: a Katib Experiment
#
# `manifests/katib-experiment.yaml` runs random search over the learning rate (0.0005 to 0.005),
# the number of convolution blocks (1 to 3) and the optimizer, up to 12 trials, 3 at a time. Each
# trial is a two-node TrainJob on the `tensorflow-distributed` runtime of section 1 (so that
# runtime must exist in the namespace), and Katib's StdOut collector reads the
# `val_accuracy=...` lines that node 0, the chief, prints. The Katib SDK cannot share this
# environment (it pins an old protobuf), so the Experiment goes through Katib's API model from
# the `kubeflow` package and the Kubernetes client. Locally the smoke form runs 3 trials at once,
# one node and one epoch each.

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
# The objective counts one of the three, the metric strategy of `spec.objective`: by default
# `max` when maximising. `trial_table` turns a list of Trials into one row per trial, typed as
# the Experiment's parameters are; the plot below reads that table. The cluster branch feeds it
# the Trials it reads from the cluster, the local branch the harness's trials put in the same
# shape (`as_katib_trial`), so one piece of code draws both.

# %%
import math

import pandas as pd


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
# `katib.kubeflow.org/experiment=mnist-random`. It reads the Trial objects rather than the
# TrainJobs: Katib deletes a trial's TrainJob once the trial is done (unless the trial template
# says `retain: true`), and the Trial keeps what the plot needs. (For the same reason
# `kubeflow.optimizer.OptimizerClient().get_job(...)`, which looks up each trial's TrainJob,
# cannot read a finished Experiment back.) Locally the harness runs the Experiment the same
# way, trials as TrainJobs on the same runtime, and prints what `kubectl get trials` and
# `kubectl describe experiment` would.

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
# Each trial's validation accuracy against its learning rate, its colour the optimizer and its
# marker the number of convolution blocks, over the whole range the search draws from. The
# search space is small, but even a few trials show which corner is worth a longer run.

# %%
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

metric = experiment.spec.objective.objective_metric_name
scored = trials.dropna(subset=[metric])
if len(scored):
    colours = {"sgd": "tab:blue", "adam": "tab:orange", "rmsprop": "tab:green"}
    markers = {1: "o", 2: "s", 3: "^"}
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for (name, blocks), chosen in scored.groupby(["optimizer", "num_layers"]):
        ax.scatter(
            chosen["learning_rate"],
            chosen[metric],
            color=colours[name],
            marker=markers[blocks],
            s=50,
            zorder=2,
        )
    # The whole range the search draws from, on a log scale as learning rates are compared.
    space = next(p.feasible_space for p in experiment.spec.parameters if p.name == "learning_rate")
    low, high = float(space.min), float(space.max)
    ax.set_xscale("log")
    ax.set_xlim(low / 1.15, high * 1.15)
    ticks = [low, 0.001, 0.002, high]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.margins(y=0.2)
    ax.grid(alpha=0.3)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(metric)
    ax.set_title(f"{experiment.metadata.name}: one point per trial")
    # One legend entry per optimizer and per depth that the trials used.
    handles = [
        Line2D([], [], linestyle="", marker="o", color=colours[n], label=n)
        for n in colours
        if n in set(scored["optimizer"])
    ] + [
        Line2D([], [], linestyle="", marker=m, color="grey", label=f"{b} block" + "s" * (b > 1))
        for b, m in markers.items()
        if b in set(scored["num_layers"])
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 3. The pipeline: load, train, evaluate, deploy when good enough
#
# `mnist/pipeline.py` is compiled into `manifests/pipeline.yaml`, the file you can also upload in
# the Pipelines UI. The deploy step runs only when the evaluated accuracy reaches `threshold`.

# %%
import mnist.pipeline

arguments = dict(case.smoke.get("pipeline", {}).get("arguments", {})) if not cluster else {}
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

    from tests.harness import pipelines

    # kfp.local streams every task's full executor input to stdout: keep it in a file instead,
    # and skip its warning that CPU and memory settings mean nothing on a laptop.
    log_path = work / "pipeline.log"
    with log_path.open("w") as log, contextlib.redirect_stdout(log), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Task .* have no effect", UserWarning)
        local_run = pipelines.run_local(
            pipelines.find_pipeline(mnist.pipeline), arguments, workdir=work / "pipeline"
        )
    for line in log_path.read_text().splitlines():
        if "finished with status" in line:
            print(re.sub(r"\x1b\[[0-9;]*m", "", line).split(" - INFO - ")[-1].strip())
    print("kfp.local's whole log:", log_path)
    print("tasks run:", local_run.tasks())

# %% [markdown]
# ## 4. Serving: an InferenceService
#
# The KServe SDK builds the InferenceService; its predictor is the container of
# `manifests/inferenceservice.yaml`: `python -m mnist.serve`, with the model KServe mounts at
# /mnt/models from `storageUri` (the volume the TrainJob's chief wrote to).

# %%
from kserve import (
    KServeClient,
    V1beta1Batcher,
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
            # KServe's request batcher: single requests merged into model batches.
            batcher=V1beta1Batcher(
                max_batch_size=predictor["batcher"]["maxBatchSize"],
                max_latency=predictor["batcher"]["maxLatency"],
            ),
            containers=containers,
        )
    ),
)
rendered = k8s.ApiClient().sanitize_for_serialization(isvc)
assert rendered == doc, "the SDK object differs from manifests/inferenceservice.yaml"
print(isvc.metadata.name, "->", " ".join(containers[0].command + containers[0].args))

# %%

from mnist import data

(_, _), (test_x, test_y) = data.load_sample()
digits = test_x[:3]
if cluster:
    kserve_client = KServeClient()
    kserve_client.create(isvc, namespace=namespace, watch=True, timeout_seconds=timeout)
    url = kserve_client.get(isvc.metadata.name, namespace=namespace)["status"]["url"]
    print("served at", url, "- query it with: python -m mnist.client --image digit.png --url", url)
else:
    from tests.harness import serving

    # Node 0, the chief, wrote the model where /mnt/pvc/mnist stands on this machine.
    model_dir = next((work / "trainjob").rglob("model.keras")).parent
    with serving.serve(
        rendered,
        workdir=work / "serving",
        model_dir=model_dir,
    ) as server:
        tensor = {
            "name": "image",
            "shape": [3, 28, 28],
            "datatype": "UINT8",
            "data": digits.flatten().tolist(),
        }
        answer = server.v2_infer([tensor])
        print("HTTP", answer.status_code)
        outputs = {o["name"]: o for o in answer.json()["outputs"]}
    import keras

    model = keras.saving.load_model(model_dir / "model.keras")
    in_process = model.predict(data.normalize(digits), verbose=0).argmax(axis=1)
    print("served digits:    ", outputs["digit"]["data"])
    print("in-process digits:", in_process.tolist())
    print("true labels:      ", test_y[:3].tolist())

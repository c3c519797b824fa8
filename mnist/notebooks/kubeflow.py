# %% [markdown]
# # MNIST on Kubeflow: train, tune, pipeline, serve
#
# `walkthrough.ipynb` trained and served the CNN on this machine. This notebook takes the same
# code onto a Kubeflow cluster with the official SDKs, one Kubeflow piece per section:
#
# 1. a distributed **TFJob** (Training Operator), submitted with the `kubeflow-training` SDK;
# 2. a **Katib Experiment** that searches learning rate, depth and optimizer;
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
# ## 1. Distributed training: a TFJob
#
# `manifests/tfjob.yaml` asks the Training Operator for a Chief and a Worker, each running
# `python -m mnist.train_distributed`. The operator gives each pod a `TF_CONFIG` naming the
# other, and `MultiWorkerMirroredStrategy` keeps the two copies of the model in step. The
# `kubeflow-training` SDK wants its own model object, so the YAML is deserialised into one.

# %%
import json

from kubeflow.training import ApiClient, TrainingClient


class _Response:
    """What ApiClient.deserialize reads: a body with JSON in .data."""

    def __init__(self, doc: dict) -> None:
        self.data = json.dumps(doc)


tfjob = ApiClient().deserialize(_Response(manifest("tfjob.yaml")), "KubeflowOrgV1TFJob")
chief = tfjob.spec.tf_replica_specs["Chief"].template.spec.containers[0]
print(
    f"TFJob {tfjob.metadata.name}:", {k: v.replicas for k, v in tfjob.spec.tf_replica_specs.items()}
)
print("command:", " ".join(chief.command + chief.args))

# %%
if cluster:
    training = TrainingClient(namespace=namespace)
    training.create_job(job=tfjob)
    training.wait_for_job_conditions(tfjob.metadata.name, job_kind="TFJob", timeout=timeout)
    logs, _ = training.get_job_logs(tfjob.metadata.name, job_kind="TFJob", follow=False)
    print("\n".join(logs.values())[-3000:])
else:
    from tests.harness import jobs

    job = jobs.run_job(
        ApiClient().sanitize_for_serialization(tfjob), workdir=work / "tfjob", timeout=timeout
    )
    print(job.summary())
    job.raise_for_failure()
    print(job.primary().log()[-1500:])

# %% [markdown]
# ## 2. Hyperparameter search: a Katib Experiment
#
# `manifests/katib-experiment.yaml` runs random search over the learning rate (0.0005 to 0.005),
# the number of convolution blocks (1 to 3) and the optimizer, up to 12 trials, 3 at a time, each
# trial a TFJob. Katib's StdOut collector reads the `val_accuracy=...` lines the chief prints.
# The Katib SDK cannot share this environment (it pins an old protobuf), so the Experiment goes
# through Katib's API model from the `kubeflow` package and the Kubernetes client.

# %%
from kubeflow_katib_api.models import V1beta1Experiment

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
    trials = []  # the Katib UI draws them; `kubectl get trials -n <namespace>` lists them
else:
    from tests.harness import katib

    result = katib.run_experiment(experiment.to_dict(), workdir=work / "katib", timeout=timeout)
    print(result.format_trials())
    print(result.describe())
    trials = [t for t in result.trials if t.objective is not None]

# %% [markdown]
# Each trial's validation accuracy against its learning rate, coloured by optimizer: the search
# space is small, but it already shows which corner is worth a longer run.

# %%
import matplotlib.pyplot as plt

if trials:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, colour in (("sgd", "tab:blue"), ("adam", "tab:orange"), ("rmsprop", "tab:green")):
        chosen = [t for t in trials if t.parameters["optimizer"] == name]
        ax.scatter(
            [float(t.parameters["learning_rate"]) for t in chosen],
            [t.objective for t in chosen],
            color=colour,
            label=name,
        )
    ax.set_xlabel("learning rate")
    ax.set_ylabel("val_accuracy")
    ax.legend(title="optimizer")
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
    from tests.harness import pipelines

    local_run = pipelines.run_local(
        pipelines.find_pipeline(mnist.pipeline), arguments, workdir=work / "pipeline"
    )
    print("tasks run:", local_run.tasks())

# %% [markdown]
# ## 4. Serving: an InferenceService
#
# The KServe SDK builds the InferenceService; its predictor is the container of
# `manifests/inferenceservice.yaml`: `python -m mnist.serve`, with the model KServe mounts at
# /mnt/models from `storageUri` (the volume the TFJob wrote to).

# %%
from kserve import (
    KServeClient,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1PredictorSpec,
    constants,
)
from kubernetes import client as k8s

doc = manifest("inferenceservice.yaml")
predictor = doc["spec"]["predictor"]
containers = [
    k8s.ApiClient().deserialize(_Response(c), "V1Container") for c in predictor["containers"]
]
isvc = V1beta1InferenceService(
    api_version=constants.KSERVE_V1BETA1,
    kind=constants.KSERVE_KIND_INFERENCESERVICE,
    metadata=k8s.V1ObjectMeta(
        name=doc["metadata"]["name"], namespace=namespace, labels=doc["metadata"].get("labels")
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

    model_dir = next((work / "tfjob").rglob("model.keras")).parent  # the TFJob's chief wrote it
    with serving.serve(
        rendered,
        workdir=work / "serving",
        model_dir=model_dir,
    ) as server:
        tensor = {
            "name": "images",
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

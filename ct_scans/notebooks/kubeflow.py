# %% [markdown]
# # CT scans on Kubeflow: the SVD on Spark, tuning, a multi-tool pipeline, serving
#
# `walkthrough.ipynb` denoised a CT scan on this machine: the slices as the columns of one
# matrix, its randomized SVD, the singular values under p % of the largest dropped. This
# notebook takes the same code onto a Kubeflow cluster with the official SDKs, one Kubeflow
# piece per section:
#
# 1. a **SparkApplication** (the Kubeflow Spark operator): the randomized SVD computed by Spark
#    executors over blocks of the matrix's rows, the book's distributed `dssvd`;
# 2. a **Katib Experiment** that tunes the rank k and the percentage dropped for PSNR against
#    the phantom's known truth, with Bayesian optimisation;
# 3. a **Kubeflow Pipeline** of several tools: pydicom reads the series, Spark computes the SVD,
#    NumPy and matplotlib draw the denoised slices into an HTML page the Pipelines UI shows;
# 4. an **InferenceService** created with the KServe SDK, serving the SparkApplication's basis
#    and denoising a new slice over the Open Inference (V2) protocol.
#
# Every section builds its resource from the files in `ct_scans/manifests/`, the ones
# `kubectl apply -k ct_scans/manifests` would create. With `cluster = True` (run it in a
# Kubeflow notebook server, or anywhere with a kubeconfig for your profile's namespace) each
# resource is created on the cluster and the notebook waits for it. With `cluster = False` the
# very same objects run on this machine through the repository's test harness (`tests/harness`)
# and `kfp.local`, shrunk to the noisy phantom by the overrides in `ct_scans/case.toml`.
#
# On a cluster the SparkApplication reads a real DICOM series from the `ct-scans` volume
# (`manifests/pvc.yaml`): copy one into its `series` folder first (`kubectl cp`), or change the
# manifest's `--series-dir` for `--url` and `--sha256` of a zipped series to download. The
# Spark operator (2.x, Helm chart `spark-operator`) must watch your namespace; the manifest's
# comments say how to install it.

# %% tags=["parameters"]
cluster = False  # True: create everything on the cluster of the current kubeconfig
namespace = "kubeflow-user-example-com"  # your Kubeflow profile's namespace
kfp_host = None  # None inside a Kubeflow notebook server; else the KFP API URL
work_dir = "runs/ct-kubeflow"  # local runs write their logs and models here
timeout = 1800  # seconds to wait for each step before giving up

# %%
import os
import sys
from pathlib import Path

root = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "ct_scans" / "case.toml").exists())
os.chdir(root)
sys.path.insert(0, str(root))
work = Path(work_dir).resolve()
work.mkdir(parents=True, exist_ok=True)

from tests.harness import cases, manifests

case = cases.load_case(root / "ct_scans")


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
# ## 1. The SVD on Spark: a SparkApplication
#
# `manifests/sparkapplication.yaml` asks the Spark operator to run
# `ct_scans/train_distributed.py` with spark-submit in cluster mode: a driver pod, which asks
# the Kubernetes API for two executor pods. The driver reads the DICOM series and cuts the
# (rows x cols) x slices matrix into blocks of rows, one Spark task each; every step of the
# randomized SVD that touches the big matrix (the random projection, the power iterations, the
# tall-skinny QR) runs block by block on the executors, and only small matrices, one side the
# number of slices, come back to the driver. Only the driver writes `basis.npz` and
# `metrics.json`, to `/mnt/pvc/ct-basis` on the volume, where the InferenceService of section 4
# reads them.
#
# The Spark operator has no Python SDK; a SparkApplication is a custom resource, so the
# Kubernetes client's `CustomObjectsApi` creates it (group `sparkoperator.k8s.io`, version
# `v1beta2`) and reads its `status.applicationState.state` until Spark says `COMPLETED` or
# `FAILED`. Locally the harness runs the driver as `spark-submit` in local mode with two task
# slots, one per executor core the manifest asks for, on the noisy phantom.

# %%
import json

spark_app = manifest("sparkapplication.yaml")
spec = spark_app["spec"]
print(
    f"SparkApplication {spark_app['metadata']['name']}: a driver and "
    f"{spec['executor']['instances']} executors of {spec['executor']['cores']} core"
)
print("runs:", spec["mainApplicationFile"], " ".join(spec["arguments"]))

# %%
if cluster:
    import time

    from kubernetes import client, config

    config.load_config()
    api = client.CustomObjectsApi()
    spark_api = ("sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications")
    api.create_namespaced_custom_object(*spark_api, spark_app)
    deadline, state, status = time.monotonic() + timeout, "", {}
    while time.monotonic() < deadline and state not in ("COMPLETED", "FAILED"):
        time.sleep(15)
        status = api.get_namespaced_custom_object(*spark_api, spark_app["metadata"]["name"])
        state = status.get("status", {}).get("applicationState", {}).get("state", "")
    print(f"SparkApplication {spark_app['metadata']['name']}: {state or 'not started'}")
    driver_pod = status.get("status", {}).get("driverInfo", {}).get("podName")
    if driver_pod:
        log = client.CoreV1Api().read_namespaced_pod_log(driver_pod, namespace)
        print("\n".join(line for line in log.splitlines() if "=" in line and " " not in line))
else:
    from tests.harness import jobs

    spark_job = jobs.run_job(spark_app, workdir=work / "sparkapplication", timeout=timeout)
    print(spark_job.summary())
    spark_job.raise_for_failure()
    print(f"SparkApplication {spark_app['metadata']['name']}: {spark_job.reason}")
    # What the driver said about the scan and its Spark, among Spark's own log lines.
    driver_log = spark_job.primary().log().splitlines()
    print("\n".join(line for line in driver_log if line.startswith(("scan ", "spark master"))))
    # The driver wrote the basis where /mnt/pvc/ct-basis stands on this machine.
    basis_dir = next((work / "sparkapplication").rglob("basis.npz")).parent
    spark_metrics = json.loads((basis_dir / "metrics.json").read_text())
    for name in ("partitions", "kept", "psnr_noisy", "psnr", "psnr_gain", "ssim", "svd_seconds"):
        print(f"  {name:12} {spark_metrics[name]:.4g}")

# %% [markdown]
# The driver printed the same `name=value` lines as `python -m ct_scans.train`, and they agree
# with it to rounding: with the same seed, the Spark version draws the same random directions
# and computes the same subspaces, only split over blocks (`ct_scans/tests/test_distributed.py`
# checks that). On the phantom, dropping the singular values under 5 % of the largest raises
# the PSNR by about 3 dB.
#
# ## 2. Hyperparameter search: a Katib Experiment
#
# How many singular values to compute, and where to cut? `manifests/katib-experiment.yaml`
# searches the rank k (5 to 48) and the percentage dropped (0.5 to 30) with Bayesian
# optimisation, maximising the PSNR against the phantom's truth: 12 trials, 2 at a time, each a
# plain batch Job running `python -m ct_scans.train --sample`, whose `psnr=...` line Katib's
# StdOut collector reads. (Only the phantom has a truth to measure against; on a real scan the
# Experiment tells you which cut suits this kind of noise.) The Katib SDK cannot share this
# environment (it pins an old protobuf), so the Experiment goes through Katib's API model from
# the `kubeflow` package and the Kubernetes client. Locally the smoke form runs 3 trials, one at
# a time.

# %%
from kubeflow_katib_api.models import V1beta1Experiment

experiment = V1beta1Experiment.from_dict(manifest("katib-experiment.yaml"))
print(
    experiment.metadata.name,
    "|",
    experiment.spec.algorithm.algorithm_name,
    "search over",
    [p.name for p in experiment.spec.parameters],
    "for",
    experiment.spec.objective.type,
    experiment.spec.objective.objective_metric_name,
)

# %% [markdown]
# Katib keeps each trial as a `Trial` object (`kubectl get trials -o json` shows them): its
# `spec.parameterAssignments` (name and value, as strings) and, once the collector has read
# them, `status.observation.metrics` (each metric's `latest`, `min` and `max`, also strings).
# A metric counts one of the three, its metric strategy in `spec.objective`: by default `max`
# when maximising. `trial_table`, the same function as in mnist's kubeflow notebook, turns a
# list of Trials into one row per trial, typed as the Experiment's parameters are; the plot
# below reads that table. The cluster branch feeds it the Trials it reads from the cluster,
# the local branch the harness's trials put in the same shape (`as_katib_trial`), so one piece
# of code draws both.

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
# `katib.kubeflow.org/experiment=ct-scans-psnr`. The Trial objects keep what the plot needs;
# the trials' Jobs do not last (Katib deletes each once its trial is done, unless the trial
# template says `retain: true`). Locally the harness runs the Experiment the same way and
# prints what `kubectl get trials` and `kubectl describe experiment` would.

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

    result = katib.run_experiment(experiment_doc, workdir=work / "katib", timeout=timeout)
    print(result.format_trials())
    print(result.describe())
    katib_trials = [as_katib_trial(t) for t in result.trials]

trials = trial_table(katib_trials, experiment_doc)
trials

# %% [markdown]
# Each trial's PSNR against the percentage it dropped, coloured by its rank, and the noisy
# scan's PSNR as the line to beat (each trial reports it too, as `psnr - psnr_gain`). The
# walkthrough's curve predicts the shape: a cut near the spectrum's knee, a few % of the
# largest value, wins, and cutting deeper loses anatomy faster than noise. Two trials of
# different ranks can score the same: once the percentage cuts deeper than the rank, the rank
# no longer matters.
#
# Three trials are too few to find that knee. Bayesian optimisation starts from a few points
# drawn at random, and the smoke form ends there, so its trials may all lie far from the best
# cut, even below the noisy scan. The full Experiment's 12 trials found it in a run here:
# rank 21 with 2.4 % dropped, 26.8 dB, a shade above train.py's defaults (rank 40, 5 %,
# 26.7 dB); computing 21 values stops at the knee, which is the same cut made another way.

# %%
import matplotlib.pyplot as plt

scored = trials.dropna(subset=["psnr"])
if len(scored):
    space = {p.name: p.feasible_space for p in experiment.spec.parameters}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    points = ax.scatter(
        scored["percent"],
        scored["psnr"],
        c=scored["rank"],
        cmap="viridis",
        vmin=float(space["rank"].min),
        vmax=float(space["rank"].max),
        s=50,
        edgecolors="black",
        linewidths=0.5,
        zorder=2,
    )
    fig.colorbar(points, ax=ax, label="rank k")
    noisy = (scored["psnr"] - scored["psnr_gain"]).iloc[0]
    ax.axhline(noisy, color="grey", linestyle="--", label="noisy scan")
    # The whole search space on the x axis: where in it the trials landed.
    ax.set_xlim(0, float(space["percent"].max) * 1.05)
    ax.margins(y=0.2)
    ax.grid(alpha=0.3)
    ax.set_xlabel("singular values dropped (% of the largest)")
    ax.set_ylabel("psnr (dB)")
    ax.set_title(f"{experiment.metadata.name}: one point per trial")
    ax.legend(loc="lower left")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 3. The pipeline: DICOM, Spark, NumPy and matplotlib in four steps
#
# `ct_scans/pipeline.py` is compiled into `manifests/pipeline.yaml`, the file you can also
# upload in the Pipelines UI. It is the book's point about pipelines: each step uses the tool
# that suits it, and KFP passes the results along as artifacts.
#
# - `load-scan` downloads a zipped DICOM series (with `url` and `sha256`) or writes the noisy
#   phantom as DICOM, with its truth;
# - `dicom-to-matrix` reads the series with pydicom into the (rows x cols) x slices matrix;
# - `svd-on-spark` computes the randomized SVD with Spark inside its pod (local mode: for one
#   scan that is enough; the SparkApplication is the many-machine version) and logs PSNR and
#   SSIM as the step's metrics;
# - `visualize` rebuilds the middle slice at each of the book's percentages and draws it and
#   the PSNR curve into an HTML page, which the UI shows in the run's Visualizations tab.
#
# Its defaults denoise the phantom with rank 40 and 5 % dropped, on a cluster and here alike.

# %%
import ct_scans.pipeline

arguments = dict(case.smoke.get("pipeline", {}).get("arguments", {})) if not cluster else {}
if cluster:
    import kfp

    kfp_client = kfp.Client(host=kfp_host, namespace=namespace)
    run = kfp_client.create_run_from_pipeline_package(
        str(case.path / "manifests/pipeline.yaml"), arguments=arguments, namespace=namespace
    )
    finished = kfp_client.wait_for_run_completion(run.run_id, timeout=timeout)
    print("pipeline run", run.run_id, finished.state)
    print("the pictures: the run's page in the Pipelines UI, visualize step, Visualizations tab")
else:
    import contextlib
    import re
    import warnings

    from tests.harness import pipelines

    # Spark binds the machine's first non-loopback address otherwise, which a laptop on a VPN
    # or with no network cannot always reach from itself.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # kfp.local streams every task's full executor input to stdout: keep it in a file instead,
    # and skip its warning that CPU and memory settings mean nothing on a laptop.
    log_path = work / "pipeline.log"
    with log_path.open("w") as log, contextlib.redirect_stdout(log), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Task .* have no effect", UserWarning)
        local_run = pipelines.run_local(
            ct_scans.pipeline.ct_pipeline, arguments, workdir=work / "pipeline"
        )
    for line in log_path.read_text().splitlines():
        if "finished with status" in line:
            print(re.sub(r"\x1b\[[0-9;]*m", "", line).split(" - INFO - ")[-1].strip())
    print("kfp.local's whole log:", log_path)
    print("tasks run:", local_run.tasks())
    step_metrics = local_run.metadata("svd-on-spark", "metrics")
    print(
        f"svd-on-spark: psnr {step_metrics['psnr']:.2f} dB "
        f"(noisy {step_metrics['psnr_noisy']:.2f} dB), ssim {step_metrics['ssim']:.3f}"
    )

# %% [markdown]
# The visualize step's report, as the Pipelines UI shows it: the scan's middle slice as scanned
# and denoised at each of the book's percentages, the PSNR curve with the noisy scan as the
# baseline, and a table of how many singular values each percentage keeps. Here it is as the
# local run wrote it.

# %%
from IPython.display import HTML, display

if not cluster:
    display(HTML(local_run.artifact("visualize", "report").read_text()))

# %% [markdown]
# ## 4. Serving: an InferenceService
#
# The KServe SDK builds the InferenceService of `manifests/inferenceservice.yaml`: its
# predictor runs `python -m ct_scans.serve` on the model folder KServe's storage initializer
# mounts at /mnt/models from `STORAGE_URI`, `pvc://ct-scans/ct-basis`: the folder the
# SparkApplication's driver wrote. The server denoises slices of the scan's size by projecting
# them onto the basis, over V1 and V2, with the percentage to drop as a request parameter.

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
storage = next(e.value for e in containers[0].env if e.name == "STORAGE_URI")
print(isvc.metadata.name, "->", " ".join(containers[0].command + containers[0].args), "|", storage)

# %% [markdown]
# `sample/request.json` is a V2 request: a new noisy slice of the phantom (noise the basis
# never saw), as INT16 Hounsfield units, and `"parameters": {"percent": 5}`. Locally the
# harness runs the predictor's command with the SparkApplication's output folder standing in
# for /mnt/models; the answer must equal the same projection (`model.project`) in this process.
# On a cluster the basis comes from the real series on the volume, so send slices of that
# scan's size instead.

# %%
import numpy as np

from ct_scans import data, model

request = json.loads((case.path / case.smoke["serve"]["request"]).read_text())
if cluster:
    kserve_client = KServeClient()
    kserve_client.create(isvc, namespace=namespace, watch=True, timeout_seconds=timeout)
    url = kserve_client.get(isvc.metadata.name, namespace=namespace)["status"]["url"]
    print("served at", url, "- denoise a slice with:")
    print(f"  curl -d @ct_scans/sample/request.json {url}/v2/models/{isvc.metadata.name}/infer")
else:
    from tests.harness import serving

    with serving.serve(rendered, workdir=work / "serving", model_dir=basis_dir) as server:
        answer = server.post(f"/v2/models/{server.model_name}/infer", request)
        print("HTTP", answer.status_code, "from", server.url)
    reply = answer.json()
    (output,) = reply["outputs"]
    served = np.asarray(output["data"], np.float32).reshape(output["shape"])
    print("output", output["name"], output["shape"], "| parameters", reply["parameters"])

    (tensor,) = request["inputs"]
    sent = np.asarray(tensor["data"], np.float32).reshape(tensor["shape"])
    with np.load(basis_dir / "basis.npz") as stored:
        u, s = stored["u"], stored["s"]
    projected = model.project(u, s, data.to_matrix(sent), request["parameters"]["percent"])
    in_process = data.to_volume(projected, *sent.shape[1:])
    print("served equals in-process:", bool(np.allclose(served, in_process, rtol=1e-5, atol=1e-3)))
    from ct_scans.sample import make_request

    index = make_request.SLICE_INDEX  # the phantom's slice that request.json carries
    truth = data.phantom()[index : index + 1]
    peak = float(np.ptp(data.phantom()))
    print(
        f"PSNR of the slice: {model.psnr(truth, sent, peak):.2f} dB as sent, "
        f"{model.psnr(truth, served, peak):.2f} dB as served"
    )

# %% [markdown]
# That is the case study on Kubeflow: the book's distributed SVD as a SparkApplication, a
# search for the best cut, a pipeline in which each tool does its part and leaves pictures in
# the UI, and a served basis that denoises new slices.

"""The IMDB KFP v2 pipeline: tune (Katib) -> train distributed (TrainJob) -> evaluate -> deploy.

    python -m imdb_sentiment.pipeline                  # compiles imdb_sentiment/manifests/pipeline.yaml
    python -m imdb_sentiment.pipeline --output FILE    # compiles elsewhere
    python -m imdb_sentiment.pipeline --image REGISTRY/imdb-sentiment:TAG --output FILE

Upload the YAML in the Kubeflow Pipelines UI (or `kfp.Client().create_run_from_pipeline_package`)
and run it in your profile namespace. Its steps:

1. `load-data`: the IMDB archive (downloaded and checksummed) or the committed sample, as a
   Dataset artifact; the evaluate step reads its test split.
2. `tune`: creates the Katib Experiment of manifests/katib-experiment.yaml (Bayesian optimisation
   of the learning rate, epochs and batch size; each trial a TrainJob), waits until Katib says
   it succeeded, and returns the optimal trial's values as the flags the trials passed them by.
3. `train`: creates the TrainJob of manifests/trainjob.yaml with those flags on `num_nodes`
   nodes (MultiWorkerMirroredStrategy on the case's `imdb-tensorflow-distributed` runtime),
   waits until Trainer marks it Complete, and copies the model its chief wrote to the
   `models_pvc` volume into the step's Model artifact.
4. `evaluate`: accuracy, log loss, calibration error and the confusion matrix on the test split.
5. `deploy`, when the accuracy reaches `threshold`: the InferenceService for that model.

On a cluster (a step's pod sees KUBERNETES_SERVICE_HOST) tune and train create the Katib and
Trainer resources in `namespace` ("" is the run's own) and wait for them; deploy creates the
InferenceService. On a laptop the same pipeline runs with `kfp.local.SubprocessRunner(
use_venv=False)` (imdb_sentiment/tests/test_pipeline.py) from the repository root, and the steps
hand the very same objects to the repository's test harness (tests/harness), which runs the
Experiment's trials and the TrainJob's nodes as processes on 127.0.0.1, as the controllers would
run pods; with `sample=True` the objects first get case.toml's smoke overrides (the sample, one
node per trial). There the deploy step only writes the InferenceService it would create.

Every component runs in the case image, which holds this package, its manifests and everything it
imports, so components import inside their bodies, set `install_kfp_package=False` and install
nothing. KFP writes a component's image into the YAML when this module is imported, so the image
is a compile-time setting: `--image`, or the IMDB_SENTIMENT_IMAGE environment variable, else the
image manifests/kustomization.yaml names; the trials, the TrainJob (`training_image`) and the
InferenceService (`serving_image`) take it as a run parameter whose default is that same image.

What the cluster needs (as in mnist/pipeline.py, plus Katib and Trainer); `kubectl apply -k
imdb_sentiment/manifests` creates all of it but the Secret:
- The `imdb-tensorflow-distributed` TrainingRuntime and the `models_pvc` claim (`imdb-models`,
  manifests/pvc.yaml) in the namespace. The train step mounts that claim at /mnt/pvc, as the
  TrainJob's nodes do, to copy the model out (kfp-kubernetes' `mount_pvc`, the one setting that
  makes the compiled YAML two documents: the pipeline, then its Kubernetes platform spec).
- RBAC (manifests/rbac.yaml): the run's ServiceAccount (`default-editor` in a Kubeflow profile,
  `pipeline-runner` with standalone Kubeflow Pipelines) may create and read Katib
  `experiments`, Trainer `trainjobs` and KServe `inferenceservices` in the namespace.
- Storage: the InferenceService reads the model from the pipeline's artifact store (SeaweedFS
  since KFP 2.15, `minio://` URIs handed to KServe as `s3://`) as `serving_account`
  (`imdb-serving`), which lists a Secret with the store's key pair and endpoint
  (manifests/storage/ makes it from a git-ignored file); no credentials live in this repository.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import argparse
import os
import subprocess
import sys
from pathlib import Path

from kfp import compiler, dsl, kubernetes
from kfp.dsl import (
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
)

# The image manifests/kustomization.yaml names (and case.toml); IMDB_SENTIMENT_IMAGE replaces it
# when this module is imported, which is when KFP fixes each component's image.
DEFAULT_IMAGE = "ghcr.io/kubeflow-case-studies/imdb-sentiment:0.1.0"
IMAGE_VARIABLE = "IMDB_SENTIMENT_IMAGE"
IMAGE = os.environ.get(IMAGE_VARIABLE) or DEFAULT_IMAGE
COMPILED = Path(__file__).resolve().parent / "manifests" / "pipeline.yaml"
# The claim the TrainJob's nodes write the model to (manifests/trainjob.yaml), mounted where they
# mount it; a test keeps the two alike.
MODELS_PVC = "imdb-models"
PVC_MOUNT = "/mnt/pvc"


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def load_data(sample: bool, dataset: Output[Dataset]):
    """The IMDB archive (downloaded once, checksummed) or the committed sample, in its own
    .tar.gz layout, which `imdb_sentiment.data.read_reviews` reads."""
    import shutil

    from imdb_sentiment import data

    if sample:
        source = data.SAMPLE
    else:
        source = data.download(
            data.URL, data.DEFAULT_DATA_DIR.expanduser() / data.ARCHIVE, data.SHA256
        )
    shutil.copyfile(source, dataset.path)
    (train_x, _), (test_x, _) = data.read_reviews(dataset.path)
    dataset.metadata.update(
        {"source": "sample" if sample else "imdb", "train": len(train_x), "test": len(test_x)}
    )
    print(f"train={len(train_x)} test={len(test_x)} reviews", flush=True)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune(
    sample: bool,
    max_trial_count: int,
    parallel_trial_count: int,
    namespace: str,
    training_image: str,
    timeout: int,
    metrics: Output[Metrics],
    trials: Output[Markdown],
) -> list:
    """Run the Katib Experiment; return the optimal trial's values as the trainer flags the
    trials received them by (e.g. ["--learning-rate=0.0021", "--epochs=4", "--batch-size=64"])."""
    import os
    import re
    import secrets
    import time
    from pathlib import Path

    import yaml

    import imdb_sentiment

    path = Path(imdb_sentiment.__file__).resolve().parent / "manifests" / "katib-experiment.yaml"
    experiment = yaml.safe_load(path.read_text())
    cluster = "KUBERNETES_SERVICE_HOST" in os.environ
    if sample and not cluster:  # the committed sample, one node per trial: case.toml's smoke form
        from tests.harness import cases, manifests

        case = cases.load_case(path.parents[1])
        experiment = manifests.apply_overrides(experiment, case.overrides_for(path))

    spec = experiment["spec"]
    # A fresh name per run: an Experiment's name is taken until it is deleted.
    experiment["metadata"]["name"] += "-" + secrets.token_hex(3)
    spec["maxTrialCount"] = max_trial_count
    spec["parallelTrialCount"] = parallel_trial_count
    trainer = spec["trialTemplate"]["trialSpec"]["spec"]["trainer"]
    trainer["image"] = training_image
    if sample and "--sample" not in trainer["args"]:
        trainer["args"].append(
            "--sample"
        )  # imdb_sentiment.train's data flags: it wins over the rest
    metric = spec["objective"]["objectiveMetricName"]

    if cluster:
        from kubernetes import client, config

        config.load_incluster_config()  # the run's ServiceAccount may create Experiments
        if not namespace:  # the run's own namespace, e.g. the Kubeflow profile's
            namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text()
        name, where = experiment["metadata"]["name"], ("kubeflow.org", "v1beta1", namespace.strip())
        api = client.CustomObjectsApi()
        api.create_namespaced_custom_object(*where, "experiments", experiment)
        print(f"created Experiment {namespace.strip()}/{name}", flush=True)
        deadline = time.monotonic() + timeout
        while True:
            status = api.get_namespaced_custom_object(*where, "experiments", name).get("status", {})
            true = {c["type"] for c in status.get("conditions", []) if c["status"] == "True"}
            if true & {"Succeeded", "Failed"}:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"Experiment {name} did not finish in {timeout} s")
            time.sleep(30)
        if "Succeeded" not in true:
            raise RuntimeError(f"Experiment {name} failed: {status.get('conditions')}")
        optimal = status.get("currentOptimalTrial", {})
        best = {p["name"]: p["value"] for p in optimal.get("parameterAssignments", [])}
        observed = (optimal.get("observation") or {}).get("metrics") or []
        value = next((float(m["max"]) for m in observed if m["name"] == metric), float("nan"))
        table = [f"| {optimal.get('bestTrialName', '')} | {value} |"]
        count = status.get("trials", 0)
    else:
        from tests.harness import katib, manifests
        from tests.harness.trainer import runtimes_beside

        manifests.check(experiment)  # strictly, as the API server and Katib's webhook would
        workdir = Path(trials.path).parent / "katib"
        result = katib.run_experiment(
            experiment, workdir=workdir, timeout=timeout, runtimes=runtimes_beside(path)
        )
        print(result.format_trials(), flush=True)
        if not result.succeeded or result.optimal_trial is None:
            raise RuntimeError(f"Experiment {result.name} failed: {result.message}")
        best, value = result.optimal_trial.parameters, result.optimal_trial.objective
        table = [
            f"| {t.name} | {t.objective} | "
            + " | ".join(t.parameters.get(p["name"], "") for p in spec["parameters"])
            + " |"
            for t in result.trials
        ]
        count = len(result.trials)

    # Each parameter reaches the trainer as the flag whose value the trial template fills in,
    # e.g. "--learning-rate=${trialParameters.learningRate}": the TrainJob gets the same flags.
    flags = []
    for parameter in spec["trialTemplate"]["trialParameters"]:
        if parameter["reference"] not in best:
            continue  # not a search parameter (e.g. the trial's own name)
        placeholder = "${trialParameters." + parameter["name"] + "}"
        for arg in trainer["args"]:
            found = re.fullmatch(r"(--[\w-]+)=" + re.escape(placeholder), arg)
            if found:
                flags.append(f"{found[1]}={best[parameter['reference']]}")
    names = [p["name"] for p in spec["parameters"]]
    lines = [
        f"# Katib Experiment {experiment['metadata']['name']}",
        "",
        f"{count} trials; the optimal trial's {metric} is {value}, with " + " ".join(flags) + ".",
        "",
    ]
    if not cluster:
        lines += [f"| trial | {metric} | " + " | ".join(names) + " |"]
        lines += ["|---" * (len(names) + 2) + "|", *table]
    Path(trials.path).write_text("\n".join(lines) + "\n")
    metrics.log_metric(metric, value)
    metrics.log_metric("trials", count)
    print(f"best {metric}={value}: " + " ".join(flags), flush=True)
    return flags


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    sample: bool,
    flags: list,
    num_nodes: int,
    namespace: str,
    training_image: str,
    timeout: int,
    pvc_mount: str,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Run the TrainJob with the tuned flags on num_nodes nodes; the model folder its chief wrote
    (model.keras, calibration.json, metrics.json) becomes this step's Model artifact.

    The TrainJob's nodes mount the models claim at /mnt/pvc; on a cluster this step mounts it at
    pvc_mount to copy the model out."""
    import json
    import os
    import secrets
    import shutil
    import time
    from pathlib import Path

    import yaml

    import imdb_sentiment

    path = Path(imdb_sentiment.__file__).resolve().parent / "manifests" / "trainjob.yaml"
    job = yaml.safe_load(path.read_text())
    cluster = "KUBERNETES_SERVICE_HOST" in os.environ
    if sample and not cluster:  # the committed sample: case.toml's smoke form of the TrainJob
        from tests.harness import cases, manifests

        case = cases.load_case(path.parents[1])
        job = manifests.apply_overrides(job, case.overrides_for(path))

    def set_flag(args: list, flag: str) -> list:
        """args with `--name=value` in place of an earlier `--name=...`, or added at the end."""
        name = flag.split("=", 1)[0] + "="
        if not any(a.startswith(name) for a in args):
            return [*args, flag]
        return [flag if a.startswith(name) else a for a in args]

    # A fresh name per run (a TrainJob's name is taken until it is deleted), and a model folder
    # and checkpoints of its own on the shared volume.
    name = job["metadata"]["name"] = job["metadata"]["name"] + "-" + secrets.token_hex(3)
    trainer = job["spec"]["trainer"]
    args = trainer["args"]
    folder = f"pipeline/{name}"  # on the claim
    for flag in [
        *flags,
        f"--model-dir=/mnt/pvc/{folder}",
        f"--checkpoint-dir=/mnt/pvc/{folder}-ckpt",
    ]:
        args = set_flag(args, flag)
    if sample and "--sample" not in args:
        args.append("--sample")
    trainer["args"] = args
    trainer["image"] = training_image
    trainer["numNodes"] = num_nodes
    # The runtime's entry point needs the node count to write TF_CONFIG.
    trainer["env"] = [e for e in trainer.get("env", []) if e["name"] != "TF_NUM_NODES"]
    trainer["env"].append({"name": "TF_NUM_NODES", "value": str(num_nodes)})
    print(f"TrainJob {name}: {num_nodes} nodes, args {' '.join(args)}", flush=True)

    if cluster:
        from kubernetes import client, config

        config.load_incluster_config()  # the run's ServiceAccount may create TrainJobs
        if not namespace:
            namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text()
        where = ("trainer.kubeflow.org", "v1alpha1", namespace.strip(), "trainjobs")
        api = client.CustomObjectsApi()
        api.create_namespaced_custom_object(*where, job)
        deadline = time.monotonic() + timeout
        while True:
            status = api.get_namespaced_custom_object(*where, name).get("status", {})
            true = {c["type"] for c in status.get("conditions", []) if c["status"] == "True"}
            if true & {"Complete", "Failed"}:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"TrainJob {name} did not finish in {timeout} s")
            time.sleep(15)
        if "Complete" not in true:
            raise RuntimeError(f"TrainJob {name} failed: {status.get('conditions')}")
        written = Path(pvc_mount) / folder  # this pod mounts the same claim there
    else:
        from tests.harness import jobs, manifests
        from tests.harness.containers import PathMap
        from tests.harness.trainer import runtimes_beside

        manifests.check(job)
        workdir = Path(model.path).parent / "trainjob"
        paths = PathMap(workdir)
        result = jobs.run_job(
            job,
            workdir=workdir,
            timeout=timeout,
            paths=paths,
            runtimes=runtimes_beside(path),
        )
        print(result.summary(), flush=True)
        result.raise_for_failure()
        written = paths.host(f"/mnt/pvc/{folder}")

    shutil.copytree(written, model.path, dirs_exist_ok=True)
    final = json.loads((written / "metrics.json").read_text())
    model.metadata.update({"framework": "keras", "trainjob": name, "nodes": num_nodes})
    for key, value in final.items():
        metrics.log_metric(key, value)
    print(f"TrainJob {name}: Complete; model in {model.path}", flush=True)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    dataset: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
) -> float:
    """Accuracy, log loss and calibration error on the test split, and the confusion matrix.

    Returns the accuracy as the task's single output: kfp.local's dsl.If reads only an output
    named "Output" (a NamedTuple field silently evaluates as false there).
    """
    import numpy as np

    from imdb_sentiment import data
    from imdb_sentiment.model import SentimentModel, expected_calibration_error, log_loss

    _, (texts, labels) = data.read_reviews(dataset.path)
    classifier = SentimentModel.load(model.path)
    raw = classifier.classifier.raw_probabilities(texts)  # raw and calibrated from one pass
    probabilities = classifier.calibration(raw)
    predicted = (probabilities >= 0.5).astype(np.int64)
    matrix = np.zeros((2, 2), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)  # rows: true label, columns: predicted
    accuracy = float(np.trace(matrix) / len(labels))

    metrics.log_metric("accuracy", accuracy)
    metrics.log_metric("loss", log_loss(probabilities, labels))
    metrics.log_metric("ece", expected_calibration_error(probabilities, labels))
    metrics.log_metric("ece_uncalibrated", expected_calibration_error(raw, labels))
    confusion.log_confusion_matrix(["negative", "positive"], matrix.tolist())
    print(f"accuracy={accuracy} reviews={len(labels)}", flush=True)
    return accuracy


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deploy(
    model: Input[Model],
    accuracy: float,
    service_name: str,
    namespace: str,
    serving_account: str,
    serving_image: str,
    inference_service: Output[Artifact],
):
    """Render the InferenceService for the model; inside a cluster, also create or replace it."""
    # Self-contained: at run time KFP loads only this function's source, in a kfp that cannot
    # import a module defining components, so nothing here may come from imdb_sentiment.pipeline.
    import os
    from pathlib import Path

    import yaml

    uri = model.uri
    # KFP names its store minio:// (SeaweedFS since KFP 2.15, MinIO before): both speak S3, and
    # KServe's storage initializer reads s3://, not minio://.
    if uri.startswith("minio://"):
        uri = "s3://" + uri.removeprefix("minio://")
    # imdb_sentiment/manifests/inferenceservice.yaml with this run's model (a test keeps the two
    # alike); KServe's storage initializer copies STORAGE_URI to /mnt/models.
    container = {
        "name": "kserve-container",
        "image": serving_image,
        "command": ["python", "-m", "imdb_sentiment.serve"],
        "args": ["--model_name", "imdb", "--model-dir", "/mnt/models", "--http_port", "8080"],
        "env": [{"name": "STORAGE_URI", "value": uri}],
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}},
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"cpu": "1", "memory": "2Gi"},
        },
    }
    predictor = {"minReplicas": 1, "maxReplicas": 3, "containers": [container]}
    if serving_account:  # the one holding the artifact store's credentials (module docstring)
        predictor["serviceAccountName"] = serving_account
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": service_name,
            "labels": {"app.kubernetes.io/name": "imdb-sentiment"},
            # A plain Deployment and Service, no Knative (RawDeployment: its deprecated name).
            "annotations": {"serving.kserve.io/deploymentMode": "Standard"},
        },
        "spec": {"predictor": predictor},
    }
    with Path(inference_service.path).open("w") as f:
        yaml.safe_dump(manifest, f, sort_keys=False)
    inference_service.metadata.update({"name": service_name, "accuracy": accuracy})

    if "KUBERNETES_SERVICE_HOST" not in os.environ:  # a laptop run: render only
        print(f"rendered InferenceService {service_name} (no cluster: not applied)", flush=True)
        return

    # Copied from mnist.pipeline.deploy.apply_in_cluster
    def apply_in_cluster(manifest: dict, namespace: str) -> str:
        """Create the InferenceService, or replace the one of its name; return the namespace."""
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException

        config.load_incluster_config()  # the run's ServiceAccount (RBAC: manifests/rbac.yaml)
        if not namespace:  # the run's own namespace, e.g. the Kubeflow profile's
            namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text()
        name = manifest["metadata"]["name"]
        where = {
            "group": "serving.kserve.io",
            "version": "v1beta1",
            "namespace": namespace.strip(),
            "plural": "inferenceservices",
        }
        api = client.CustomObjectsApi()
        try:
            api.create_namespaced_custom_object(body=manifest, **where)
            action = "created"
        except ApiException as err:
            if err.status != 409:  # 409: one of that name exists; anything else is a real error
                raise
            # A replace must carry the current resourceVersion, or the API server refuses it.
            current = api.get_namespaced_custom_object(name=name, **where)
            manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            api.replace_namespaced_custom_object(name=name, body=manifest, **where)
            action = "replaced"
        print(f"{action} InferenceService {where['namespace']}/{name}", flush=True)
        return where["namespace"]

    inference_service.metadata["namespace"] = apply_in_cluster(manifest, namespace)


@dsl.pipeline(
    name="imdb-sentiment",
    description="Tune the IMDB BiLSTM with Katib, train it distributed with the best values, "
    "evaluate it, and serve it with KServe when accurate enough.",
)
def imdb_pipeline(
    sample: bool = False,
    max_trial_count: int = 12,
    parallel_trial_count: int = 3,
    num_nodes: int = 2,
    threshold: float = 0.87,
    service_name: str = "imdb",
    namespace: str = "",
    models_pvc: str = MODELS_PVC,
    training_image: str = IMAGE,
    serving_account: str = "imdb-serving",
    serving_image: str = IMAGE,
    timeout: int = 43200,
):
    """Defaults: the full data, the manifests' search and two nodes; namespace "" means the run's
    own; timeout is how long tune and train each wait for their resource, in seconds."""
    data = load_data(sample=sample)
    data.set_cpu_request("500m").set_memory_request("1Gi").set_memory_limit("2Gi")

    # tune and train only create a resource and wait for it: the trials and nodes are pods of
    # their own, with the manifests' resources.
    tuned = tune(
        sample=sample,
        max_trial_count=max_trial_count,
        parallel_trial_count=parallel_trial_count,
        namespace=namespace,
        training_image=training_image,
        timeout=timeout,
    )
    tuned.set_cpu_request("100m").set_memory_request("256Mi").set_memory_limit("512Mi")

    trained = train(
        sample=sample,
        flags=tuned.outputs["Output"],
        num_nodes=num_nodes,
        namespace=namespace,
        training_image=training_image,
        timeout=timeout,
        pvc_mount=PVC_MOUNT,
    )
    trained.set_cpu_request("100m").set_memory_request("256Mi").set_memory_limit("1Gi")
    kubernetes.mount_pvc(trained, pvc_name=models_pvc, mount_path=PVC_MOUNT)

    scores = evaluate(dataset=data.outputs["dataset"], model=trained.outputs["model"])
    scores.set_cpu_request("1").set_memory_request("2Gi").set_memory_limit("4Gi")

    with dsl.If(scores.outputs["Output"] >= threshold, name="accurate-enough"):
        served = deploy(
            model=trained.outputs["model"],
            accuracy=scores.outputs["Output"],
            service_name=service_name,
            namespace=namespace,
            serving_account=serving_account,
            serving_image=serving_image,
        )
        # It acts on the cluster: a cached result would skip re-creating a deleted service.
        served.set_caching_options(False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compile the IMDB sentiment pipeline to YAML.")
    parser.add_argument(
        "--output",
        type=Path,
        default=COMPILED,
        help="where the YAML goes (default: imdb_sentiment/manifests/pipeline.yaml)",
    )
    parser.add_argument(
        "--image",
        default=IMAGE,
        help=f"the image every step runs in and the default training_image and serving_image "
        f"(default: ${IMAGE_VARIABLE}, else {DEFAULT_IMAGE})",
    )
    args = parser.parse_args(argv)
    if not args.image.strip():
        parser.error("--image needs an image name, e.g. registry.example.com/imdb-sentiment:0.1.0")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.image != IMAGE:
        # The components took their image when this module was imported: compile in a fresh
        # interpreter that imports it with the other one.
        root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, IMAGE_VARIABLE: args.image, "PYTHONPATH": path}
        command = [sys.executable, "-m", "imdb_sentiment.pipeline", "--output", str(args.output)]
        subprocess.run(command, env=env, check=True)
        return
    compiler.Compiler().compile(imdb_pipeline, str(args.output))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

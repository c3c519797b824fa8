"""The income KFP v2 pipeline: data -> train -> evaluate -> explain -> deploy when accurate enough.

    python -m income_census.pipeline                  # compiles income_census/manifests/pipeline.yaml
    python -m income_census.pipeline --output FILE    # compiles elsewhere
    python -m income_census.pipeline --image REGISTRY/income-census:TAG --output FILE

Upload the YAML in the Kubeflow Pipelines UI (or `kfp.Client().create_run_from_pipeline_package`)
and run it in your profile namespace; its defaults train the book's RandomForest on the full Adult
data. On a laptop the same pipeline runs with `kfp.local.SubprocessRunner(use_venv=False)`
(income_census/tests/test_pipeline.py) with `sample=True`; there the deploy step only writes the
InferenceService it would create.

The explain step writes anchors for a few test rows as a Markdown artifact, which the KFP UI
shows in the run's Visualizations tab.

Every component runs in the case image, which holds this package and everything it imports, so
components import inside their bodies, set `install_kfp_package=False` and install nothing. KFP
writes a component's image into the YAML when this module is imported, so the image is a
compile-time setting: `--image`, or the INCOME_CENSUS_IMAGE environment variable, else the image
manifests/kustomization.yaml names; the deploy step's `serving_image` run parameter defaults to
it.

What the cluster needs for the deploy step (as in mnist/pipeline.py): manifests/rbac.yaml lets
the run's ServiceAccount (`default-editor` in a Kubeflow profile, which may already,
`pipeline-runner` with standalone Kubeflow Pipelines, which may not) create and replace
InferenceServices, and holds `income-serving`, the `serving_account` the predictor and explainer
run as. It lists the Secret `income-storage` (the artifact store's `AWS_ACCESS_KEY_ID` and
`AWS_SECRET_ACCESS_KEY`, annotated with its endpoint), which manifests/storage/ makes from a
git-ignored storage.env: KServe's storage initializer reads the model with it from Kubeflow
Pipelines' store, SeaweedFS since KFP 2.15 (Service `seaweedfs.kubeflow`, S3 on port 9000), whose
`minio://` artifact URIs the deploy step hands to KServe as `s3://`. No credentials live here.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import argparse
import os
import subprocess
import sys
from pathlib import Path

from kfp import compiler, dsl
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

# The image manifests/kustomization.yaml names (and case.toml); INCOME_CENSUS_IMAGE replaces it
# when this module is imported, which is when KFP fixes each component's image.
DEFAULT_IMAGE = "ghcr.io/kubeflow-case-studies/income-census:0.1.0"
IMAGE_VARIABLE = "INCOME_CENSUS_IMAGE"
IMAGE = os.environ.get(IMAGE_VARIABLE) or DEFAULT_IMAGE
COMPILED = Path(__file__).resolve().parent / "manifests" / "pipeline.yaml"


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def load_data(sample: bool, dataset: Output[Dataset]):
    """Adult (downloaded and checksummed) or the committed sample, as a folder holding adult.data
    and adult.test in their original format, which `income_census.train --dataset` reads."""
    import shutil
    from pathlib import Path

    from income_census import data

    folder = Path(dataset.path)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("adult.data", "adult.test"):
        if sample:
            source = data.SAMPLE_DIR / data.SAMPLE_FILES[name]
        else:
            source = data.download(
                data.MIRROR + name, data.DEFAULT_DATA_DIR.expanduser() / name, data.SHA256[name]
            )
        shutil.copyfile(source, folder / name)
    rows = {name: len(data.read_adult(folder / name)[0]) for name in ("adult.data", "adult.test")}
    dataset.metadata.update(
        {"source": "sample" if sample else "uci", "train": rows["adult.data"]}
        | {"test": rows["adult.test"]}
    )
    print(f"train={rows['adult.data']} test={rows['adult.test']} rows", flush=True)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    model_type: str,
    n_estimators: int,
    max_depth: int,
    learning_rate: float,
    seed: int,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """income_census.train on the dataset artifact: the model folder holds model.joblib and
    background.csv, as income_census.serve expects; its metrics go to this step's Metrics."""
    from income_census import train as trainer

    # The same CLI the Katib trials run, so the pipeline trains the same model.
    final = trainer.main(
        [
            f"--dataset={dataset.path}",
            f"--model-dir={model.path}",
            f"--model={model_type}",
            f"--n-estimators={n_estimators}",
            f"--max-depth={max_depth}",
            f"--learning-rate={learning_rate}",
            f"--seed={seed}",
        ]
    )
    model.metadata.update({"framework": "scikit-learn", "model": model_type})
    for name, value in final.items():
        metrics.log_metric(name, value)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    dataset: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
) -> float:
    """Accuracy on adult.test and the confusion matrix the KFP UI draws.

    Returns the accuracy as the task's single output: kfp.local's dsl.If reads only an output
    named "Output" (a NamedTuple field silently evaluates as false there).
    """
    from pathlib import Path

    import joblib
    import numpy as np

    from income_census import data

    rows, labels = data.read_adult(Path(dataset.path) / "adult.test")
    predicted = joblib.load(Path(model.path) / "model.joblib").predict(rows)
    matrix = np.zeros((2, 2), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)  # rows: true class, columns: predicted
    accuracy = float(np.trace(matrix) / len(labels))
    baseline = float(max(labels.mean(), 1 - labels.mean()))

    metrics.log_metric("accuracy", accuracy)
    metrics.log_metric("baseline_accuracy", baseline)
    confusion.log_confusion_matrix(["<=50K", ">50K"], matrix.tolist())
    print(f"accuracy={accuracy} baseline_accuracy={baseline}", flush=True)
    return accuracy


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def explain(dataset: Input[Dataset], model: Input[Model], rows: int, report: Output[Markdown]):
    """Anchors for the first `rows` test rows predicted <=50K and >50K, as a Markdown table."""
    from pathlib import Path

    import joblib
    import pandas as pd

    from income_census import data
    from income_census.explain import Explainer

    folder = Path(model.path)
    pipeline = joblib.load(folder / "model.joblib")
    explainer = Explainer(pipeline, pd.read_csv(folder / "background.csv", keep_default_na=False))
    test_rows, _ = data.read_adult(Path(dataset.path) / "adult.test")
    predicted = pipeline.predict(test_rows)
    lines = [
        "# Anchors: why the model decided",
        "",
        "An anchor is a rule that keeps the prediction for (almost) everyone it covers:",
        "precision is how often it does, coverage how many people the rule applies to.",
        "",
        "| test row | prediction | anchor | precision | coverage |",
        "|---|---|---|---|---|",
    ]
    for label in (0, 1):
        for index in [i for i, p in enumerate(predicted) if p == label][:rows]:
            found = explainer.explain(test_rows.iloc[[index]])
            rule = " AND ".join(found["anchor"]) or "(empty: the prediction holds everywhere)"
            lines.append(
                f"| {index} | {found['label']} | {rule} | {found['precision']:.2f} "
                f"| {found['coverage']:.2f} |"
            )
            print(f"row {index}: {found['label']} because {rule}", flush=True)
    Path(report.path).write_text("\n".join(lines) + "\n")


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
    """Render the InferenceService (predictor and explainer); inside a cluster, also apply it."""
    # Self-contained: at run time KFP loads only this function's source, in a kfp that cannot
    # import a module defining components, so nothing here may come from income_census.pipeline.
    import os
    from pathlib import Path

    import yaml

    uri = model.uri
    # KFP names its store minio:// (SeaweedFS since KFP 2.15, MinIO before): both speak S3, and
    # KServe's storage initializer reads s3://, not minio://.
    if uri.startswith("minio://"):
        uri = "s3://" + uri.removeprefix("minio://")

    def component(cpu_request: str, max_replicas: int, batcher: dict | None = None) -> dict:
        # income_census/manifests/inferenceservice.yaml with this run's model (a test keeps the
        # two alike); KServe's storage initializer copies STORAGE_URI to /mnt/models.
        container = {
            "name": "kserve-container",
            "image": serving_image,
            "command": ["python", "-m", "income_census.serve"],
            "args": ["--model_name", "income", "--model-dir", "/mnt/models", "--http_port", "8080"],
            "env": [{"name": "STORAGE_URI", "value": uri}],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}},
            "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
            "resources": {
                "requests": {"cpu": cpu_request, "memory": "512Mi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
        }
        spec = {"minReplicas": 1, "maxReplicas": max_replicas}
        if batcher:  # KServe's V1 request batcher, for the predictor
            spec["batcher"] = batcher
        spec["containers"] = [container]
        if serving_account:  # the one holding the artifact store's credentials
            spec["serviceAccountName"] = serving_account
        return spec

    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": service_name,
            "labels": {"app.kubernetes.io/name": "income-census"},
            # A plain Deployment and Service, no Knative (RawDeployment: its deprecated name).
            "annotations": {"serving.kserve.io/deploymentMode": "Standard"},
        },
        "spec": {
            "predictor": component("250m", 3, {"maxBatchSize": 100, "maxLatency": 10}),
            "explainer": component("500m", 1),
        },
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
    name="income-census",
    description="Train the Adult income classifier, evaluate and explain it, and serve it with "
    "KServe when accurate enough.",
)
def income_pipeline(
    sample: bool = False,
    model_type: str = "random_forest",
    n_estimators: int = 50,
    max_depth: int = 0,
    learning_rate: float = 0.3,
    seed: int = 42,
    explain_rows: int = 2,
    threshold: float = 0.84,
    service_name: str = "income",
    namespace: str = "",
    serving_account: str = "income-serving",
    serving_image: str = IMAGE,
):
    """Defaults are income_census.train's, on the full data; namespace "" means the run's own."""
    data = load_data(sample=sample)
    data.set_cpu_request("250m").set_memory_request("512Mi").set_memory_limit("1Gi")

    trained = train(
        dataset=data.outputs["dataset"],
        model_type=model_type,
        n_estimators=n_estimators,
        max_depth=max_depth,
        learning_rate=learning_rate,
        seed=seed,
    )
    trained.set_cpu_request("1").set_cpu_limit("2").set_memory_request("1Gi")
    trained.set_memory_limit("2Gi")

    scores = evaluate(dataset=data.outputs["dataset"], model=trained.outputs["model"])
    scores.set_cpu_request("500m").set_memory_request("512Mi").set_memory_limit("1Gi")

    reasons = explain(
        dataset=data.outputs["dataset"], model=trained.outputs["model"], rows=explain_rows
    )
    reasons.set_cpu_request("1").set_memory_request("512Mi").set_memory_limit("1Gi")

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
    parser = argparse.ArgumentParser(description="Compile the income pipeline to YAML.")
    parser.add_argument(
        "--output",
        type=Path,
        default=COMPILED,
        help="where the YAML goes (default: income_census/manifests/pipeline.yaml)",
    )
    parser.add_argument(
        "--image",
        default=IMAGE,
        help=f"the image every step runs in and the default serving_image (default: "
        f"${IMAGE_VARIABLE}, else {DEFAULT_IMAGE})",
    )
    args = parser.parse_args(argv)
    if not args.image.strip():
        parser.error("--image needs an image name, e.g. registry.example.com/income-census:0.1.0")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.image != IMAGE:
        # The components took their image when this module was imported: compile in a fresh
        # interpreter that imports it with the other one.
        root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, IMAGE_VARIABLE: args.image, "PYTHONPATH": path}
        command = [sys.executable, "-m", "income_census.pipeline", "--output", str(args.output)]
        subprocess.run(command, env=env, check=True)
        return
    compiler.Compiler().compile(income_pipeline, str(args.output))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

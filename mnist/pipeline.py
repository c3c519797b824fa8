"""The MNIST KFP v2 pipeline: load data -> train -> evaluate -> deploy when accurate enough.

    python -m mnist.pipeline                  # compiles to mnist/manifests/pipeline.yaml
    python -m mnist.pipeline --output FILE    # compiles elsewhere
    python -m mnist.pipeline --image REGISTRY/mnist:TAG --output FILE   # your own image

Upload the YAML in the Kubeflow Pipelines UI (or `kfp.Client().create_run_from_pipeline_package`)
and run it in your profile namespace; its defaults train on the full MNIST. On a laptop the same
pipeline runs with `kfp.local.SubprocessRunner(use_venv=False)` (mnist/tests/test_pipeline.py),
e.g. with `sample=True, epochs=2`; there the deploy step only writes the InferenceService it
would create.

Every component runs in the case image, which already holds this package and everything it
imports, so components import inside their bodies (only a component's source ships to the
cluster), set `install_kfp_package=False` and install nothing at run time. KFP writes a
component's image into the YAML when this module is imported, so the image is a compile-time
setting: `--image`, or the MNIST_IMAGE environment variable, else the image
manifests/kustomization.yaml names. The deploy step's `serving_image` is a run parameter whose
default is that same image.

What the cluster needs for the deploy step (manifests/rbac.yaml and manifests/storage/):
- RBAC: in a Kubeflow profile, runs use the namespace's `default-editor` ServiceAccount, which
  may already create InferenceServices (KServe's Kubeflow install aggregates them into
  `kubeflow-edit`); standalone Kubeflow Pipelines runs as `pipeline-runner` in `kubeflow`, which
  may not. rbac.yaml's Role and RoleBinding give both create/get/update/patch/delete on
  `serving.kserve.io/inferenceservices` in the namespace it is applied to.
- Storage: the InferenceService reads the model from the pipeline's artifact store. Since
  Kubeflow Pipelines 2.15 that is SeaweedFS (Service `seaweedfs`, namespace `kubeflow`, S3 on
  port 9000); artifact URIs still read `minio://mlpipeline/...`, which the deploy step hands to
  KServe as `s3://mlpipeline/...`. The predictor runs as the ServiceAccount named by
  `serving_account` (default `mnist-serving`, in rbac.yaml), which lists the Secret
  `mnist-storage`: the store's key pair as `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`,
  annotated with the store's endpoint. manifests/storage/ generates it from a git-ignored
  storage.env; no credentials live in this repository.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import argparse
import os
import subprocess
import sys
from pathlib import Path

from kfp import compiler, dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

# The image manifests/kustomization.yaml names (and case.toml); MNIST_IMAGE replaces it when this
# module is imported, which is when KFP fixes each component's image.
DEFAULT_IMAGE = "ghcr.io/kubeflow-case-studies/mnist:0.1.0"
IMAGE_VARIABLE = "MNIST_IMAGE"
IMAGE = os.environ.get(IMAGE_VARIABLE) or DEFAULT_IMAGE
COMPILED = Path(__file__).resolve().parent / "manifests" / "pipeline.yaml"


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def load_data(sample: bool, dataset: Output[Dataset]):
    """MNIST (downloaded and checksummed) or the committed sample, as one .npz of uint8 arrays."""
    from pathlib import Path

    import numpy as np

    from mnist import data

    if sample:
        (train_x, train_y), (test_x, test_y) = data.load_sample()
    else:
        (train_x, train_y), (test_x, test_y) = data.load_mnist()
    # A file object, so numpy does not append ".npz" to the path KFP gave.
    with Path(dataset.path).open("wb") as f:
        np.savez_compressed(f, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
    dataset.metadata.update(
        {"source": "sample" if sample else "mnist", "train": len(train_x), "test": len(test_x)}
    )
    print(f"train={len(train_x)} test={len(test_x)} images", flush=True)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    num_layers: int,
    optimizer: str,
    seed: int,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """mnist.train on the dataset artifact; the model folder holds model.keras, as mnist.serve
    expects, and the final training metrics go to the KFP Metrics of this step."""
    from mnist import train as trainer

    # The same CLI the TFJob and the Katib trials run, so the pipeline trains the same model.
    final = trainer.main(
        [
            f"--dataset={dataset.path}",
            f"--model-dir={model.path}",
            f"--epochs={epochs}",
            f"--batch-size={batch_size}",
            f"--learning-rate={learning_rate}",
            f"--num-layers={num_layers}",
            f"--optimizer={optimizer}",
            f"--seed={seed}",
        ]
    )
    model.metadata.update({"framework": "keras", "epochs": epochs, "num_layers": num_layers})
    for name, value in final.items():
        metrics.log_metric(name, value)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    dataset: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
) -> float:
    """Accuracy and loss on the test split, and the confusion matrix the KFP UI draws.

    Returns the accuracy as the task's single output: kfp.local's dsl.If reads only an output
    named "Output" (a NamedTuple field silently evaluates as false there).
    """
    from pathlib import Path

    import keras
    import numpy as np

    from mnist import data

    arrays = np.load(dataset.path)
    test_x, test_y = arrays["test_x"], arrays["test_y"].astype(np.int64)
    net = keras.models.load_model(Path(model.path) / "model.keras")
    probabilities = net.predict(data.normalize(test_x), batch_size=256, verbose=0)
    predicted = probabilities.argmax(axis=1)

    # One prediction pass for all three figures, so they describe the same answers.
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (test_y, predicted), 1)  # rows: true digit, columns: predicted
    accuracy = float(np.trace(matrix) / len(test_y))
    # Keras' sparse categorical cross-entropy, which clips probabilities at 1e-7 as here.
    picked = probabilities[np.arange(len(test_y)), test_y]
    loss = float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())

    metrics.log_metric("accuracy", accuracy)
    metrics.log_metric("loss", loss)
    confusion.log_confusion_matrix([str(d) for d in range(10)], matrix.tolist())
    print(f"accuracy={accuracy} loss={loss}", flush=True)
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
    # import a module defining components, so nothing here may come from mnist.pipeline.
    import os
    from pathlib import Path

    import yaml

    uri = model.uri
    # KFP names its store minio:// (SeaweedFS since KFP 2.15, MinIO before): both speak S3, and
    # KServe's storage initializer reads s3://, not minio://.
    if uri.startswith("minio://"):
        uri = "s3://" + uri.removeprefix("minio://")
    # mnist/manifests/inferenceservice.yaml with this run's model (a test keeps the two alike):
    # a custom-container predictor; KServe's storage initializer copies STORAGE_URI to
    # /mnt/models before mnist.serve starts.
    container = {
        "name": "kserve-container",
        "image": serving_image,
        "command": ["python", "-m", "mnist.serve"],
        "args": ["--model_name", "mnist", "--model-dir", "/mnt/models", "--http_port", "8080"],
        "env": [{"name": "STORAGE_URI", "value": uri}],
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}},
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"cpu": "1", "memory": "2Gi"},
        },
    }
    predictor = {"minReplicas": 1, "maxReplicas": 3}
    predictor["batcher"] = {"maxBatchSize": 32, "maxLatency": 5}  # KServe's V1 request batcher
    predictor["containers"] = [container]
    if serving_account:  # the one holding the artifact store's credentials (module docstring)
        predictor["serviceAccountName"] = serving_account
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": service_name,
            "labels": {"app.kubernetes.io/name": "mnist"},
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

    # Every case's deploy step applies its InferenceService the same way; a component's body must
    # hold all it runs, so the other cases carry a copy of this function in their own deploy.
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
    name="mnist",
    description="Train the MNIST CNN, evaluate it, and serve it with KServe when accurate enough.",
)
def mnist_pipeline(
    sample: bool = False,
    epochs: int = 5,
    batch_size: int = 32,
    learning_rate: float = 0.001,
    num_layers: int = 2,
    optimizer: str = "adam",
    seed: int = 42,
    threshold: float = 0.97,
    service_name: str = "mnist",
    namespace: str = "",
    serving_account: str = "mnist-serving",
    serving_image: str = IMAGE,
):
    """Defaults are mnist.train's, on the full data; namespace "" means the run's own."""
    data = load_data(sample=sample)
    data.set_cpu_request("500m").set_memory_request("1Gi").set_memory_limit("2Gi")

    trained = train(
        dataset=data.outputs["dataset"],
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        num_layers=num_layers,
        optimizer=optimizer,
        seed=seed,
    )
    trained.set_cpu_request("1").set_cpu_limit("2").set_memory_request("2Gi")
    trained.set_memory_limit("4Gi")

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
    parser = argparse.ArgumentParser(description="Compile the MNIST pipeline to YAML.")
    parser.add_argument(
        "--output",
        type=Path,
        default=COMPILED,
        help="where the YAML goes (default: mnist/manifests/pipeline.yaml)",
    )
    parser.add_argument(
        "--image",
        default=IMAGE,
        help=f"the image every step runs in and the default serving_image (default: "
        f"${IMAGE_VARIABLE}, else {DEFAULT_IMAGE})",
    )
    args = parser.parse_args(argv)
    if not args.image.strip():
        parser.error("--image needs an image name, e.g. registry.example.com/mnist:0.1.0")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.image != IMAGE:
        # The components took their image when this module was imported: compile in a fresh
        # interpreter that imports it with the other one.
        root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, IMAGE_VARIABLE: args.image, "PYTHONPATH": path}
        command = [sys.executable, "-m", "mnist.pipeline", "--output", str(args.output)]
        subprocess.run(command, env=env, check=True)
        return
    compiler.Compiler().compile(mnist_pipeline, str(args.output))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

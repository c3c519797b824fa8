"""The mnist KFP pipeline: its committed YAML, a local run on the sample, and the deploy gate.

    .venv/bin/python -m pytest mnist/tests/test_pipeline.py -q

Two local runs (kfp.local SubprocessRunner, one subprocess per task, each importing TensorFlow;
their logs stream as they go): one that reaches the threshold, shared by most tests, and a
1-epoch one that cannot. The deploy step's cluster branch runs against a fake API server. The
image is a compile-time setting (`--image`, MNIST_IMAGE); compiling with another one is checked
here too.
"""

from pathlib import Path

import kubernetes
import numpy as np
import pytest
import yaml
from kfp import dsl
from kubernetes.client.rest import ApiException

from mnist import data, pipeline
from tests.harness import cases, manifests
from tests.harness.pipelines import LocalRun, compiled_drift, find_pipeline, run_local

# The resource requests are for the cluster; kfp.local says it ignores them, once per task.
pytestmark = pytest.mark.filterwarnings("ignore:Task .* no effect in the current local runner")

CASE = Path(pipeline.__file__).parent
CASE_TOML = cases.load_case(CASE)
# case.toml's smoke arguments: the sample, 2 epochs (about 0.93 test accuracy), a threshold
# that such a model clears.
SMOKE = CASE_TOML.smoke["pipeline"]["arguments"]
STEPS = ["deploy", "evaluate", "load-data", "train"]
MODE = "serving.kserve.io/deploymentMode"  # KServe 0.16+: Standard; RawDeployment is deprecated


def run_pipeline(arguments: dict, workdir: Path) -> LocalRun:
    with pytest.MonkeyPatch.context() as mp:
        # In a CI pod the deploy step would create a real InferenceService.
        mp.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        return run_local(pipeline.mnist_pipeline, arguments, workdir=workdir)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> LocalRun:
    return run_pipeline(SMOKE, tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def sample_test_labels() -> np.ndarray:
    return data.load_sample()[1][1]


def test_every_step_ran(run: LocalRun) -> None:
    assert run.tasks() == STEPS


def test_load_data_writes_the_sample_as_a_dataset(run: LocalRun, sample_test_labels) -> None:
    assert run.metadata("load-data", "dataset") == {"source": "sample", "train": 4000, "test": 1000}
    arrays = np.load(run.artifact("load-data", "dataset"))
    assert arrays["train_x"].shape == (4000, 28, 28) and arrays["train_x"].dtype == np.uint8
    np.testing.assert_array_equal(arrays["test_y"], sample_test_labels)


def test_train_writes_a_model_folder_and_its_metrics(run: LocalRun) -> None:
    model_dir = run.artifact("train", "model")
    assert (model_dir / "model.keras").stat().st_size > 0  # what mnist.serve loads
    logged = run.metadata("train", "metrics")
    # What mnist.train.main returns: the last epoch's values and its own test-split evaluation.
    assert {"accuracy", "loss", "val_accuracy", "val_loss", "test_accuracy"} <= set(logged)
    assert logged["val_accuracy"] >= CASE_TOML.floor("val_accuracy", "pipeline"), logged
    evaluated = run.parameters("evaluate")["Output"]
    assert abs(logged["test_accuracy"] - evaluated) < 1e-6  # the same model on the same digits


def test_evaluate_logs_accuracy_and_a_confusion_matrix(run: LocalRun, sample_test_labels) -> None:
    accuracy = run.parameters("evaluate")["Output"]
    metrics = run.metadata("evaluate", "metrics")
    assert accuracy >= CASE_TOML.floor("test_accuracy", "pipeline"), metrics
    assert metrics["accuracy"] == accuracy
    assert 0 < metrics["loss"] <= CASE_TOML.ceiling("loss", "pipeline"), metrics

    confusion = run.metadata("evaluate", "confusion")["confusionMatrix"]
    assert [s["displayName"] for s in confusion["annotationSpecs"]] == [str(d) for d in range(10)]
    matrix = np.array([row["row"] for row in confusion["rows"]])
    assert matrix.shape == (10, 10)
    assert matrix.sum() == len(sample_test_labels)
    # Rows are the true digits: each row counts every test image of its digit.
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(sample_test_labels, minlength=10))
    assert np.trace(matrix) / matrix.sum() == pytest.approx(accuracy)


def test_deploy_renders_a_valid_inference_service_for_the_model(run: LocalRun) -> None:
    isvc = yaml.safe_load(run.artifact("deploy", "inference_service").read_text())
    assert manifests.validate(isvc) == []
    assert isvc["metadata"]["name"] == "mnist"
    assert isvc["metadata"]["annotations"][MODE] == "Standard"  # not RawDeployment, not Knative
    predictor = isvc["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "mnist-serving"
    container = predictor["containers"][0]
    assert container["image"] == pipeline.IMAGE
    argv = " ".join(container["command"] + container["args"])
    assert argv.startswith("python -m mnist.serve --model_name mnist --model-dir /mnt/models")
    assert container["securityContext"] == {"runAsNonRoot": True, "allowPrivilegeEscalation": False}
    # Locally the model artifact's URI is the trained model's folder itself.
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["STORAGE_URI"] == str(run.artifact("train", "model"))
    accuracy = run.parameters("evaluate")["Output"]
    assert run.metadata("deploy", "inference_service") == {"name": "mnist", "accuracy": accuracy}


def test_deploy_renders_the_committed_inference_service_but_for_the_model(run: LocalRun) -> None:
    """What the pipeline deploys is what mnist/manifests/inferenceservice.yaml serves."""
    rendered = yaml.safe_load(run.artifact("deploy", "inference_service").read_text())
    committed = manifests.load(CASE / "manifests" / "inferenceservice.yaml")[0]
    for isvc in (rendered, committed):
        isvc["spec"]["predictor"].pop("serviceAccountName", None)  # S3 credentials, pipeline only
        for env in isvc["spec"]["predictor"]["containers"][0]["env"]:
            if env["name"] == "STORAGE_URI":
                env["value"] = "<the model>"
    assert rendered == committed


def test_deploy_is_skipped_below_the_threshold(tmp_path: Path) -> None:
    # A threshold a person could ask for (not 1.01, which no accuracy reaches) that one epoch on
    # the sample does not reach: about 0.91 here.
    threshold = 0.99
    skipped = run_pipeline({**SMOKE, "epochs": 1, "threshold": threshold}, tmp_path)
    assert skipped.tasks() == ["evaluate", "load-data", "train"]
    assert not skipped.ran("deploy")
    accuracy = skipped.parameters("evaluate")["Output"]
    # It trained a real model, far above chance (0.10), and the gate held it back for being
    # below the threshold, not for failing.
    assert CASE_TOML.floor("test_accuracy", "one_epoch") <= accuracy < threshold, accuracy
    assert skipped.metadata("train", "metrics")["test_accuracy"] == pytest.approx(accuracy)


def test_the_committed_inference_service_asks_for_standard_mode() -> None:
    committed = manifests.load(CASE / "manifests" / "inferenceservice.yaml")[0]
    assert committed["metadata"].get("annotations", {}).get(MODE) == "Standard"


def test_the_default_image_is_the_one_the_kustomization_names() -> None:
    assert cases.load_case(CASE).image == pipeline.DEFAULT_IMAGE
    kustomization = yaml.safe_load((CASE / "manifests" / "kustomization.yaml").read_text())
    name, _, tag = pipeline.DEFAULT_IMAGE.rpartition(":")
    assert {"name": name, "newTag": tag} in kustomization["images"]
    # The committed YAML is compiled with the default: a test run with MNIST_IMAGE set would
    # compare another image against it.
    assert pipeline.IMAGE == pipeline.DEFAULT_IMAGE, f"unset {pipeline.IMAGE_VARIABLE} to test"


def test_committed_yaml_is_in_step_with_pipeline_py() -> None:
    assert find_pipeline(pipeline) is pipeline.mnist_pipeline
    assert compiled_drift(pipeline.mnist_pipeline, pipeline.COMPILED) is None


def test_the_cli_compiles_what_is_committed(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "pipeline.yaml"
    pipeline.main(["--output", str(out)])
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(pipeline.COMPILED.read_text())


def test_every_component_uses_the_case_image_and_installs_nothing() -> None:
    spec = yaml.safe_load(pipeline.COMPILED.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert sorted(executors) == [f"exec-{step}" for step in STEPS]
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == pipeline.IMAGE, name
        command = " ".join(container["command"] + container.get("args", []))
        assert "pip install" not in command, f"{name} installs packages at run time"
        assert "from __future__ import annotations" not in command, name


def test_compiling_with_another_image_puts_it_in_every_step(tmp_path: Path) -> None:
    image = "registry.example.com/team/mnist:1.2.3"
    out = tmp_path / "pipeline.yaml"
    pipeline.main(["--image", image, "--output", str(out)])
    spec = yaml.safe_load(out.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert sorted(executors) == [f"exec-{step}" for step in STEPS]
    assert {name: e["container"]["image"] for name, e in executors.items()} == {
        name: image for name in executors
    }
    # ... and the deploy step serves it unless a run says otherwise.
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["serving_image"]["defaultValue"] == image
    assert pipeline.DEFAULT_IMAGE not in out.read_text()


def test_the_serving_image_is_a_run_parameter() -> None:
    spec = yaml.safe_load(pipeline.COMPILED.read_text())
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["serving_image"]["defaultValue"] == pipeline.IMAGE
    gate = spec["components"]["comp-condition-1"]["dag"]["tasks"]["deploy"]
    assert gate["inputs"]["parameters"]["serving_image"] == {
        "componentInputParameter": "pipelinechannel--serving_image"
    }


def test_an_empty_image_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        pipeline.main(["--image", " ", "--output", "unused.yaml"])
    assert exit_.value.code == 2
    assert "--image needs an image name" in capsys.readouterr().err


def test_deploy_is_gated_on_the_threshold_and_never_cached() -> None:
    spec = yaml.safe_load(pipeline.COMPILED.read_text())
    gate = spec["root"]["dag"]["tasks"]["condition-1"]
    assert gate["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--evaluate-Output'] >= "
        "inputs.parameter_values['pipelinechannel--threshold']"
    )
    inside = spec["components"][gate["componentRef"]["name"]]["dag"]["tasks"]
    assert list(inside) == ["deploy"]
    assert inside["deploy"]["cachingOptions"] == {}  # KFP writes enableCache only when true


class FakeCustomObjects:
    """The CustomObjectsApi calls the deploy step makes, on a dict of stored objects."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.status_on_create: int | None = None

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == ("serving.kserve.io", "v1beta1", "inferenceservices")
        key = f"{namespace}/{body['metadata']['name']}"
        if self.status_on_create:
            raise ApiException(status=self.status_on_create, reason="Forbidden")
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        self.objects[key] = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        return self.objects[f"{namespace}/{name}"]

    def replace_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        current = self.objects[f"{namespace}/{name}"]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        now = str(int(current["metadata"]["resourceVersion"]) + 1)
        self.objects[f"{namespace}/{name}"] = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": now},
        }


@pytest.fixture
def api_server(monkeypatch: pytest.MonkeyPatch) -> FakeCustomObjects:
    """What the deploy step sees in a pod, with a fake in place of the API server."""
    api = FakeCustomObjects()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", lambda: api)
    return api


def deploy_in_cluster(model_uri: str, out: Path) -> dict:
    """Call the deploy component's function as its pod would; return what it rendered."""
    rendered = dsl.Artifact(name="inference_service", uri=str(out))
    pipeline.deploy.python_func(
        model=dsl.Model(name="model", uri=model_uri),
        accuracy=0.98,
        service_name="mnist",
        namespace="team-a",
        serving_account="mnist-serving",
        serving_image=pipeline.IMAGE,
        inference_service=rendered,
    )
    assert rendered.metadata["namespace"] == "team-a"
    return yaml.safe_load(out.read_text())


def test_deploy_creates_the_inference_service_then_replaces_it(api_server, tmp_path) -> None:
    artifacts = "minio://mlpipeline/v2/artifacts/mnist"
    deploy_in_cluster(f"{artifacts}/run-1/train/model", tmp_path / "first.yaml")
    second = deploy_in_cluster(f"{artifacts}/run-2/train/model", tmp_path / "second.yaml")

    stored = api_server.objects["team-a/mnist"]
    assert stored["metadata"]["resourceVersion"] == "2"  # created once, then replaced
    assert stored["spec"] == second["spec"]
    assert manifests.validate(second) == []
    assert stored["metadata"]["annotations"] == {MODE: "Standard"}
    # KFP's minio:// artifacts (in SeaweedFS since KFP 2.15) reach KServe's storage initializer
    # over S3.
    env = stored["spec"]["predictor"]["containers"][0]["env"]
    assert env == [
        {"name": "STORAGE_URI", "value": "s3://mlpipeline/v2/artifacts/mnist/run-2/train/model"}
    ]


def test_deploy_fails_when_its_service_account_may_not_create(api_server, tmp_path) -> None:
    api_server.status_on_create = 403
    with pytest.raises(ApiException) as error:
        deploy_in_cluster("s3://bucket/model", tmp_path / "isvc.yaml")
    assert error.value.status == 403
    assert api_server.objects == {}

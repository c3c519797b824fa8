"""Tests of tests.harness.manifests: every valid fixture passes, and every rule can fail.

Negative cases mutate a loaded valid fixture (through apply_overrides, which may add a new last
key) rather than keeping near-copies of YAML files.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.harness import manifests
from tests.harness.manifests import ManifestError, apply_overrides, check, load, validate

FIXTURES = Path(__file__).parent / "fixtures" / "manifests"
FIXTURE_FILES = sorted(FIXTURES.glob("*.yaml"))

TF_CHIEF = "spec.tfReplicaSpecs.Chief.template.spec"
TF_WORKER = "spec.tfReplicaSpecs.Worker.template.spec"
TRIAL = "spec.trialTemplate.trialSpec"
TRIAL_CHIEF = f"{TRIAL}.spec.tfReplicaSpecs.Chief.template.spec"


def fixture(name: str, kind: str | None = None) -> dict:
    """The first document of fixtures/manifests/<name>.yaml, or the first of the given kind."""
    docs = load(FIXTURES / f"{name}.yaml")
    return next(doc for doc in docs if kind is None or doc["kind"] == kind)


def without(doc: dict, *keys: str | int) -> dict:
    """A copy of doc with the value at keys removed."""
    result = copy.deepcopy(doc)
    parent: Any = result
    for key in keys[:-1]:
        parent = parent[key]
    del parent[keys[-1]]
    return result


# --- valid manifests --------------------------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_valid_fixture_has_no_error(path: Path) -> None:
    assert manifests.validate_file(path) == []


def test_every_supported_kind_has_a_valid_fixture() -> None:
    kinds = {doc["kind"] for path in FIXTURE_FILES for doc in load(path)}
    assert kinds == set(manifests.SUPPORTED_KINDS)


def test_supported_kinds_name_the_current_api_versions() -> None:
    expected = {
        "TFJob": "kubeflow.org/v1",
        "PyTorchJob": "kubeflow.org/v1",
        "XGBoostJob": "kubeflow.org/v1",
        "TrainJob": "trainer.kubeflow.org/v1alpha1",
        "TrainingRuntime": "trainer.kubeflow.org/v1alpha1",
        "ClusterTrainingRuntime": "trainer.kubeflow.org/v1alpha1",
        "Experiment": "kubeflow.org/v1beta1",
        "InferenceService": "serving.kserve.io/v1beta1",
        "SeldonDeployment": "machinelearning.seldon.io/v1",
        "SparkApplication": "sparkoperator.k8s.io/v1beta2",
        "Deployment": "apps/v1",
        "Job": "batch/v1",
        "Secret": "v1",
        "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
        "Kustomization": "kustomize.config.k8s.io/v1beta1",
    }
    assert expected.items() <= manifests.SUPPORTED_KINDS.items()


def test_run_policy_may_be_omitted() -> None:
    # The SDK's client-side validation wants runPolicy; the CRD and the operator do not.
    assert validate(without(fixture("tfjob"), "spec", "runPolicy")) == []


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        # quantities and IntOrString fields accept both spellings
        ("tfjob", {f"{TF_WORKER}.containers[0].resources.limits.cpu": 1.5}),
        ("tfjob", {f"{TF_WORKER}.containers[0].resources.limits.cpu": "1500m"}),
        ("tfjob", {f"{TF_WORKER}.containers[0].readinessProbe.tcpSocket.port": 2222}),
        ("trainjob", {"spec.trainer.resourcesPerNode.limits.memory": 4294967296}),
        ("experiment", {"spec.objective.goal": 1}),
        ("tfjob", {"metadata.creationTimestamp": None}),
    ],
)
def test_accepted_variants(name: str, overrides: dict) -> None:
    assert validate(apply_overrides(fixture(name), overrides)) == []


# --- every rule can fail ----------------------------------------------------------------------

UNKNOWN_FIELDS = [
    (
        "tfjob",
        f"{TF_WORKER}.containers[0].commnd",
        f"{TF_WORKER}.containers[0].commnd: unknown field (did you mean 'command'?)",
    ),
    (
        "tfjob",
        f"{TF_CHIEF}.containers[0].env[0].valu",
        f"{TF_CHIEF}.containers[0].env[0].valu: unknown field (did you mean 'value'?)",
    ),
    (
        "tfjob",
        f"{TF_CHIEF}.volumes[0].persistentVolumeClaim.claim",
        f"{TF_CHIEF}.volumes[0].persistentVolumeClaim.claim: unknown field (did you mean 'claimName'?)",
    ),
    ("tfjob", "metadata.label", "metadata.label: unknown field (did you mean 'labels'?)"),
    (
        "tfjob",
        "spec.runPolicy.backofLimit",
        "spec.runPolicy.backofLimit: unknown field (did you mean 'backoffLimit'?)",
    ),
    (
        "pytorchjob",
        "spec.pytorchReplicaSpecs.Master.template.spec.containers[0].resources.limit",
        "spec.pytorchReplicaSpecs.Master.template.spec.containers[0].resources.limit: "
        "unknown field (did you mean 'limits'?)",
    ),
    (
        "xgboostjob",
        "spec.xgbReplicaSpecs.Worker.template.spec.containers[0].securityContext.runAsNonroot",
        "spec.xgbReplicaSpecs.Worker.template.spec.containers[0].securityContext.runAsNonroot: "
        "unknown field (did you mean 'runAsNonRoot'?)",
    ),
    (
        "experiment",
        f"{TRIAL_CHIEF}.containers[0].imag",
        f"{TRIAL_CHIEF}.containers[0].imag: unknown field (did you mean 'image'?)",
    ),
    (
        "experiment",
        "spec.metricsCollectorSpec.collector.kinds",
        "spec.metricsCollectorSpec.collector.kinds: unknown field (did you mean 'kind'?)",
    ),
    (
        "trainjob",
        "spec.trainer.numNode",
        "spec.trainer.numNode: unknown field (did you mean 'numNodes'?)",
    ),
    (
        "inferenceservice",
        "spec.predictor.minReplica",
        "spec.predictor.minReplica: unknown field (did you mean 'minReplicas'?)",
    ),
    (
        "seldondeployment",
        "spec.predictors[0].graph.modelUrl",
        "spec.predictors[0].graph.modelUrl: unknown field (did you mean 'modelUri'?)",
    ),
    (
        "seldondeployment",
        "spec.predictors[0].componentSpecs[0].spec.containers[0].imagePullPolicyy",
        "spec.predictors[0].componentSpecs[0].spec.containers[0].imagePullPolicyy: "
        "unknown field (did you mean 'imagePullPolicy'?)",
    ),
    (
        "sparkapplication",
        "spec.driver.coreLimits",
        "spec.driver.coreLimits: unknown field (did you mean 'coreLimit'?)",
    ),
    (
        "sparkapplication",
        "spec.restartPolicy.onFailureRetry",
        "spec.restartPolicy.onFailureRetry: unknown field (did you mean 'onFailureRetries'?)",
    ),
    (
        "kustomization",
        "images[0].newtag",
        "images[0].newtag: unknown field (did you mean 'newTag'?)",
    ),
    ("kustomization", "resource", "resource: unknown field (did you mean 'resources'?)"),
]


@pytest.mark.parametrize(("name", "path", "expected"), UNKNOWN_FIELDS, ids=lambda v: str(v))
def test_misspelled_field_is_reported_at_its_path(name: str, path: str, expected: str) -> None:
    errors = validate(apply_overrides(fixture(name), {path: "x"}))
    assert errors == [expected]


def test_unknown_field_in_a_core_kind() -> None:
    doc = apply_overrides(
        fixture("core", "Deployment"), {"spec.template.spec.containers[0].volumeMount": []}
    )
    assert validate(doc) == [
        "spec.template.spec.containers[0].volumeMount: unknown field (did you mean 'volumeMounts'?)"
    ]


BAD_VALUES = [
    (
        "tfjob",
        "spec.tfReplicaSpecs.Worker.restartPolicy",
        "Sometimes",
        "spec.tfReplicaSpecs.Worker.restartPolicy: "
        "must be one of [Always, OnFailure, Never, ExitCode], got 'Sometimes'",
    ),
    (
        "tfjob",
        f"{TF_WORKER}.restartPolicy",
        "ExitCode",
        f"{TF_WORKER}.restartPolicy: must be one of [Always, OnFailure, Never], got 'ExitCode'",
    ),
    (
        "experiment",
        "spec.parameters[0].parameterType",
        "float",
        "spec.parameters[0].parameterType: "
        "must be one of [double, int, discrete, categorical], got 'float'",
    ),
    (
        "experiment",
        "spec.algorithm.algorithmName",
        "bayesian",
        "spec.algorithm.algorithmName: must be one of [random, grid, tpe, multivariate-tpe, "
        "cmaes, sobol, bayesianoptimization, hyperband, enas, darts, pbt], got 'bayesian'",
    ),
    (
        "experiment",
        "spec.objective.type",
        "max",
        "spec.objective.type: must be one of [maximize, minimize], got 'max'",
    ),
    (
        "experiment",
        "spec.metricsCollectorSpec.collector.kind",
        "Stdout",
        "spec.metricsCollectorSpec.collector.kind: must be one of "
        "[StdOut, File, TensorFlowEvent, PrometheusMetric, Custom, None], got 'Stdout'",
    ),
    (
        "experiment",
        f"{TRIAL}.spec.tfReplicaSpecs.Chief.restartPolicy",
        "Sometimes",
        f"{TRIAL}.spec.tfReplicaSpecs.Chief.restartPolicy: "
        "must be one of [Always, OnFailure, Never, ExitCode], got 'Sometimes'",
    ),
    (
        "seldondeployment",
        "spec.protocol",
        "v3",
        "spec.protocol: must be one of [seldon, tensorflow, kfserving, v2], got 'v3'",
    ),
    (
        "sparkapplication",
        "spec.type",
        "Pyton",
        "spec.type: must be one of [Java, Python, Scala, R], got 'Pyton'",
    ),
    (
        "sparkapplication",
        "spec.restartPolicy.type",
        "Sometimes",
        "spec.restartPolicy.type: must be one of [Never, OnFailure, Always], got 'Sometimes'",
    ),
    # wrong types
    (
        "tfjob",
        "spec.tfReplicaSpecs.Worker.replicas",
        "2",
        "spec.tfReplicaSpecs.Worker.replicas: expected int, got string",
    ),
    (
        "tfjob",
        "spec.tfReplicaSpecs.Worker.replicas",
        True,
        "spec.tfReplicaSpecs.Worker.replicas: expected int, got bool",
    ),
    (
        "tfjob",
        f"{TF_WORKER}.containers[0].args",
        "--epochs=3",
        f"{TF_WORKER}.containers[0].args: expected list, got string",
    ),
    (
        "tfjob",
        f"{TF_WORKER}.containers",
        {"name": "tensorflow"},
        f"{TF_WORKER}.containers: expected list, got object",
    ),
    (
        "tfjob",
        "metadata.labels.version",
        1,
        "metadata.labels.version: expected string, got int",
    ),
    (
        "tfjob",
        f"{TF_CHIEF}.securityContext.runAsNonRoot",
        "yes",
        f"{TF_CHIEF}.securityContext.runAsNonRoot: expected bool, got string",
    ),
    (
        "tfjob",
        f"{TF_WORKER}.containers[0].resources.limits.cpu",
        [1],
        f"{TF_WORKER}.containers[0].resources.limits.cpu: "
        "expected quantity (string or number), got list",
    ),
    ("trainjob", "spec.trainer.numNodes", "2", "spec.trainer.numNodes: expected int, got string"),
    ("experiment", "spec.maxTrialCount", "12", "spec.maxTrialCount: expected int, got string"),
    (
        "experiment",
        "spec.parameters[0].feasibleSpace.min",
        0.0001,
        "spec.parameters[0].feasibleSpace.min: expected string, got number",
    ),
    (
        "inferenceservice",
        "spec.predictor.minReplicas",
        "1",
        "spec.predictor.minReplicas: expected int, got string",
    ),
    (
        "seldondeployment",
        "spec.predictors[0].graph.children",
        {"name": "x"},
        "spec.predictors[0].graph.children: expected list, got object",
    ),
    (
        "sparkapplication",
        "spec.executor.instances",
        "2",
        "spec.executor.instances: expected int, got string",
    ),
    (
        "kustomization",
        "resources",
        "tfjob.yaml",
        "resources: expected list, got string",
    ),
]


@pytest.mark.parametrize(("name", "path", "value", "expected"), BAD_VALUES, ids=lambda v: str(v))
def test_bad_value_is_reported_at_its_path(name: str, path: str, value: Any, expected: str) -> None:
    assert validate(apply_overrides(fixture(name), {path: value})) == [expected]


def test_unknown_replica_type() -> None:
    doc = fixture("tfjob")
    doc["spec"]["tfReplicaSpecs"]["Chef"] = doc["spec"]["tfReplicaSpecs"].pop("Chief")
    assert validate(doc) == [
        "spec.tfReplicaSpecs.Chef: key must be one of [Chief, Master, Worker, PS, Evaluator] "
        "(did you mean 'Chief'?)"
    ]


def test_pytorchjob_has_no_chief() -> None:
    doc = fixture("pytorchjob")
    doc["spec"]["pytorchReplicaSpecs"]["Chief"] = doc["spec"]["pytorchReplicaSpecs"].pop("Master")
    assert validate(doc) == ["spec.pytorchReplicaSpecs.Chief: key must be one of [Master, Worker]"]


@pytest.mark.parametrize(
    ("name", "keys", "expected"),
    [
        ("tfjob", ("spec", "tfReplicaSpecs"), "spec.tfReplicaSpecs: missing required field"),
        (
            "tfjob",
            ("spec", "tfReplicaSpecs", "Worker", "template", "spec", "containers", 0, "name"),
            f"{TF_WORKER}.containers[0].name: missing required field",
        ),
        ("tfjob", ("metadata", "name"), "metadata.name: missing required field"),
        ("tfjob", ("spec",), "spec: missing required field"),
        ("tfjob", ("apiVersion",), "apiVersion: missing required field"),
        ("trainjob", ("spec", "runtimeRef"), "spec.runtimeRef: missing required field"),
        (
            "experiment",
            ("spec", "objective", "type"),
            "spec.objective.type: missing required field",
        ),
        ("inferenceservice", ("spec", "predictor"), "spec.predictor: missing required field"),
        (
            "seldondeployment",
            ("spec", "predictors", 0, "graph"),
            "spec.predictors[0].graph: missing required field",
        ),
        ("sparkapplication", ("spec", "sparkVersion"), "spec.sparkVersion: missing required field"),
    ],
)
def test_missing_required_field(name: str, keys: tuple, expected: str) -> None:
    assert expected in validate(without(fixture(name), *keys))


def test_wrong_api_version() -> None:
    doc = apply_overrides(fixture("tfjob"), {"apiVersion": "kubeflow.org/v1beta2"})
    assert validate(doc) == [
        "apiVersion: TFJob expects apiVersion 'kubeflow.org/v1', got 'kubeflow.org/v1beta2'"
    ]


def test_unknown_kind_names_the_supported_kinds() -> None:
    (error,) = validate(apply_overrides(fixture("tfjob"), {"kind": "TfJob"}))
    assert error.startswith("kind: unknown kind 'TfJob' (did you mean 'TFJob'?); supported kinds: ")
    assert all(kind in error for kind in manifests.SUPPORTED_KINDS)


def test_trial_spec_is_validated_as_the_kind_it_names() -> None:
    doc = apply_overrides(fixture("experiment"), {f"{TRIAL}.apiVersion": "kubeflow.org/v1beta1"})
    assert validate(doc) == [
        f"{TRIAL}.apiVersion: TFJob expects apiVersion 'kubeflow.org/v1', got 'kubeflow.org/v1beta1'"
    ]
    doc = apply_overrides(fixture("experiment"), {f"{TRIAL}.kind": "TFjob"})
    assert validate(doc)[0].startswith(
        f"{TRIAL}.kind: unknown kind 'TFjob' (did you mean 'TFJob'?)"
    )


def test_undeclared_trial_parameter_placeholder() -> None:
    path = f"{TRIAL_CHIEF}.containers[0].args[0]"
    doc = apply_overrides(fixture("experiment"), {path: "--learning-rate=${trialParameters.lr}"})
    assert validate(doc) == [
        f"{path}: ${{trialParameters.lr}} is not declared in spec.trialTemplate.trialParameters"
    ]


def test_declared_trial_parameter_must_be_used() -> None:
    doc = fixture("experiment")
    doc["spec"]["trialTemplate"]["trialParameters"].append({"name": "momentum", "reference": "lr"})
    assert validate(doc) == [
        "spec.trialTemplate.trialParameters[2].name: "
        "'momentum' is declared but trialSpec never uses ${trialParameters.momentum}"
    ]


def test_trial_parameter_reference_must_name_a_parameter() -> None:
    path = "spec.trialTemplate.trialParameters[0].reference"
    doc = apply_overrides(fixture("experiment"), {path: "learning_rate"})
    assert validate(doc) == [f"{path}: 'learning_rate' is not a parameter in spec.parameters"]
    # Trial metadata is a valid reference too.
    assert validate(apply_overrides(doc, {path: "${trialSpec.Name}"})) == []


def test_all_errors_are_reported() -> None:
    doc = apply_overrides(
        fixture("tfjob"),
        {
            f"{TF_WORKER}.containers[0].commnd": [],
            "spec.tfReplicaSpecs.Worker.replicas": "2",
            "spec.runPolicy.cleanPodPolicy": "Always",
        },
    )
    assert len(validate(doc)) == 3


# --- check, files, loading --------------------------------------------------------------------


def test_check_raises_with_one_error_per_line() -> None:
    doc = apply_overrides(
        fixture("tfjob"),
        {f"{TF_WORKER}.containers[0].commnd": [], "spec.tfReplicaSpecs.Worker.replicas": "2"},
    )
    with pytest.raises(ManifestError) as raised:
        check(doc)
    assert str(raised.value).splitlines() == validate(doc)
    assert raised.value.errors == validate(doc)
    assert isinstance(raised.value, ValueError)
    check(fixture("tfjob"))


def test_validate_file_prefixes_file_index_kind_and_name(tmp_path: Path) -> None:
    text = (FIXTURES / "tfjob.yaml").read_text()
    path = tmp_path / "two.yaml"
    path.write_text(
        "---\n" + text + "\n---\n" + text.replace("commnd", "x").replace("command:", "commnd:")
    )
    errors = manifests.validate_file(path)
    assert errors
    assert all(
        error.startswith(f"{path}[1] TFJob/mnist-tf: spec.tfReplicaSpecs.") for error in errors
    )
    assert any("commnd: unknown field (did you mean 'command'?)" in error for error in errors)


def test_load_skips_empty_documents_and_rejects_non_mappings(tmp_path: Path) -> None:
    path = tmp_path / "docs.yaml"
    path.write_text("---\n---\na: 1\n---\n# only a comment\n---\nb: 2\n")
    assert load(path) == [{"a": 1}, {"b": 2}]
    path.write_text("a: 1\n---\n- not a mapping\n")
    with pytest.raises(ManifestError, match=r"docs.yaml\[1\]: expected a mapping, got list"):
        load(path)
    path.write_text("a: [1\n")
    with pytest.raises(ManifestError, match="invalid YAML"):
        load(path)


# --- apply_overrides --------------------------------------------------------------------------


def test_apply_overrides_sets_nested_values_in_a_copy() -> None:
    doc = fixture("experiment")
    original = copy.deepcopy(doc)
    args = ["--epochs=1", "--sample"]
    result = apply_overrides(
        doc,
        {
            "spec.maxTrialCount": 3,
            "spec.trialTemplate.trialSpec.spec.tfReplicaSpecs.Worker.replicas": 1,
            f"{TRIAL_CHIEF}.containers[0].args": args,
        },
    )
    assert doc == original
    assert result["spec"]["maxTrialCount"] == 3
    replicas = result["spec"]["trialTemplate"]["trialSpec"]["spec"]["tfReplicaSpecs"]
    assert replicas["Worker"]["replicas"] == 1
    assert replicas["Chief"]["template"]["spec"]["containers"][0]["args"] == args
    args.append("--mutated")  # the result holds its own copy
    assert replicas["Chief"]["template"]["spec"]["containers"][0]["args"] == args[:2]


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("spec.tfReplicaSpecs.Wroker.replicas", "spec.tfReplicaSpecs.Wroker"),
        ("spec.tfReplicaSpecs.Worker.template.spec.containers[3].args", "containers[3]"),
        ("spec.runPolicy.backoffLimit.value", "spec.runPolicy.backoffLimit.value"),
        ("spec.tfReplicaSpecs[0]", "spec.tfReplicaSpecs[0]"),
        ("spec..replicas", "not a dotted path"),
    ],
)
def test_apply_overrides_rejects_a_path_whose_parent_does_not_exist(path: str, names: str) -> None:
    with pytest.raises(KeyError) as raised:
        apply_overrides(fixture("tfjob"), {path: 1})
    assert path in str(raised.value)
    assert names in str(raised.value)


def test_containers_are_found_anywhere_with_their_paths() -> None:
    doc = {
        "spec": {
            "predictor": {"containers": [{"name": "a", "image": "x/a:1"}]},
            "trialTemplate": {"trialSpec": {"template": {"containers": [{"image": "x/b:2"}]}}},
            "image": 3,  # not a string: not a container
        }
    }
    found = list(manifests.containers(doc))
    assert [(path, c["image"]) for path, c in found] == [
        (".spec.predictor.containers[0]", "x/a:1"),
        (".spec.trialTemplate.trialSpec.template.containers[0]", "x/b:2"),
    ]
    assert list(manifests.find(doc, lambda d: d.get("name") == "a")) == [found[0]]

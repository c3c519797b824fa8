"""The house rules find what DESIGN.md forbids in every kind of workload the cases use."""

from __future__ import annotations

import copy

import yaml

from tests.harness import houserules, trainer

IMAGE = "example.org/case:1.0"
SECURE = {"runAsNonRoot": True, "allowPrivilegeEscalation": False}
SIZED = {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}


def trainjob(patched: dict | None = None) -> dict:
    node = {"name": "node", **({"securityContext": patched} if patched else {})}
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "t"},
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {"image": IMAGE, "command": ["x"], "resourcesPerNode": SIZED},
            "runtimePatches": [{"manager": "m", "trainingRuntimeSpec": {"containers": [node]}}],
        },
    }


def test_a_trainjob_is_secured_by_its_patches_or_its_runtime() -> None:
    assert houserules.check(trainjob(SECURE), IMAGE) == []
    problems = houserules.check(trainjob(), IMAGE)
    assert any("runAsNonRoot" in p for p in problems) and any("Escalation" in p for p in problems)
    # A runtime whose node container is secured covers a TrainJob that patches nothing.
    runtime = copy.deepcopy(trainer.STOCK_RUNTIMES["torch-distributed"])
    node = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]
    node["template"]["spec"]["containers"][0]["securityContext"] = SECURE
    assert houserules.check(trainjob(), IMAGE, [runtime]) == []
    unsized = trainjob(SECURE)
    del unsized["spec"]["trainer"]["resourcesPerNode"]["limits"]
    assert houserules.check(unsized, IMAGE) == ["spec.trainer: needs resourcesPerNode.limits"]


def test_a_spark_application_needs_sizes_and_security_per_role() -> None:
    role = {"cores": 1, "coreLimit": "1", "memory": "1g", "securityContext": SECURE}
    app = {
        "kind": "SparkApplication",
        "spec": {"image": IMAGE, "driver": role, "executor": dict(role)},
    }
    assert houserules.check(app, IMAGE) == []
    del app["spec"]["executor"]["memory"]
    app["spec"]["image"] = "other:1"
    problems = houserules.check(app, IMAGE)
    assert "spec.executor: needs executor.memory" in problems
    assert any("image other:1, not the case's" in p for p in problems)


def test_pod_level_non_root_counts_and_literal_credentials_are_found() -> None:
    isvc = yaml.safe_load(
        f"""
kind: InferenceService
metadata: {{name: s}}
spec:
  predictor:
    securityContext: {{runAsNonRoot: true}}
    containers:
      - name: kserve-container
        image: {IMAGE}
        resources: {{requests: {{cpu: 1}}, limits: {{cpu: 1}}}}
        securityContext: {{allowPrivilegeEscalation: false}}
        env:
          - {{name: MODEL_NAME, value: s}}
          - {{name: HF_TOKEN, valueFrom: {{secretKeyRef: {{name: hf, key: token}}}}}}
"""
    )
    assert houserules.check(isvc, IMAGE) == []
    isvc["spec"]["predictor"]["containers"][0]["env"].append({"name": "DB_PASSWORD", "value": "x"})
    assert houserules.check(isvc, IMAGE) == [
        "spec.predictor.containers[0].env[2]: env DB_PASSWORD holds a literal value; "
        "take it from a Secret (valueFrom)"
    ]
    secret = {"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}
    assert houserules.check(secret, IMAGE) == [
        "stringData.password: a literal credential; keep it in a Secret, out of the repository"
    ]


def test_a_model_on_a_serving_runtime_counts_as_a_container() -> None:
    isvc = yaml.safe_load(
        """
kind: InferenceService
metadata: {name: s}
spec:
  predictor:
    model:
      modelFormat: {name: tensorflow}
      storageUri: pvc://models/savedmodel
      resources: {requests: {cpu: 1}, limits: {cpu: 1}}
      securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false}
"""
    )
    assert houserules.check(isvc, IMAGE) == []  # the runtime's image is KServe's, not the case's
    model = isvc["spec"]["predictor"]["model"]
    del model["resources"]["limits"], model["securityContext"]["runAsNonRoot"]
    assert houserules.check(isvc, IMAGE) == [
        "spec.predictor.model: set securityContext.runAsNonRoot: true",
        "spec.predictor.model: needs resources.limits",
    ]
    isvc["spec"]["predictor"]["securityContext"] = {"runAsNonRoot": True}  # the pod's counts
    assert houserules.check(isvc, IMAGE) == ["spec.predictor.model: needs resources.limits"]

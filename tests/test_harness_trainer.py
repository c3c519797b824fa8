"""Kubeflow Trainer v2 runtimes in the harness: stock and repository-defined, env and failures."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from tests.harness import manifests, trainer
from tests.harness.jobs import run_job

REPLICA = ["python", "-m", "tests.fixtures.jobs.replica"]
SHARED = "/mnt/shared"


def trainjob(runtime: str, num_nodes: int, kind: str = "ClusterTrainingRuntime", **fields) -> dict:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "demo"},
        "spec": {
            "runtimeRef": {"name": runtime, "kind": kind, "apiGroup": "trainer.kubeflow.org"},
            "trainer": {"numNodes": num_nodes, **fields},
            "runtimePatches": [
                {
                    "manager": "test",
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": "node",
                                        "template": {
                                            "spec": {
                                                "template": {
                                                    "spec": {
                                                        "containers": [
                                                            {
                                                                "name": "node",
                                                                "volumeMounts": [
                                                                    {
                                                                        "name": "shared",
                                                                        "mountPath": SHARED,
                                                                    }
                                                                ],
                                                            }
                                                        ]
                                                    }
                                                }
                                            }
                                        },
                                    }
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


# A runtime of one's own with no framework policy: the container's shell derives what the node
# needs from the downward API and the env the harness fills in, then runs the TrainJob's args.
PLAIN_RUNTIME = yaml.safe_load(
    """
apiVersion: trainer.kubeflow.org/v1alpha1
kind: TrainingRuntime
metadata:
  name: plain
spec:
  mlPolicy:
    numNodes: 1
  template:
    spec:
      replicatedJobs:
        - name: node
          template:
            metadata:
              labels:
                trainer.kubeflow.org/trainjob-ancestor-step: trainer
            spec:
              template:
                spec:
                  containers:
                    - name: node
                      image: example.org/plain:1
                      command: [/bin/sh, -c, 'export NODE_FROM_SHELL="$POD_JOBSET-$JOB_COMPLETION_INDEX"; exec "$@"', plain]
                      env:
                        - name: POD_JOBSET
                          valueFrom:
                            fieldRef:
                              fieldPath: metadata.labels['jobset.sigs.k8s.io/jobset-name']
                        - name: POD_INDEX
                          valueFrom:
                            fieldRef:
                              fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']
                        - name: NODE_ADDRESSES
                          value: ""
"""
)


def dumps(tmp_path: Path) -> dict[str, dict]:
    folder = tmp_path / "volumes" / "shared" / "env"
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def test_stock_xgboost_runtime_sets_the_dmlc_env(tmp_path: Path) -> None:
    doc = trainjob(
        "xgboost-distributed",
        3,
        command=REPLICA,
        args=["--dump", f"{SHARED}/env", "--wait-dumps", "3"],
    )
    run_job(doc, workdir=tmp_path, timeout=60).raise_for_failure()
    envs = dumps(tmp_path)
    assert sorted(envs) == ["rank-0", "rank-1", "rank-2"]
    ports = {env["DMLC_TRACKER_PORT"] for env in envs.values()}
    assert len(ports) == 1 and int(ports.pop()) > 0  # node 0's port, where rank 0 runs the tracker
    for name, env in envs.items():
        index = name.split("-")[1]
        assert env["DMLC_TASK_ID"] == env["JOB_COMPLETION_INDEX"] == index
        assert env["DMLC_TRACKER_URI"] == "127.0.0.1" and env["DMLC_NUM_WORKER"] == "3"
        assert not any(k.startswith("PET_") for k in env)  # no torch plugin on this runtime


def test_runtime_of_ones_own_keeps_its_command_and_gets_pod_fields(tmp_path: Path) -> None:
    # The TrainJob sets only args: the runtime's command (a shell) stays, as jobset/builder.go does.
    doc = trainjob("plain", 2, kind="TrainingRuntime", args=[*REPLICA, "--dump", f"{SHARED}/env"])
    doc["spec"]["trainer"]["env"] = [{"name": "FIXTURE_FROM_TRAINJOB", "value": "yes"}]
    result = run_job(doc, workdir=tmp_path, timeout=60, runtimes=[PLAIN_RUNTIME])
    result.raise_for_failure()
    assert result.reason == "Complete"
    envs = dumps(tmp_path)
    assert sorted(envs) == ["rank-0", "rank-1"]  # the fixture names itself by the index
    addresses = {env["NODE_ADDRESSES"] for env in envs.values()}
    assert len(addresses) == 1
    hosts = addresses.pop().split(",")
    assert (
        len(hosts) == 2 and len(set(hosts)) == 2 and all(h.startswith("127.0.0.1:") for h in hosts)
    )
    by_index = {env["JOB_COMPLETION_INDEX"]: env for env in envs.values()}
    for index, env in by_index.items():
        assert env["POD_JOBSET"] == "demo" and env["POD_INDEX"] == index
        assert env["NODE_FROM_SHELL"] == f"demo-{index}"
        assert env["FIXTURE_FROM_TRAINJOB"] == "yes"
        assert not any(k.startswith(("PET_", "DMLC_")) for k in env)  # PlainML adds nothing


def test_a_runtime_the_harness_does_not_know_is_an_error_naming_it(tmp_path: Path) -> None:
    doc = trainjob("plain", 2, kind="TrainingRuntime", args=REPLICA)
    with pytest.raises(ValueError, match=r"TrainingRuntime 'plain'.*torch-distributed"):
        run_job(doc, workdir=tmp_path, timeout=60)
    assert not (tmp_path / "logs").exists()  # nothing started
    # A ClusterTrainingRuntime of the same name is another object.
    with pytest.raises(ValueError, match="does not know"):
        trainer.resolve(trainjob("plain", 1), [PLAIN_RUNTIME])
    jax = copy.deepcopy(PLAIN_RUNTIME)
    jax["spec"]["mlPolicy"]["jax"] = {}
    with pytest.raises(ValueError, match="mlPolicy 'jax'"):
        trainer.framework(jax)


def test_runtime_failure_policy_restarts_the_gang(tmp_path: Path) -> None:
    args = [*REPLICA, "--marker", f"{SHARED}/attempted-{{index}}", "--first-exit", "0:0,1:143"]
    doc = trainjob("plain", 2, kind="TrainingRuntime", args=args)
    # JobSet's defaults (pod OnFailure, Job backoffLimit 6): node 1 restarts in place.
    result = run_job(doc, workdir=tmp_path / "defaults", timeout=60, runtimes=[PLAIN_RUNTIME])
    result.raise_for_failure()
    assert [r.restarts for r in result.replicas] == [0, 1]
    # Collective training restarts the gang: the Job fails at once and JobSet recreates it.
    gang = copy.deepcopy(PLAIN_RUNTIME)
    job = gang["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]
    job["backoffLimit"] = 0
    job["template"]["spec"]["restartPolicy"] = "Never"
    result = run_job(doc, workdir=tmp_path / "never", timeout=60, runtimes=[gang])
    assert not result.succeeded and result.reason == "Failed (FailedJobs)"
    gang["spec"]["template"]["spec"]["failurePolicy"] = {"maxRestarts": 1}
    result = run_job(doc, workdir=tmp_path / "gang", timeout=60, runtimes=[gang])
    result.raise_for_failure()
    assert [r.restarts for r in result.replicas] == [1, 1]


def test_runtimes_validate_strictly_and_are_found_beside_a_manifest(tmp_path: Path) -> None:
    assert manifests.validate(PLAIN_RUNTIME) == []
    for kind in trainer.RUNTIME_KINDS:
        broken = copy.deepcopy(PLAIN_RUNTIME)
        broken["kind"] = kind
        container = broken["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"][
            "template"
        ]["spec"]["containers"][0]
        container["comand"] = container.pop("command")
        broken["spec"]["mlPolicy"]["numNode"] = 2
        errors = manifests.validate(broken)
        assert (
            "spec.template.spec.replicatedJobs[0].template.spec.template.spec.containers[0]"
            ".comand: unknown field (did you mean 'command'?)"
        ) in errors
        assert any(e.startswith("spec.mlPolicy.numNode: unknown field") for e in errors)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "runtime.yaml").write_text(yaml.safe_dump(PLAIN_RUNTIME))
    (tmp_path / "manifests" / "legacy").mkdir()
    beside = tmp_path / "manifests" / "legacy" / "job.yaml"
    assert [r["metadata"]["name"] for r in trainer.runtimes_beside(beside)] == ["plain"]

"""income_census.train_distributed as a TrainJob and as the legacy XGBoostJob, on this machine.

The harness (tests.harness.jobs) runs manifests/trainjob.yaml as the `xgboost-distributed`
runtime would: two nodes with DMLC_TASK_ID, DMLC_NUM_WORKER, DMLC_TRACKER_URI and
DMLC_TRACKER_PORT. It runs manifests/legacy-v1/xgboostjob.yaml as the Training Operator would: a
Master and a Worker with MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK. Each manifest's own
command runs with case.toml's smoke arguments (the sample, 50 rounds), and each must train the
model one process trains on all the rows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from income_census import data
from income_census.train_distributed import (
    TRAINJOB_ENV,
    XGBOOSTJOB_ENV,
    Workers,
    tracker_listen_address,
    workers_from_env,
)
from tests.harness import cases, jobs, manifests, operators, trainer

REPO_ROOT = Path(__file__).resolve().parents[2]
CASE = cases.load_case(REPO_ROOT / "income_census")
TRAINJOB = CASE.path / "manifests" / "trainjob.yaml"
XGBOOSTJOB = CASE.path / "manifests" / "legacy-v1" / "xgboostjob.yaml"
CLOSE = 0.01  # the bar: two workers within 1 point of one process on the same data
JOB_TIMEOUT = 300  # seconds; only stops a hang
OPERATOR_ENV = (*TRAINJOB_ENV, *XGBOOSTJOB_ENV)


def smoke_args() -> list[str]:
    args = CASE.overrides_for(TRAINJOB)["spec.trainer.args"]
    return [a for a in args if not a.startswith(("--model-dir", "--checkpoint-dir"))]


def one_process(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    """train_distributed with no operator env: one worker that runs its own tracker."""
    env = {k: v for k, v in os.environ.items() if k not in OPERATOR_ENV}
    cmd = [sys.executable, "-m", "income_census.train_distributed", *smoke_args(), *extra]
    run = subprocess.run(
        [*cmd, f"--model-dir={tmp / 'model'}", f"--checkpoint-dir={tmp / 'checkpoints'}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def smoke_job(manifest: Path, workdir: Path) -> jobs.JobResult:
    doc = manifests.apply_overrides(manifests.load(manifest)[0], CASE.overrides_for(manifest))
    assert manifests.validate(doc) == []
    return jobs.run_job(doc, workdir=workdir, timeout=JOB_TIMEOUT)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model folder of one process on all the rows, with the smoke arguments."""
    tmp = tmp_path_factory.mktemp("one-process")
    one_process(tmp)
    return tmp / "model"


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> jobs.JobResult:
    return smoke_job(TRAINJOB, tmp_path_factory.mktemp("trainjob"))


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> jobs.JobResult:
    return smoke_job(XGBOOSTJOB, tmp_path_factory.mktemp("xgboostjob"))


def assert_same_model_as_one_process(volume: Path, single: Path) -> dict:
    """What rank 0 wrote under /mnt/pvc/income-xgboost is the one-process model."""
    written = sorted(p.name for p in (volume / "income-xgboost").iterdir())
    assert written == ["background.csv", "metrics.json", "model.joblib"]
    assert not list((volume / "checkpoints").rglob("*.ubj"))  # dropped once training is done
    metrics = json.loads((volume / "income-xgboost" / "metrics.json").read_text())
    assert metrics["workers"] == 2

    alone = json.loads((single / "metrics.json").read_text())
    assert alone["workers"] == 1
    # The XGBoost model of `train --model xgboost` (50 rounds at 0.3): its floors, well above the
    # 0.7775 of always answering <=50K.
    for name, floor in CASE.floors("xgboost").items():
        assert metrics[name] >= floor, metrics
    assert abs(metrics["test_accuracy"] - alone["test_accuracy"]) <= CLOSE, (metrics, alone)
    # The histogram sums over the shards are the sums over all rows: the very same trees.
    (_, _), (test_rows, _) = data.load_sample()
    two = joblib.load(volume / "income-xgboost" / "model.joblib").predict_proba(test_rows)
    one = joblib.load(single / "model.joblib").predict_proba(test_rows)
    np.testing.assert_allclose(two, one, atol=1e-6)
    print(f"two workers {metrics['test_accuracy']:.4f}, one {alone['test_accuracy']:.4f}")
    return metrics


# --- who am I: the two operators' environments ---------------------------------------------------

TRAINJOB_PODS = {  # what xgboost-distributed sets on node 1 of a TrainJob named income-xgboost
    "DMLC_TASK_ID": "1",
    "DMLC_NUM_WORKER": "2",
    "DMLC_TRACKER_URI": "income-xgboost-node-0-0.income-xgboost",
    "DMLC_TRACKER_PORT": "29500",
}
XGBOOSTJOB_PODS = {  # what the Training Operator sets on the Worker of an XGBoostJob
    "RANK": "1",
    "WORLD_SIZE": "2",
    "MASTER_ADDR": "income-xgboost-master-0",
    "MASTER_PORT": "9991",
}


def test_workers_from_the_trainjob_runtime_env() -> None:
    assert workers_from_env(TRAINJOB_PODS) == Workers(
        1, 2, "income-xgboost-node-0-0.income-xgboost", 29500
    )
    node0 = {**TRAINJOB_PODS, "DMLC_TASK_ID": "0", "PATH": "/usr/bin"}
    assert workers_from_env(node0).rank == 0


def test_workers_from_the_xgboostjob_operator_env() -> None:
    assert workers_from_env(XGBOOSTJOB_PODS) == Workers(1, 2, "income-xgboost-master-0", 9991)


def test_no_operator_env_is_one_worker_with_its_own_tracker() -> None:
    assert workers_from_env({"HOME": "/home/user"}) == Workers(0, 1, "127.0.0.1", 0)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({**TRAINJOB_PODS, "DMLC_TRACKER_PORT": ""}, ["DMLC_TRACKER_PORT not set"]),
        ({"DMLC_TASK_ID": "0"}, ["DMLC_NUM_WORKER, DMLC_TRACKER_URI, DMLC_TRACKER_PORT not set"]),
        ({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "9991"}, ["RANK, WORLD_SIZE not set"]),
        ({**TRAINJOB_PODS, **XGBOOSTJOB_PODS}, ["both", "set one"]),
        ({**TRAINJOB_PODS, "DMLC_TASK_ID": "one"}, ["DMLC_TASK_ID='one'", "whole number"]),
        ({**TRAINJOB_PODS, "DMLC_TASK_ID": "2"}, ["DMLC_TASK_ID=2", "DMLC_NUM_WORKER=2"]),
        ({**XGBOOSTJOB_PODS, "RANK": "-1"}, ["RANK=-1 is not a rank of WORLD_SIZE=2"]),
        ({**XGBOOSTJOB_PODS, "WORLD_SIZE": "0", "RANK": "0"}, ["WORLD_SIZE=0"]),
        ({**TRAINJOB_PODS, "DMLC_TRACKER_PORT": "70000"}, ["DMLC_TRACKER_PORT=70000", "port"]),
    ],
    ids=[
        "empty",
        "trainjob-partial",
        "xgboostjob-partial",
        "both",
        "not-a-number",
        "rank-too-big",
        "negative-rank",
        "no-workers",
        "bad-port",
    ],
)
def test_inconsistent_env_is_one_line_error(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ValueError) as raised:
        workers_from_env(env)
    message = str(raised.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_the_cli_exits_2_with_one_line_on_a_bad_env(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in OPERATOR_ENV}
    env |= {**TRAINJOB_PODS, "DMLC_NUM_WORKER": "1"}  # task 1 of 1 worker
    run = subprocess.run(
        [sys.executable, "-m", "income_census.train_distributed", "--sample"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr[-3000:]
    assert run.stderr.strip().splitlines() == [
        "train_distributed: error: DMLC_TASK_ID=1 is not a rank of DMLC_NUM_WORKER=1 workers"
    ]
    assert run.stdout == ""


def test_the_tracker_listens_on_loopback_here_and_on_the_pod_on_a_cluster() -> None:
    assert tracker_listen_address("127.0.0.1") == "127.0.0.1"
    assert tracker_listen_address("localhost") == "127.0.0.1"
    # A pod's DNS name may not resolve before JobSet's Service publishes it: every address.
    assert tracker_listen_address("income-xgboost-node-0-0.income-xgboost") == "0.0.0.0"
    assert tracker_listen_address("10.244.0.7") == "0.0.0.0"


def test_what_the_harness_gives_each_node_is_what_the_trainer_reads() -> None:
    doc = manifests.load(TRAINJOB)[0]
    runtime = trainer.resolve(doc)
    container = trainer.node(doc, runtime).container
    ports = {("Node", 0): 29500, ("Node", 1): 29501}
    for index in (0, 1):
        env = trainer.env(doc, runtime, container, index, ports)
        assert workers_from_env(env) == Workers(index, 2, "127.0.0.1", 29500)


# --- the TrainJob (Trainer v2), the default -----------------------------------------------------


def value_at(doc: dict, path: str) -> object:
    """The value at a case.toml override path such as `spec.x.containers[0].args`."""
    node: object = doc
    for token in re.findall(r"\w+", path):
        node = node[int(token)] if token.isdigit() else node[token]
    return node


@pytest.mark.parametrize(
    ("manifest", "args"),
    [
        (TRAINJOB, ["spec.trainer.args"]),
        (
            XGBOOSTJOB,
            [
                f"spec.xgbReplicaSpecs.{t}.template.spec.containers[0].args"
                for t in ("Master", "Worker")
            ],
        ),
    ],
    ids=["trainjob", "xgboostjob"],
)
def test_the_smoke_jobs_are_the_cluster_jobs_but_for_their_arguments(
    manifest: Path, args: list[str]
) -> None:
    """What the tests below run is what a cluster runs: case.toml swaps only the arguments, to
    the sample and fewer rounds, and keeps where the model and the checkpoints go."""
    overrides = CASE.overrides_for(manifest)
    assert sorted(overrides) == sorted(args)
    cluster = manifests.load(manifest)[0]
    for path in args:
        before, after = value_at(cluster, path), overrides[path]
        assert "--sample" not in before and "--sample" in after  # the full data on a cluster
        kept = [a for a in before if a.startswith(("--model-dir=", "--checkpoint-dir="))]
        assert len(kept) == 2 and set(kept) <= set(after), (before, after)


def test_trainjob_is_the_xgboostjob_on_trainer_v2() -> None:
    doc = manifests.load(TRAINJOB)[0]
    node = doc["spec"]["trainer"]
    # The runtime reserves the DMLC_* names: a TrainJob that sets one is refused.
    assert not [e for e in node.get("env", []) if e["name"].startswith("DMLC_")]
    # The same training as the legacy XGBoostJob, with a checkpoint folder of its own.
    legacy = manifests.load(XGBOOSTJOB)[0]["spec"]["xgbReplicaSpecs"]["Master"]
    legacy_args = legacy["template"]["spec"]["containers"][0]["args"]
    assert node["args"] == [
        "--checkpoint-dir=/mnt/pvc/checkpoints/trainjob" if a.startswith("--checkpoint-dir") else a
        for a in legacy_args
    ]
    # The shared volume comes in through runtimePatches, on the runtime's `node` job.
    built = trainer.node(doc, trainer.resolve(doc))
    assert {"name": "models", "mountPath": "/mnt/pvc"} in built.container["volumeMounts"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in built.pod_spec["volumes"]}
    assert claims <= {
        d["metadata"]["name"]
        for path in CASE.manifests
        for d in manifests.load(path)
        if d.get("kind") == "PersistentVolumeClaim"
    }  # the case's own PersistentVolumeClaim, which the servers read the model from


def test_two_nodes_train_the_model_one_process_trains(
    two_nodes: jobs.JobResult, single: Path
) -> None:
    result = two_nodes
    if not result.succeeded:
        result.raise_for_failure()
    assert result.reason == "Complete"
    node0, node1 = result.replica("Node", 0).log(), result.replica("Node", 1).log()
    assert "rank=0 world_size=2" in node0 and "rank=1 world_size=2" in node1
    assert "rank=0 trained 50 rounds" in node0 and "rank=1 trained 50 rounds" in node1
    assert "test_accuracy=" in node0 and "test_accuracy=" not in node1  # only rank 0 reports
    assert_same_model_as_one_process(result.workdir / "volumes" / "models", single)


# --- the XGBoostJob (Training Operator v1), legacy-v1 -------------------------------------------


def test_the_operator_finds_the_container_and_port_it_configures() -> None:
    # The harness falls back to a pod's only container and picks free ports, so a misnamed
    # container or port would pass the run below and break on a cluster: the Training Operator
    # sets MASTER_ADDR, RANK, ... only in the container named after the framework, and
    # MASTER_PORT from the port named xgboostjob-port (its default, 9991).
    doc = manifests.load(XGBOOSTJOB)[0]
    field, _, framework = operators.TRAINING_OPERATOR[doc["kind"]]
    for spec in doc["spec"][field].values():
        containers = spec["template"]["spec"]["containers"]
        (container,) = [c for c in containers if c["name"] == framework]
        assert {"name": "xgboostjob-port", "containerPort": 9991} in container["ports"]


def test_two_workers_train_the_model_one_process_trains(
    two_workers: jobs.JobResult, single: Path
) -> None:
    result = two_workers
    if not result.succeeded:
        result.raise_for_failure()
    assert result.reason == "XGBoostJobSucceeded"
    master, worker = result.replica("Master").log(), result.replica("Worker").log()
    assert "rank=0 world_size=2" in master and "rank=1 world_size=2" in worker
    assert "rank=0 trained 50 rounds" in master and "rank=1 trained 50 rounds" in worker
    assert_same_model_as_one_process(result.workdir / "volumes" / "models", single)


# --- both -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("job", ["two_nodes", "two_workers"])
def test_the_exported_model_is_a_pipeline_on_raw_rows(
    job: str, request: pytest.FixtureRequest
) -> None:
    result: jobs.JobResult = request.getfixturevalue(job)
    folder = result.workdir / "volumes" / "models" / "income-xgboost"
    model = joblib.load(folder / "model.joblib")
    (_, _), (test_rows, test_labels) = data.load_sample()
    accuracy = float((model.predict(test_rows) == test_labels).mean())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test_accuracy"])
    assert model.named_steps["classifier"].get_booster().num_boosted_rounds() == 50


def test_a_restarted_job_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    # What rank 0 left on the volume before a replica died: the booster after 20 rounds.
    first = one_process(tmp_path / "first", "--n-estimators=20")
    assert "resuming" not in first.stdout
    booster = joblib.load(tmp_path / "first" / "model" / "model.joblib")
    checkpoint = tmp_path / "checkpoints" / "checkpoint.ubj"
    checkpoint.parent.mkdir(parents=True)
    booster.named_steps["classifier"].get_booster().save_model(checkpoint)

    again = one_process(tmp_path)  # 50 rounds asked for, 20 already done
    assert f"resuming from {checkpoint} after 20 rounds" in again.stdout
    assert "rank=0 trained 50 rounds" in again.stdout
    resumed = joblib.load(tmp_path / "model" / "model.joblib").named_steps["classifier"]
    assert resumed.get_booster().num_boosted_rounds() == 50
    assert not checkpoint.exists()  # the finished job removes it, so the next starts fresh
    fresh = one_process(tmp_path / "fresh")
    assert "resuming" not in fresh.stdout
    # The resumed model scores as an uninterrupted run does.
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    uninterrupted = json.loads((tmp_path / "fresh" / "model" / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(uninterrupted["test_accuracy"], abs=0.002)

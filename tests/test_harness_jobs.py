"""The job runner starts replicas as the Kubeflow operators would and judges them by their rules.

Replicas are tiny scripts from tests/fixtures/jobs; they share a volume mounted at /mnt/shared,
which the harness maps to <workdir>/volumes/shared, and record their env and pid there.
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path

import pytest
import yaml

from tests.harness import operators, procs, trainer
from tests.harness.jobs import JobFailed, replica_env, run_job

FIXTURES = Path(__file__).parent / "fixtures" / "jobs"
REPLICA = ["python", "-m", "tests.fixtures.jobs.replica"]
SHARED = "/mnt/shared"


def pod(args: list[str], command: list[str] = REPLICA, name: str = "tensorflow") -> dict:
    """A pod template whose one container runs command + args with the shared volume mounted."""
    return {
        "spec": {
            "volumes": [{"name": "shared", "emptyDir": {}}],
            "containers": [
                {
                    "name": name,
                    "image": "example/harness-fixture:1",
                    "command": command,
                    "args": args,
                    "volumeMounts": [{"name": "shared", "mountPath": SHARED}],
                }
            ],
        }
    }


def training_job(kind: str, replicas: dict, run_policy: dict | None = None) -> dict:
    """replicas: {type: (count, restartPolicy, args)}."""
    field, _, container = operators.TRAINING_OPERATOR[kind]
    specs = {
        rtype: {"replicas": n, "restartPolicy": policy, "template": pod(args, name=container)}
        for rtype, (n, policy, args) in replicas.items()
    }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": kind,
        "metadata": {"name": f"test-{kind.lower()}"},
        "spec": {field: specs, "runPolicy": run_policy or {}},
    }


def shared(tmp_path: Path) -> Path:
    return tmp_path / "volumes" / "shared"


def dumped_env(tmp_path: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (shared(tmp_path) / "env").glob("*.json")}


def assert_no_replica_alive(tmp_path: Path) -> None:
    pids = [int(p.name) for p in (shared(tmp_path) / "pids").iterdir()]
    assert pids, "the fixture recorded no pids"
    assert not [pid for pid in pids if procs.alive(pid)]


# --- the environment, as pure functions ---------------------------------------------------


def test_tf_config_is_what_the_operator_marshals() -> None:
    doc = yaml.safe_load((FIXTURES / "tfjob_chief_ps.yaml").read_text())
    ports = {("Chief", 0): 1000, ("Worker", 0): 1001, ("Worker", 1): 1002, ("PS", 0): 1003}
    env = replica_env(doc, "Worker", 1, ports)
    assert env["TF_CONFIG"] == (
        '{"cluster":{"chief":["127.0.0.1:1000"],"ps":["127.0.0.1:1003"],'
        '"worker":["127.0.0.1:1001","127.0.0.1:1002"]},'
        '"task":{"type":"worker","index":1},"environment":"cloud"}'
    )
    # Since the kubeflow.org/v1 API the Evaluator is part of the cluster the operator writes.
    doc["spec"]["tfReplicaSpecs"]["Evaluator"] = doc["spec"]["tfReplicaSpecs"]["PS"]
    env = replica_env(doc, "Evaluator", 0, {**ports, ("Evaluator", 0): 1004})
    config = json.loads(env["TF_CONFIG"])
    assert config["cluster"]["evaluator"] == ["127.0.0.1:1004"]
    assert config["task"] == {"type": "evaluator", "index": 0}
    single = training_job("TFJob", {"Worker": (1, "Never", [])})
    assert replica_env(single, "Worker", 0, {("Worker", 0): 1}) == {}


def test_pytorch_env_ranks_world_size_and_pet_variables() -> None:
    doc = training_job(
        "PyTorchJob", {"Master": (1, "OnFailure", []), "Worker": (2, "OnFailure", [])}
    )
    ports = {("Master", 0): 2000, ("Worker", 0): 2001, ("Worker", 1): 2002}
    master, worker1 = replica_env(doc, "Master", 0, ports), replica_env(doc, "Worker", 1, ports)
    assert master == {
        "PYTHONUNBUFFERED": "0",
        "PET_NNODES": "3",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "2000",
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": "2000",
        "WORLD_SIZE": "3",
        "RANK": "0",
        "PET_NPROC_PER_NODE": "auto",
        "PET_NODE_RANK": "0",
    }
    assert (worker1["RANK"], worker1["PET_NODE_RANK"], worker1["MASTER_PORT"]) == ("2", "2", "2000")
    # WORLD_SIZE counts processes when nprocPerNode is an int; RANK stays the node rank.
    doc["spec"]["nprocPerNode"] = "2"
    assert replica_env(doc, "Worker", 0, ports)["WORLD_SIZE"] == "6"
    assert replica_env(doc, "Worker", 0, ports)["RANK"] == "1"
    # Without a Master the operator sets no rendezvous address at all.
    no_master = training_job("PyTorchJob", {"Worker": (2, "OnFailure", [])})
    assert replica_env(no_master, "Worker", 1, ports) == {
        "PYTHONUNBUFFERED": "0",
        "PET_NNODES": "2",
    }


def test_xgboost_env_offsets_workers_by_masters() -> None:
    doc = training_job("XGBoostJob", {"Master": (1, "Never", []), "Worker": (2, "Never", [])})
    ports = {("Master", 0): 3000, ("Worker", 0): 3001, ("Worker", 1): 3002}
    env = replica_env(doc, "Worker", 1, ports)
    assert {k: env[k] for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")} == {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "3000",
        "WORLD_SIZE": "3",
        "RANK": "2",
    }
    assert env["WORKER_ADDRS"] == "127.0.0.1,127.0.0.1"


def trainjob(num_nodes: int, command: list[str], **trainer: object) -> dict:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "test-trainjob"},
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {"numNodes": num_nodes, "command": command, **trainer},
        },
    }


def test_trainjob_env_and_num_proc_per_node() -> None:
    doc = trainjob(2, ["torchrun", "train.py"])
    env = replica_env(doc, "Node", 1, {("Node", 0): 4000, ("Node", 1): 4001})
    assert env == {
        "JOB_COMPLETION_INDEX": "1",  # the Job controller's, on every Indexed Job pod
        "PET_NNODES": "2",
        "PET_NPROC_PER_NODE": "1",
        "PET_NODE_RANK": "1",
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": "4000",
    }
    doc["spec"]["trainer"]["resourcesPerNode"] = {"limits": {"cpu": "2"}}
    assert operators.num_proc_per_node(doc) == "2"
    doc["spec"]["runtimeRef"]["name"] = "mpi-distributed"
    with pytest.raises(ValueError, match="'mpi-distributed'.*torch-distributed"):
        operators.plan(doc, trainer.resolve(doc))


# --- processes ----------------------------------------------------------------------------


def test_tfjob_replicas_get_the_operators_tf_config(tmp_path: Path) -> None:
    doc = yaml.safe_load((FIXTURES / "tfjob_chief_ps.yaml").read_text())
    result = run_job(doc, workdir=tmp_path, timeout=60)
    result.raise_for_failure()
    assert result.reason == "TFJobSucceeded" and result.primary().replica_type == "Chief"
    envs = dumped_env(tmp_path)
    assert sorted(envs) == ["chief-0", "ps-0", "worker-0", "worker-1"]
    configs = {name: json.loads(env["TF_CONFIG"]) for name, env in envs.items()}
    cluster = configs["chief-0"]["cluster"]
    assert sorted(cluster) == ["chief", "ps", "worker"] and len(cluster["worker"]) == 2
    addresses = [a for hosts in cluster.values() for a in hosts]
    assert len(set(addresses)) == 4 and all(a.startswith("127.0.0.1:") for a in addresses)
    for name, config in configs.items():
        rtype, index = name.split("-")
        assert config == {
            "cluster": cluster,
            "task": {"type": rtype, "index": int(index)},
            "environment": "cloud",
        }
    # The container's literal env is honoured, with its container path mapped.
    assert envs["chief-0"]["FIXTURE_LITERAL"] == str(shared(tmp_path) / "from-env")
    # The PS never completes on its own: the harness stopped it when the chief succeeded.
    assert result.replica("PS").status == "Terminated"
    assert "chief-0 started" in result.replica("Chief").log()
    assert_no_replica_alive(tmp_path)


def test_pytorchjob_and_xgboostjob_replica_env(tmp_path: Path) -> None:
    args = ["--dump", f"{SHARED}/env"]
    # The job ends when the master does, so the master waits for every worker's dump.
    master = [*args, "--wait-dumps", "3"]
    for kind in ("PyTorchJob", "XGBoostJob"):
        doc = training_job(kind, {"Master": (1, "Never", master), "Worker": (2, "Never", args)})
        result = run_job(doc, workdir=tmp_path / kind, timeout=60)
        result.raise_for_failure()
        envs = dumped_env(tmp_path / kind)
        assert sorted(envs) == ["rank-0", "rank-1", "rank-2"]
        ports = {env["MASTER_PORT"] for env in envs.values()}
        assert len(ports) == 1 and int(ports.pop()) > 0
        for name, env in envs.items():
            assert env["RANK"] == name.split("-")[1] and env["WORLD_SIZE"] == "3"
            assert env["MASTER_ADDR"] == "127.0.0.1"


def test_pytorchjob_gloo_all_reduce(tmp_path: Path) -> None:
    command = ["python", "-m", "tests.fixtures.jobs.allreduce"]
    doc = training_job(
        "PyTorchJob", {"Master": (1, "OnFailure", []), "Worker": (1, "OnFailure", [])}
    )
    for spec in doc["spec"]["pytorchReplicaSpecs"].values():
        spec["template"] = pod([f"{SHARED}/out"], command=command, name="pytorch")
    result = run_job(doc, workdir=tmp_path, timeout=120)
    result.raise_for_failure()
    outs = sorted(p.read_text() for p in (shared(tmp_path) / "out").iterdir())
    assert outs == ["2 3 0", "2 3 1"]


def test_trainjob_runs_torchrun_on_two_nodes(tmp_path: Path) -> None:
    doc = trainjob(2, ["torchrun", "-m", "tests.fixtures.jobs.allreduce"], args=["/tmp/out"])
    result = run_job(doc, workdir=tmp_path, timeout=120)
    result.raise_for_failure()
    assert result.reason == "Complete" and [r.replica_type for r in result.replicas] == ["Node"] * 2
    # /tmp is not a volume: it maps to the job's own folder, which both nodes share here.
    outs = sorted(p.read_text() for p in (tmp_path / "fs" / "tmp" / "out").iterdir())
    assert outs == ["2 3 0", "2 3 1"]


def test_trainjob_restarts_the_whole_gang_within_max_restarts(tmp_path: Path) -> None:
    args = ["--marker", f"{SHARED}/attempted-{{index}}", "--first-exit", "0:0,1:1"]
    doc = trainjob(2, REPLICA, args=args)
    # The trainer has no volumes of its own: a runtime patch mounts the shared one.
    mount = {"name": "node", "volumeMounts": [{"name": "shared", "mountPath": SHARED}]}
    doc["spec"]["runtimePatches"] = [
        {"manager": "test", "trainingRuntimeSpec": {"containers": [mount]}}
    ]
    # The stock runtime keeps JobSet's and the Job's defaults: the failed node's pod restarts in
    # place (OnFailure) and the other is left alone.
    result = run_job(doc, workdir=tmp_path / "default", timeout=60)
    result.raise_for_failure()
    assert [r.restarts for r in result.replicas] == [0, 1]

    # A runtime that fails its Job at the first failed pod: the TrainJob fails...
    runtime = copy.deepcopy(trainer.STOCK_RUNTIMES["torch-distributed"])
    job = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]
    job["spec"]["backoffLimit"] = 0
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    result = run_job(doc, workdir=tmp_path / "never", timeout=60, runtimes=[runtime])
    assert not result.succeeded and result.reason == "Failed (FailedJobs)"

    # ... unless JobSet's failurePolicy recreates every node.
    runtime["spec"]["template"]["spec"]["failurePolicy"] = {"maxRestarts": 1}
    result = run_job(doc, workdir=tmp_path / "restart", timeout=60, runtimes=[runtime])
    result.raise_for_failure()
    # JobSet recreates every node, the one that had already finished too.
    assert [r.exit_codes[-1] for r in result.replicas] == [0, 0]
    assert result.replica("Node", 1).exit_codes[0] == 1
    assert all(r.restarts == 1 for r in result.replicas)


def flaky_tfjob(policy: str, first_exit: str, backoff_limit: int | None = 3) -> dict:
    args = [
        "--marker",
        f"{SHARED}/attempted",
        "--first-exit",
        first_exit,
        "--pids",
        f"{SHARED}/pids",
    ]
    run_policy = {} if backoff_limit is None else {"backoffLimit": backoff_limit}
    return training_job("TFJob", {"Worker": (1, policy, args)}, run_policy)


def test_on_failure_restarts_the_replica_and_the_job_succeeds(tmp_path: Path) -> None:
    result = run_job(flaky_tfjob("OnFailure", "1"), workdir=tmp_path, timeout=60)
    result.raise_for_failure()
    worker = result.replica("Worker")
    assert worker.exit_codes == [1, 0] and worker.restarts == 1
    assert worker.log().count("===== worker-0 attempt") == 2


def test_never_fails_the_job_and_shows_the_replica_log(tmp_path: Path) -> None:
    result = run_job(flaky_tfjob("Never", "1"), workdir=tmp_path, timeout=60)
    assert not result.succeeded and result.reason == "TFJobFailed"
    assert "1 Worker replica(s) failed" in result.message
    with pytest.raises(JobFailed) as failure:
        result.raise_for_failure()
    assert "TFJobFailed" in str(failure.value)
    assert "failing on purpose with exit code 1" in str(failure.value)


def test_backoff_limit_exceeded(tmp_path: Path) -> None:
    doc = training_job(
        "PyTorchJob", {"Worker": (1, "OnFailure", ["--exit", "1"])}, {"backoffLimit": 2}
    )
    result = run_job(doc, workdir=tmp_path, timeout=60)
    assert not result.succeeded and "BackoffLimitExceeded" in result.reason
    # The operator fails the job when the restart count reaches the limit: 2 -> one restart.
    assert result.replica("Worker").exit_codes == [1, 1]
    assert "reached the specified backoff limit" in result.message


@pytest.mark.parametrize(("first_exit", "succeeds"), [("1", False), ("137", True)])
def test_exit_code_policy_retries_only_retryable_codes(
    tmp_path: Path, first_exit: str, succeeds: bool
) -> None:
    result = run_job(flaky_tfjob("ExitCode", first_exit), workdir=tmp_path, timeout=60)
    assert result.succeeded is succeeds
    assert result.replica("Worker").exit_codes == ([137, 0] if succeeds else [1])


def test_worker_0_decides_a_tfjob_without_chief(tmp_path: Path) -> None:
    args = ["--pids", f"{SHARED}/pids", "--sleep", "0:0.2,1:60"]
    doc = training_job("TFJob", {"Worker": (2, "Never", args)})
    result = run_job(doc, workdir=tmp_path / "ok", timeout=60)
    assert result.succeeded and result.seconds < 30
    assert result.replica("Worker", 1).status == "Terminated"
    assert_no_replica_alive(tmp_path / "ok")

    doc = training_job("TFJob", {"Worker": (2, "Never", [*args, "--exit", "0:1,1:0"])})
    result = run_job(doc, workdir=tmp_path / "fail", timeout=60)
    assert not result.succeeded and result.reason == "TFJobFailed"
    assert result.replica("Worker", 0).status == "Failed"
    assert result.replica("Worker", 1).status == "Terminated"


@pytest.mark.parametrize("when", ["seconds", "callable"])
def test_kill_hook_and_on_failure_bring_the_worker_back(tmp_path: Path, when: str) -> None:
    marker = f"{SHARED}/attempted"
    args = ["--marker", marker, "--first-sleep", "60", "--pids", f"{SHARED}/pids"]
    doc = training_job("TFJob", {"Worker": (1, "OnFailure", args)}, {"backoffLimit": 2})
    # Either a time after the first start, or a condition, e.g. "the first checkpoint exists".
    # Seconds leave the first attempt time to start even on a loaded machine.
    kill = 2.5 if when == "seconds" else (lambda: (shared(tmp_path) / "attempted").exists())
    result = run_job(doc, workdir=tmp_path, timeout=60, kill_after={("Worker", 0): kill})
    result.raise_for_failure()
    assert result.replica("Worker").exit_codes == [137, 0]
    assert result.replica("Worker").restarts == 1
    assert_no_replica_alive(tmp_path)


def test_timeout_and_deadline_leave_no_process_behind(tmp_path: Path) -> None:
    args = ["--pids", f"{SHARED}/pids", "--sleep", "60"]
    doc = training_job("TFJob", {"Chief": (1, "Never", args), "Worker": (1, "Never", args)})
    # Long enough for the replicas to record their pids on a loaded machine.
    result = run_job(doc, workdir=tmp_path / "timeout", timeout=4)
    assert not result.succeeded and result.reason == "Timeout"
    with pytest.raises(JobFailed, match="last lines of chief-0"):
        result.raise_for_failure()
    assert all(r.status == "Terminated" for r in result.replicas)
    assert_no_replica_alive(tmp_path / "timeout")

    doc["spec"]["runPolicy"]["activeDeadlineSeconds"] = 3
    result = run_job(doc, workdir=tmp_path / "deadline", timeout=60)
    assert "DeadlineExceeded" in result.reason
    assert_no_replica_alive(tmp_path / "deadline")


def test_cancel_stops_the_job(tmp_path: Path) -> None:
    doc = training_job(
        "TFJob", {"Worker": (1, "Never", ["--pids", f"{SHARED}/pids", "--sleep", "60"])}
    )
    cancel = threading.Event()
    threading.Timer(3, cancel.set).start()
    result = run_job(doc, workdir=tmp_path, timeout=60, cancel=cancel)
    assert result.reason == "Cancelled" and result.seconds < 30
    assert_no_replica_alive(tmp_path)


def test_kill_after_rejects_unknown_replicas(tmp_path: Path) -> None:
    doc = training_job("TFJob", {"Worker": (1, "Never", [])})
    with pytest.raises(ValueError, match="Chief"):
        run_job(doc, workdir=tmp_path, kill_after={("Chief", 0): 1.0})


@pytest.mark.slow
def test_spark_application_runs_spark_submit_locally(tmp_path: Path) -> None:
    doc = {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": "spark-sum"},
        "spec": {
            "type": "Python",
            "mode": "cluster",
            "mainApplicationFile": "local:///app/tests/fixtures/jobs/spark_sum.py",
            "arguments": [f"{SHARED}/result.txt"],
            "sparkConf": {"spark.sql.shuffle.partitions": "2"},
            "restartPolicy": {"type": "Never"},
            "volumes": [{"name": "shared", "emptyDir": {}}],
            "driver": {
                "cores": 1,
                "memory": "512m",
                "volumeMounts": [{"name": "shared", "mountPath": SHARED}],
            },
            "executor": {"instances": 2, "cores": 1, "memory": "512m"},
        },
    }
    result = run_job(doc, workdir=tmp_path, timeout=180)
    result.raise_for_failure()
    assert result.reason == "COMPLETED" and result.primary().replica_type == "Driver"
    assert (shared(tmp_path) / "result.txt").read_text() == "local[2] 5050"


def test_backoff_limit_one_leaves_no_restart_as_in_the_operator(tmp_path: Path) -> None:
    # A first attempt that fails would be restart number 1, which reaches backoffLimit 1.
    result = run_job(flaky_tfjob("OnFailure", "1", backoff_limit=1), workdir=tmp_path, timeout=60)
    assert not result.succeeded and "BackoffLimitExceeded" in result.reason
    assert result.replica("Worker").exit_codes == [1]


def test_a_batch_job_runs_through_run_job_without_fault_injection(tmp_path: Path) -> None:
    container = {
        "name": "main",
        "image": "example/batch:1",
        "command": ["python", "-c", "print('ok')"],
    }
    doc = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "plain"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
    }
    result = run_job(doc, workdir=tmp_path / "run")
    assert result.succeeded and result.reason == "Complete" and "ok" in result.primary().log()
    with pytest.raises(ValueError, match="not a batch/v1 Job"):
        run_job(doc, workdir=tmp_path / "kill", kill_after={("Pod", 0): 1.0})

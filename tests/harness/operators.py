"""What each Kubeflow operator does to a job's replicas, as pure functions over the manifest.

`jobs.run_job` starts the processes; this module says which processes, with which environment,
which restart policy, and when the job has succeeded. Facts come from the operators' sources:

- Training Operator v1.9 (`kubeflow/training-operator`, pkg/controller.v1/...):
  tensorflow/tensorflow.go builds TF_CONFIG from every replica type (Evaluator included since the
  kubeflow.org/v1 API; only v1alpha2 left it out), lower-case type names, `"environment": "cloud"`,
  and sets it only when the job has more than one replica. pytorch/envvar.go + master.go set
  PYTHONUNBUFFERED=0, and only when a Master exists MASTER_ADDR/PORT, PET_MASTER_ADDR/PORT,
  WORLD_SIZE = replicas x nprocPerNode (1 unless an int), RANK = PET_NODE_RANK = node rank
  (master 0, worker i+1) and PET_NPROC_PER_NODE; PET_NNODES = replicas always.
  xgboost/xgboost.go sets MASTER_ADDR/PORT, WORLD_SIZE, RANK (workers offset by the masters),
  PYTHONUNBUFFERED=0, and WORKER_PORT/WORKER_ADDRS (for LightGBM) when there is more than one replica.
  Default restartPolicy: TFJob and XGBoostJob Never, PyTorchJob OnFailure.
- Kubeflow Trainer v2: a TrainJob's nodes, env and restart rules come from the runtime it names;
  see `trainer`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.harness import trainer
from tests.harness.procs import LOOPBACK

TRAINING_OPERATOR = {
    "TFJob": ("tfReplicaSpecs", ("Chief", "Master", "PS", "Worker", "Evaluator"), "tensorflow"),
    "PyTorchJob": ("pytorchReplicaSpecs", ("Master", "Worker"), "pytorch"),
    "XGBoostJob": ("xgbReplicaSpecs", ("Master", "Worker"), "xgboost"),
}
DEFAULT_RESTART_POLICY = {"TFJob": "Never", "PyTorchJob": "OnFailure", "XGBoostJob": "Never"}
RESTART_POLICIES = ("Never", "OnFailure", "Always", "ExitCode")

# pkg/util/train/train_util.go: SIGINT, SIGKILL, SIGTERM (a node going away) and SIGUSR1 (the
# code users may exit with to ask for a retry) are retryable; every other code is permanent.
RETRYABLE_EXIT_CODES = frozenset({130, 137, 138, 143})


@dataclass(frozen=True)
class Replica:
    """One process the operator would run as a pod: its container, pod spec and restart policy."""

    replica_type: str
    index: int
    container: dict
    pod_spec: dict
    restart_policy: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.replica_type, self.index)


# What a mutating admission webhook (Katib's pod webhook) makes of a replica's command: given
# the replica, its pod's labels and the run's PathMap, the local argv to run instead, or None to
# run the container's own command. Raising ValueError refuses the pod, as a webhook error does.
WrapCommand = Callable[[Replica, Mapping[str, str], Any], list[str] | None]


def kind_of(doc: Mapping) -> str:
    kind = doc.get("kind", "")
    if kind in TRAINING_OPERATOR or kind in ("TrainJob", "SparkApplication"):
        return kind
    raise ValueError(
        f"kind {kind!r} is not a job the harness runs: TFJob, PyTorchJob, XGBoostJob, "
        "TrainJob or SparkApplication"
    )


def plan(doc: Mapping, runtime: Mapping | None = None) -> list[Replica]:
    """Every replica of the job, in the order the operator reconciles the types.

    runtime: for a TrainJob, the runtime manifest it names (`trainer.resolve`); default: stock.
    """
    kind = kind_of(doc)
    if kind == "TrainJob":
        return _plan_trainjob(doc, runtime or trainer.resolve(doc))
    if kind == "SparkApplication":
        return _plan_spark(doc)
    field, order, default_container = TRAINING_OPERATOR[kind]
    specs = doc["spec"].get(field) or {}
    unknown = set(specs) - set(order)
    if unknown:
        raise ValueError(f"{kind} has replica types {sorted(unknown)}; expected some of {order}")
    if kind == "PyTorchJob" and doc["spec"].get("elasticPolicy"):
        raise ValueError("PyTorchJob elasticPolicy is not supported by the local harness")
    replicas = []
    for rtype in order:
        if rtype not in specs:
            continue
        spec = specs[rtype]
        pod_spec = spec.get("template", {}).get("spec", {})
        container = pick_container(pod_spec, default_container)
        policy = spec.get("restartPolicy") or DEFAULT_RESTART_POLICY[kind]
        _check_policy(policy)
        for i in range(int(spec.get("replicas", 1))):
            replicas.append(Replica(rtype, i, container, pod_spec, policy))
    return replicas


def pick_container(pod_spec: Mapping, name: str) -> dict:
    containers = pod_spec.get("containers") or []
    if not containers:
        raise ValueError("a replica's pod template has no containers")
    # The operator injects its env into the container with the framework's default name.
    return next((c for c in containers if c.get("name") == name), containers[0])


def _check_policy(policy: str) -> None:
    if policy not in RESTART_POLICIES:
        raise ValueError(f"restartPolicy {policy!r} is not one of {RESTART_POLICIES}")


def _plan_trainjob(doc: Mapping, runtime: Mapping) -> list[Replica]:
    node = trainer.node(doc, runtime)
    return [
        Replica("Node", i, node.container, node.pod_spec, node.restart_policy)
        for i in range(node.count)
    ]


def _plan_spark(doc: Mapping) -> list[Replica]:
    spec = doc["spec"]
    driver = dict(spec.get("driver") or {})
    env = list(driver.get("env") or [])
    env += [{"name": k, "value": str(v)} for k, v in (driver.get("envVars") or {}).items()]
    mounts = list(driver.get("volumeMounts") or [])
    mounts += (spec.get("executor") or {}).get("volumeMounts") or []
    container = {"name": "spark-kubernetes-driver", "env": env, "volumeMounts": mounts}
    policy = (spec.get("restartPolicy") or {}).get("type", "Never")
    if policy not in ("Never", "OnFailure", "Always"):
        raise ValueError(f"SparkApplication restartPolicy.type {policy!r} is not supported")
    return [Replica("Driver", 0, container, {"volumes": spec.get("volumes", [])}, policy)]


def replica_env(
    doc: Mapping,
    replica_type: str,
    index: int,
    ports: Mapping,
    runtime: Mapping | None = None,
) -> dict[str, str]:
    """The variables the operator adds to one replica, with 127.0.0.1 and the given local ports.

    `ports` maps (replica_type, index) to the loopback port that replica listens on; `runtime` is
    a TrainJob's runtime manifest (default: the stock one it names).
    """
    kind = kind_of(doc)
    if kind == "TFJob":
        return _tf_env(doc, replica_type, index, ports)
    if kind == "PyTorchJob":
        return _pytorch_env(doc, replica_type, index, ports)
    if kind == "XGBoostJob":
        return _xgboost_env(doc, replica_type, index, ports)
    if kind == "TrainJob":
        runtime = runtime or trainer.resolve(doc)
        return trainer.env(doc, runtime, trainer.node(doc, runtime).container, index, ports)
    # Spark binds the first non-loopback address otherwise; executors run this interpreter.
    return {
        "SPARK_LOCAL_IP": LOOPBACK,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }


def _counts(doc: Mapping) -> dict[str, int]:
    field = TRAINING_OPERATOR[doc["kind"]][0]
    return {t: int(s.get("replicas", 1)) for t, s in doc["spec"][field].items()}


def tf_config(doc: Mapping, replica_type: str, index: int, ports: Mapping) -> str:
    """TF_CONFIG as tensorflow.go's genTFConfigJSONStr marshals it (Go sorts map keys)."""
    cluster = {
        rtype.lower(): [f"{LOOPBACK}:{ports[(rtype, i)]}" for i in range(n)]
        for rtype, n in _counts(doc).items()
    }
    config = {
        "cluster": dict(sorted(cluster.items())),
        "task": {"type": replica_type.lower(), "index": index},
        "environment": "cloud",
    }
    return json.dumps(config, separators=(",", ":"))


def _tf_env(doc: Mapping, replica_type: str, index: int, ports: Mapping) -> dict[str, str]:
    # A single-replica TFJob is local training: the operator sets no TF_CONFIG at all.
    if sum(_counts(doc).values()) == 1:
        return {}
    return {"TF_CONFIG": tf_config(doc, replica_type, index, ports)}


def _pytorch_env(doc: Mapping, replica_type: str, index: int, ports: Mapping) -> dict[str, str]:
    counts = _counts(doc)
    total = sum(counts.values())
    env = {"PYTHONUNBUFFERED": "0", "PET_NNODES": str(total)}
    if "Master" not in counts:
        # Without a Master the operator sets no rendezvous address: the job must bring its own.
        return env
    nproc = str(doc["spec"].get("nprocPerNode") or "auto")
    rank = index + 1 if replica_type == "Worker" else index
    port = str(ports[("Master", 0)])
    env.update(
        MASTER_ADDR=LOOPBACK,
        MASTER_PORT=port,
        PET_MASTER_ADDR=LOOPBACK,
        PET_MASTER_PORT=port,
        WORLD_SIZE=str(total * (int(nproc) if nproc.isdigit() else 1)),
        RANK=str(rank),
        PET_NPROC_PER_NODE=nproc,
        PET_NODE_RANK=str(rank),
    )
    return env


def _xgboost_env(doc: Mapping, replica_type: str, index: int, ports: Mapping) -> dict[str, str]:
    counts = _counts(doc)
    total = sum(counts.values())
    rank = index + counts.get("Master", 0) if replica_type == "Worker" else index
    env = {
        "MASTER_PORT": str(ports[("Master", 0)]),
        "MASTER_ADDR": LOOPBACK,
        "WORLD_SIZE": str(total),
        "RANK": str(rank),
        "PYTHONUNBUFFERED": "0",
    }
    if total > 1:
        # The operator gives one WORKER_PORT for all workers (each has its own pod IP); on one
        # machine they cannot share it, so this is worker 0's port. Only LightGBM reads these.
        env["WORKER_PORT"] = str(ports.get(("Worker", 0), ports[("Master", 0)]))
        env["WORKER_ADDRS"] = ",".join([LOOPBACK] * (total - 1))
    return env


num_proc_per_node = trainer.num_proc_per_node


# Labels the operators put on a replica's pod (besides the pod template's own), which Katib's
# primaryPodLabels select on. Training Operator v1.9: pkg/common/util/... ReplicaTypeLabel etc.,
# and job-role=master where the framework's IsMasterRole says so (TFJob: the Chief or Master,
# else worker 0; PyTorchJob and XGBoostJob: the Master).
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
OPERATOR_NAME_LABEL = "training.kubeflow.org/operator-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
REPLICA_INDEX_LABEL = "training.kubeflow.org/replica-index"
JOB_ROLE_LABEL = "training.kubeflow.org/job-role"


def pod_labels(doc: Mapping, replica: Replica) -> dict[str, str]:
    """The labels of the pod that runs `replica`: its template's, then its controller's.

    TrainJob: JobSet's and the Job controller's (`trainer.fields`); batch/v1 Job: job-name and
    batch.kubernetes.io/job-name; SparkApplication: spark-role=driver.
    """
    kind = doc.get("kind", "")
    name = doc.get("metadata", {}).get("name", "")
    if kind == "TrainJob":
        prefix, suffix = "metadata.labels['", "']"
        return {
            path[len(prefix) : -len(suffix)]: value
            for path, value in trainer.fields(doc, replica.index).items()
            if path.startswith(prefix)
        }
    if kind == "Job":
        template = (doc.get("spec") or {}).get("template") or {}
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        return {**labels, "job-name": name, "batch.kubernetes.io/job-name": name}
    if kind == "SparkApplication":
        labels = dict(((doc.get("spec") or {}).get("driver") or {}).get("labels") or {})
        return {**labels, "spark-role": "driver"}
    field = TRAINING_OPERATOR[kind_of(doc)][0]
    spec = (doc["spec"].get(field) or {}).get(replica.replica_type) or {}
    labels = dict(((spec.get("template") or {}).get("metadata") or {}).get("labels") or {})
    labels.update(
        {
            OPERATOR_NAME_LABEL: f"{kind.lower()}-controller",
            JOB_NAME_LABEL: name,
            REPLICA_TYPE_LABEL: replica.replica_type.lower(),
            REPLICA_INDEX_LABEL: str(replica.index),
        }
    )
    if _is_master_role(doc, replica):
        labels[JOB_ROLE_LABEL] = "master"
    return labels


def _is_master_role(doc: Mapping, replica: Replica) -> bool:
    counts = _counts(doc)
    if doc["kind"] == "TFJob" and not {"Chief", "Master"} & set(counts):
        return replica.key == ("Worker", 0)
    return replica.replica_type in (("Chief", "Master") if doc["kind"] == "TFJob" else ("Master",))


def primary(doc: Mapping) -> tuple[str, int]:
    """The replica whose completion the operator reads as the job's success."""
    kind = kind_of(doc)
    if kind == "TrainJob":
        return ("Node", 0)
    if kind == "SparkApplication":
        return ("Driver", 0)
    counts = _counts(doc)
    for rtype in ("Chief", "Master"):
        if rtype in counts:
            return (rtype, 0)
    return ("Worker", 0)


def succeeded(doc: Mapping, statuses: Mapping[tuple[str, int], str]) -> bool:
    """Whether the operator would mark the job Succeeded, given each replica's status.

    TFJob: all Chief/Master replicas succeeded; without one, worker 0 succeeded (or every worker
    with `successPolicy: AllWorkers`). PyTorchJob and XGBoostJob: the Master succeeded; without
    one, every worker. TrainJob: every node (JobSet's default successPolicy `All`). Spark: the driver.
    """
    kind = kind_of(doc)

    def all_of(rtype: str) -> bool:
        keys = [k for k in statuses if k[0] == rtype]
        return bool(keys) and all(statuses[k] == "Succeeded" for k in keys)

    if kind in ("TrainJob", "SparkApplication"):
        return all(s == "Succeeded" for s in statuses.values())
    counts = _counts(doc)
    leaders = [t for t in ("Chief", "Master") if t in counts]
    if kind == "TFJob" and leaders:
        return all(all_of(t) for t in leaders)
    if kind != "TFJob" and "Master" in counts:
        return all_of("Master")
    if kind == "TFJob" and doc["spec"].get("successPolicy") != "AllWorkers":
        return statuses.get(("Worker", 0)) == "Succeeded"
    return all_of("Worker")


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a replica under this restartPolicy is started again after exiting with exit_code."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    if policy == "ExitCode":
        return exit_code in RETRYABLE_EXIT_CODES
    return False


def spark_container(doc: Mapping) -> dict:
    """The driver as a container running spark-submit in local mode, with container paths.

    local[N] with N = executor.instances x executor.cores (each defaulting to 1) gives the job as
    many task slots as its executors would have on a cluster. The Spark UI is off unless sparkConf
    turns it on, so jobs running side by side do not race for port 4040.
    """
    spec = doc["spec"]
    executor = spec.get("executor") or {}
    slots = max(1, int(executor.get("instances", 1)) * int(executor.get("cores", 1)))
    args = ["--master", f"local[{slots}]", "--name", doc.get("metadata", {}).get("name", "spark")]
    if spec.get("mainClass"):
        args += ["--class", spec["mainClass"]]
    conf = {"spark.ui.enabled": "false"}
    if (spec.get("driver") or {}).get("memory"):
        conf["spark.driver.memory"] = str(spec["driver"]["memory"])
    conf.update({k: str(v) for k, v in (spec.get("sparkConf") or {}).items()})
    for key, value in conf.items():
        args += ["--conf", f"{key}={value}"]
    deps = spec.get("deps") or {}
    for field, flag in (("pyFiles", "--py-files"), ("jars", "--jars"), ("files", "--files")):
        if deps.get(field):
            args += [flag, ",".join(_strip_scheme(p) for p in deps[field])]
    args.append(_strip_scheme(spec["mainApplicationFile"]))
    args += [str(a) for a in spec.get("arguments") or []]
    return {"name": "spark-kubernetes-driver", "command": ["spark-submit"], "args": args}


def _strip_scheme(uri: str) -> str:
    # `local://` means "already in the image", which here is the repository behind /app.
    for scheme in ("local://", "file://"):
        if uri.startswith(scheme):
            return uri[len(scheme) :]
    return uri

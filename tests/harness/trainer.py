"""Kubeflow Trainer v2 on this machine: which runtime a TrainJob runs on, and what its pods get.

A TrainJob names a runtime (`spec.runtimeRef`): a ClusterTrainingRuntime (the default kind) or a
namespaced TrainingRuntime. The runtime holds the JobSet template; its `mlPolicy` says which
framework plugin adds environment to the trainer's `node` container. Facts from Trainer v2.3.0
(`kubeflow/trainer`, pkg/runtime/framework/plugins/...):

- jobset/builder.go: the TrainJob's `trainer.image`, `command` and `args` each replace the runtime
  container's when set (a TrainJob that sets only `args` keeps the runtime's command), and
  `trainer.env` is upserted over the runtime container's env. The trainer replicated job gets
  `replicas: 1`; `numNodes` becomes its Job's parallelism, so node i is the Job's completion
  index i, reachable as `<trainjob>-node-0-<i>.<trainjob>` through JobSet's headless service.
- torch/torch.go (`mlPolicy.torch`): PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK (the completion
  index), PET_MASTER_ADDR (`<trainjob>-node-0-0.<trainjob>`), PET_MASTER_PORT (29500).
- xgboost/xgboost.go (`mlPolicy.xgboost`): DMLC_TRACKER_URI (node 0's name, where rank 0 runs the
  tracker), DMLC_TRACKER_PORT (29500), DMLC_TASK_ID (the completion index), DMLC_NUM_WORKER
  (nodes x GPUs per node, 1 per node on CPU).
- plainml/plainml.go (no framework policy): `numNodes` sets the pod count and `trainer.env` is
  passed through; nothing tells the pods their count or their peers.

Failures: a node's pod follows its restartPolicy (JobSet defaults it to OnFailure: the failed
node restarts in place) until the node Job's backoffLimit (default 6) is used up; then the Job
fails and JobSet's `failurePolicy.maxRestarts` (default 0) decides whether every node is
recreated or the TrainJob fails. A runtime that wants the whole gang restarted at the first
failure, as collective training does, sets `restartPolicy: Never` and `backoffLimit: 0`.

Every pod of the Indexed Job also gets JOB_COMPLETION_INDEX (from the Kubernetes Job controller)
and JobSet's labels and annotations, which a container reads through the downward API; `fields`
gives their local values. On one machine every node is 127.0.0.1 on a port of its own, so names
cannot stand for nodes: the framework plugins' addresses become 127.0.0.1 and node 0's port, and
a runtime that derives peer addresses from JobSet's names declares the env NODE_ADDRESSES (empty
on a cluster), which the harness fills with every node's `127.0.0.1:<port>` in index order.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.harness import manifests
from tests.harness.procs import LOOPBACK

GROUP = "trainer.kubeflow.org"
TRAINER_ANCESTOR = "trainer"  # label trainer.kubeflow.org/trainjob-ancestor-step
NODE = "node"  # the trainer's replicated job and container
NODE_ADDRESSES = "NODE_ADDRESSES"
RUNTIME_KINDS = ("TrainingRuntime", "ClusterTrainingRuntime")
FRAMEWORKS = ("torch", "xgboost")  # the policies whose plugins run here; none is PlainML


def _stock(name: str, framework: str) -> dict:
    # manifests/base/runtimes/<framework>_distributed.yaml of Trainer v2.3.0, minus the image.
    container = {"name": NODE}
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "ClusterTrainingRuntime",
        "metadata": {"name": name, "labels": {f"{GROUP}/framework": framework}},
        "spec": {
            "mlPolicy": {"numNodes": 1, framework: {}},
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": NODE,
                            "template": {
                                "metadata": {
                                    "labels": {f"{GROUP}/trainjob-ancestor-step": "trainer"}
                                },
                                "spec": {"template": {"spec": {"containers": [container]}}},
                            },
                        }
                    ]
                }
            },
        },
    }


# The stock ClusterTrainingRuntimes the harness runs without being given their manifests.
STOCK_RUNTIMES = {
    "torch-distributed": _stock("torch-distributed", "torch"),
    "xgboost-distributed": _stock("xgboost-distributed", "xgboost"),
}


def resolve(doc: Mapping, runtimes: Iterable[Mapping] = ()) -> dict:
    """The runtime manifest the TrainJob names: one of `runtimes`, else a stock one.

    Raises ValueError naming the runtime when neither has it: the harness never guesses.
    """
    ref = doc["spec"].get("runtimeRef") or {}
    name, kind = ref.get("name"), ref.get("kind") or "ClusterTrainingRuntime"
    for runtime in runtimes:
        if runtime.get("kind") == kind and runtime.get("metadata", {}).get("name") == name:
            return dict(runtime)
    if kind == "ClusterTrainingRuntime" and name in STOCK_RUNTIMES:
        return STOCK_RUNTIMES[name]
    job = doc.get("metadata", {}).get("name", "?")
    given = sorted(f"{r.get('kind')}/{r.get('metadata', {}).get('name')}" for r in runtimes)
    raise ValueError(
        f"TrainJob {job} runs on the {kind} {name!r}, which the harness does not know: it has the "
        f"stock {', '.join(STOCK_RUNTIMES)}"
        + (f" and was given {', '.join(given)}" if given else "")
        + "; pass the runtime's manifest (runtimes=...) or keep it beside the TrainJob"
    )


def framework(runtime: Mapping) -> str | None:
    """The runtime's framework policy: "torch", "xgboost" or None (PlainML)."""
    policy = (runtime.get("spec") or {}).get("mlPolicy") or {}
    found = [k for k in policy if k != "numNodes"]
    unsupported = [k for k in found if k not in FRAMEWORKS]
    if unsupported:
        name = runtime.get("metadata", {}).get("name", "?")
        raise ValueError(
            f"runtime {name!r} has mlPolicy {unsupported[0]!r}, whose plugin the harness does not "
            f"run; it runs {', '.join(FRAMEWORKS)} and runtimes with no framework policy"
        )
    return found[0] if found else None


def num_nodes(doc: Mapping, runtime: Mapping) -> int:
    trainer = doc["spec"].get("trainer") or {}
    if trainer.get("numNodes") is not None:
        return int(trainer["numNodes"])
    return int(((runtime.get("spec") or {}).get("mlPolicy") or {}).get("numNodes", 1))


def max_restarts(runtime: Mapping) -> int:
    """JobSet's failurePolicy.maxRestarts from the runtime's template (0: a failed node fails)."""
    spec = ((runtime.get("spec") or {}).get("template") or {}).get("spec") or {}
    return int((spec.get("failurePolicy") or {}).get("maxRestarts", 0))


@dataclass(frozen=True)
class Node:
    """The trainer's node container after the TrainJob is applied to the runtime, and its pod."""

    container: dict
    pod_spec: dict
    count: int
    restart_policy: str  # of the pod: OnFailure restarts a failed node in place
    backoff_limit: int  # failures the node Job absorbs before it fails


def node(doc: Mapping, runtime: Mapping) -> Node:
    """The `node` container and pod spec every node runs, as jobset/builder.go assembles them."""
    rname = runtime.get("metadata", {}).get("name", "?")
    jobs = ((runtime.get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "replicatedJobs"
    ) or []
    trainer_jobs = [j for j in jobs if _ancestor(j) == TRAINER_ANCESTOR or j.get("name") == NODE]
    others = [j.get("name") for j in jobs if j not in trainer_jobs]
    if len(trainer_jobs) != 1 or others:
        raise ValueError(
            f"runtime {rname!r}: the harness runs one trainer job named {NODE!r}; "
            f"found {[j.get('name') for j in trainer_jobs]} and others {others}"
        )
    pod_spec = copy.deepcopy(
        ((trainer_jobs[0].get("template") or {}).get("spec") or {}).get("template", {}).get("spec")
        or {}
    )
    base = next((c for c in pod_spec.get("containers") or [] if c.get("name") == NODE), None)
    if base is None:
        raise ValueError(f"runtime {rname!r}: its trainer job has no container named {NODE!r}")
    trainer = doc["spec"].get("trainer") or {}
    container = copy.deepcopy(base)
    for key in ("image", "command", "args"):
        if trainer.get(key) is not None:
            container[key] = list(trainer[key]) if key != "image" else trainer[key]
    container["env"] = _upsert(container.get("env") or [], trainer.get("env") or [])
    patches = doc["spec"].get("runtimePatches") or []
    container["volumeMounts"] = [
        *(container.get("volumeMounts") or []),
        *_named(patches, "volumeMounts", lambda d: d.get("name") == NODE),
    ]
    pod_spec["volumes"] = [*(pod_spec.get("volumes") or []), *_named(patches, "volumes")]
    job_spec = (trainer_jobs[0].get("template") or {}).get("spec") or {}
    return Node(
        container,
        pod_spec,
        num_nodes(doc, runtime),
        # JobSet's webhook defaults a pod's restartPolicy to OnFailure; Kubernetes a Job's
        # backoffLimit to 6.
        pod_spec.get("restartPolicy") or "OnFailure",
        int(job_spec.get("backoffLimit", 6)),
    )


def _ancestor(replicated_job: Mapping) -> str | None:
    labels = ((replicated_job.get("template") or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(f"{GROUP}/trainjob-ancestor-step")


def _upsert(env: list[dict], updates: list[dict]) -> list[dict]:
    merged = {e["name"]: e for e in env}
    merged.update({e["name"]: e for e in updates})
    return list(merged.values())


def _named(patches: object, key: str, where=lambda d: True) -> list[dict]:
    """Every list under `key` in the patches, wherever runtimePatches nests it."""
    found = manifests.find(patches, lambda d: key in d and where(d))
    return [item for _, d in found for item in d[key] or []]


def fields(doc: Mapping, index: int) -> dict[str, str]:
    """Downward-API field paths of node `index`'s pod and their values (fieldRef env)."""
    name = doc.get("metadata", {}).get("name", "trainjob")
    pod = f"{name}-{NODE}-0-{index}"
    return {
        "metadata.name": pod,
        "metadata.namespace": doc.get("metadata", {}).get("namespace", "default"),
        "metadata.labels['jobset.sigs.k8s.io/jobset-name']": name,
        "metadata.labels['jobset.sigs.k8s.io/replicatedjob-name']": NODE,
        "metadata.labels['jobset.sigs.k8s.io/replicatedjob-replicas']": "1",
        "metadata.labels['jobset.sigs.k8s.io/job-index']": "0",
        "metadata.labels['batch.kubernetes.io/job-completion-index']": str(index),
        "metadata.annotations['batch.kubernetes.io/job-completion-index']": str(index),
        "spec.hostname": pod,
        "status.podIP": LOOPBACK,
    }


def env(
    doc: Mapping, runtime: Mapping, container: Mapping, index: int, ports: Mapping
) -> dict[str, str]:
    """What the Job controller and the runtime's plugin add to node `index` (ports: per node)."""
    count = num_nodes(doc, runtime)
    result = {"JOB_COMPLETION_INDEX": str(index)}
    if any(e.get("name") == NODE_ADDRESSES for e in container.get("env") or []):
        result[NODE_ADDRESSES] = ",".join(f"{LOOPBACK}:{ports[('Node', i)]}" for i in range(count))
    policy = framework(runtime)
    port = str(ports[("Node", 0)])
    if policy == "torch":
        result.update(
            PET_NNODES=str(count),
            PET_NPROC_PER_NODE=num_proc_per_node(doc),
            PET_NODE_RANK=str(index),
            PET_MASTER_ADDR=LOOPBACK,
            PET_MASTER_PORT=port,
        )
    elif policy == "xgboost":
        gpus = _gpus(doc)
        result.update(
            DMLC_TRACKER_URI=LOOPBACK,
            DMLC_TRACKER_PORT=port,
            DMLC_TASK_ID=str(index),
            DMLC_NUM_WORKER=str(count * max(1, gpus)),
        )
    return result


def _gpus(doc: Mapping) -> int:
    resources = (doc["spec"].get("trainer") or {}).get("resourcesPerNode") or {}
    for section in ("limits", "requests"):
        for name, value in (resources.get(section) or {}).items():
            if "gpu" in name.lower():
                return int(value)
    return 0


def num_proc_per_node(doc: Mapping) -> str:
    """PET_NPROC_PER_NODE as the torch plugin computes it, with `auto` on CPU meaning 1 here.

    torchrun's own `auto` on a CPU-only pod starts one process per CPU of the machine, which on a
    laptop is many; the harness runs one, which is what a pod with `cpu: 1` gets on a cluster.
    """
    trainer = doc["spec"].get("trainer") or {}
    value = str(trainer.get("numProcPerNode", "auto"))
    resources = trainer.get("resourcesPerNode") or {}
    if value in ("auto", "cpu"):
        for section in ("limits", "requests"):
            res = resources.get(section) or {}
            if any("gpu" in name.lower() for name in res) and value == "auto":
                return "auto"
            if "cpu" in res:
                return str(max(1, _cpu_count(res["cpu"])))
        return "1"
    return value


def _cpu_count(quantity: object) -> int:
    text = str(quantity)
    if text.endswith("m"):
        return int(text[:-1]) // 1000
    return math.floor(float(text))


def runtimes_beside(manifest: Path) -> list[dict]:
    """The TrainingRuntimes and ClusterTrainingRuntimes in the YAML files beside a manifest (and
    in the `manifests/` folder above it, for a file in a kustomize Component), as a kustomization
    that lists them would apply them together."""
    folders = [manifest.parent]
    if manifest.parent.name != "manifests" and manifest.parent.parent.name == "manifests":
        folders.append(manifest.parent.parent)
    found = []
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            found += [d for d in manifests.load(path) if d.get("kind") in RUNTIME_KINDS]
    return found

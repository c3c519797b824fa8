"""Two workers against one on the mnist sample, TensorFlow and PyTorch: seconds and test accuracy.

    python -m benchmarks mnist_distributed      # about 3 to 5 minutes on 2 cores

Each job is the real manifest run by the harness as its operator would run it (tests.harness.jobs:
one process per replica on 127.0.0.1, TF_CONFIG or MASTER_ADDR/WORLD_SIZE/RANK set), shrunk to
the sample as mnist/tests/test_distributed.py and test_torch.py shrink them: --sample, EPOCHS
epochs, the manifests' global batch of GLOBAL_BATCH. The one-worker run is the same manifest with
`Worker.replicas: 0` (TFJob: the Chief alone; PyTorchJob: the Master alone, world size 1), so
both sides take the same steps over the same global batches.

`train_seconds` is the chief's/rank 0's own training loop (from metrics.json); `job_seconds` is
the whole job, process start and interpreter imports included. Threads: as the tests run them,
PyTorch replicas get OMP_NUM_THREADS=1 (one core each, like a pod with `cpu: 1`); TensorFlow
replicas keep TensorFlow's default (every core each). On a 2-core machine two replicas cannot
beat one: the figures show what distribution costs here, not a speed-up.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from tests.harness.containers import PathMap
from tests.harness.jobs import JobResult, run_job
from tests.harness.manifests import apply_overrides, check, load

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = REPO_ROOT / "mnist" / "manifests"
EPOCHS = 3
GLOBAL_BATCH = 64  # both manifests' --batch-size: 32 per replica with two
JOB_TIMEOUT = 600  # seconds per job; only stops a hang
SHOWN = re.compile(r"^(epoch|test_accuracy)=")  # the primary's lines echoed as progress


class Job(NamedTuple):
    manifest: str
    field: str  # the replica specs' field in the manifest
    primary: str  # the replica that writes the model and prints the metrics
    model_dir: str  # its --model-dir, on the job's volume
    env: dict[str, str]  # extra env for every replica, as the tests set it
    threads: str  # what `env` means for threads, for the figures


JOBS = {
    "tfjob": Job(
        "legacy-v1/tfjob.yaml",
        "tfReplicaSpecs",
        "Chief",
        "/mnt/pvc/mnist",
        {},
        "TensorFlow default",
    ),
    "pytorchjob": Job(
        "legacy-v1/pytorchjob.yaml",
        "pytorchReplicaSpecs",
        "Master",
        "/mnt/pvc/mnist-torch",
        {"OMP_NUM_THREADS": "1"},
        "OMP_NUM_THREADS=1 per replica",
    ),
}


def shrink(args: list[str]) -> list[str]:
    """A manifest's args on the sample with EPOCHS epochs and the global batch GLOBAL_BATCH."""
    kept = [a for a in args if not a.startswith(("--epochs", "--batch-size"))]
    return ["--sample", *kept, f"--epochs={EPOCHS}", f"--batch-size={GLOBAL_BATCH}"]


def smoke_job(name: str, workers: int) -> dict:
    """The manifest `name` shrunk to the sample, with `workers` Worker replicas."""
    job = JOBS[name]
    field, primary = job.field, job.primary
    doc = load(MANIFESTS / job.manifest)[0]
    specs = f"spec.{field}.{{}}.template.spec.containers[0].args"
    args = doc["spec"][field][primary]["template"]["spec"]["containers"][0]["args"]
    doc = apply_overrides(
        doc,
        {
            specs.format(primary): shrink(args),
            specs.format("Worker"): shrink(args),
            f"spec.{field}.Worker.replicas": workers,
        },
    )
    check(doc)
    return doc


def run_with_progress(
    doc: dict, workdir: Path, env: dict, paths: PathMap, primary: str, label: str
) -> JobResult:
    """run_job in a thread, echoing the primary's metric lines to stderr while it trains."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = run_job(
                doc, workdir=workdir, timeout=JOB_TIMEOUT, env=env, paths=paths
            )
        except BaseException as e:  # handed to the caller's thread below
            outcome["error"] = e

    thread = threading.Thread(target=target)
    log_path = workdir / "logs" / f"{primary.lower()}-0.log"
    shown = 0
    thread.start()
    while thread.is_alive():
        thread.join(timeout=2.0)
        lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
        for line in lines[shown:]:
            if SHOWN.match(line):
                print(f"  {label}: {line}", file=sys.stderr, flush=True)
        shown = len(lines)
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    result.raise_for_failure()
    return result


def measure(name: str, workers: int, root: Path) -> dict:
    """metrics.json of the job with `workers` workers, plus its job_seconds."""
    job = JOBS[name]
    label = f"{name} {job.primary} + {workers} Worker" if workers else f"{name} {job.primary} only"
    print(f"mnist_distributed: {label}, {EPOCHS} epochs on the sample ...", file=sys.stderr)
    workdir = root / f"{name}-{workers}"
    paths = PathMap(workdir)  # run_job adds the volume mounts: it says where /mnt/pvc went
    doc = smoke_job(name, workers)
    result = run_with_progress(doc, workdir, job.env, paths, job.primary, label)
    metrics = json.loads((paths.host(job.model_dir) / "metrics.json").read_text())
    # train_distributed says `workers`, train_torch `world_size`: the replicas that trained.
    replicas = metrics.get("workers", metrics.get("world_size"))
    if replicas != workers + 1:
        raise RuntimeError(f"{label}: trained on {replicas} replicas, expected {workers + 1}")
    return metrics | {"job_seconds": result.seconds}


def run() -> Iterator[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-mnist-distributed-") as tmp:
        # Keyed by replicas: the primary plus `replicas - 1` workers.
        runs = {(name, n): measure(name, n - 1, Path(tmp)) for name in JOBS for n in (2, 1)}
    for name, job in JOBS.items():
        label = {2: f"{name}_2_replicas", 1: f"{name}_1_replica"}
        common = {
            "epochs": EPOCHS,
            "global_batch": GLOBAL_BATCH,
            "threads": job.threads,
            "repeats": 1,
        }
        for replicas, reference in ((2, 1), (1, 2)):
            own, other = runs[name, replicas], runs[name, reference]
            yield {
                "name": f"{label[replicas]}_train_seconds",
                "value": round(own["train_seconds"], 2),
                "unit": "s",
                "compared_with": f"{label[reference]}_train_seconds "
                f"({other['train_seconds']:.2f} s)",
                "job_seconds": round(own["job_seconds"], 1),
                **common,
            }
            yield {
                "name": f"{label[replicas]}_test_accuracy",
                "value": round(own["test_accuracy"], 4),
                "unit": "fraction of 1000 test images",
                "compared_with": f"{label[reference]}_test_accuracy ({other['test_accuracy']:.4f})",
                **common,
            }

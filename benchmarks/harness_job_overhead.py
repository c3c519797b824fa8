"""What the harness adds to a 2-replica job: run_job against the same two processes by hand.

Both sides start two Python interpreters that exit at once, so the difference is the harness's
own work (validation-free manifest handling, ports, env, logs, polling, clean-up).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.harness.jobs import run_job

REPEATS = 7
SCRIPT = ["python", "-c", "pass"]


def two_replica_tfjob() -> dict:
    container = {"name": "tensorflow", "image": "example/overhead:1", "command": SCRIPT}
    replica = {
        "replicas": 1,
        "restartPolicy": "Never",
        "template": {"spec": {"containers": [container]}},
    }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "overhead"},
        "spec": {"runPolicy": {}, "tfReplicaSpecs": {"Chief": replica, "Worker": replica}},
    }


def by_hand() -> float:
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", "pass"]) for _ in range(2)]
    for proc in procs:
        proc.wait()
    return time.perf_counter() - started


def through_harness(workdir: Path) -> float:
    started = time.perf_counter()
    result = run_job(two_replica_tfjob(), workdir=workdir, timeout=120)
    elapsed = time.perf_counter() - started
    result.raise_for_failure()
    return elapsed


def run() -> Iterator[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        by_hand()  # warm the interpreter files into the page cache for both sides
        hand = [by_hand() for _ in range(REPEATS)]
        harness = [through_harness(Path(tmp) / f"run{i}") for i in range(REPEATS)]
    hand_s, harness_s = statistics.median(hand), statistics.median(harness)
    compared = (
        f"two `python -c pass` processes started with subprocess.Popen (median {hand_s:.3f} s)"
    )
    yield {
        "name": "local_job_2_replicas_seconds",
        "value": round(harness_s, 3),
        "unit": "s",
        "compared_with": compared,
        "repeats": REPEATS,
    }
    yield {
        "name": "local_job_2_replicas_overhead_seconds",
        "value": round(harness_s - hand_s, 3),
        "unit": "s",
        "compared_with": compared,
        "repeats": REPEATS,
    }

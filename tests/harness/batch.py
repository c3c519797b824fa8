"""batch/v1 Job: one pod run as a local process, retried up to backoffLimit as Kubernetes does.

Katib trialSpecs are often plain Jobs, and `python -m tests.harness run` takes them too;
`jobs.run_job` hands them here.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from tests.harness import operators, procs
from tests.harness.containers import PathMap, local_argv, local_cwd, local_env, mount_volumes
from tests.harness.results import JobResult, ReplicaResult

JOB_BACKOFF_LIMIT = 6  # Kubernetes' default spec.backoffLimit of a batch/v1 Job


def run_batch_job(
    doc: Mapping,
    *,
    workdir: Path,
    timeout: float = 1800.0,
    env: Mapping[str, str] | None = None,
    paths: PathMap | None = None,
    container_name: str = "",
    cancel: threading.Event | None = None,
    wrap: operators.WrapCommand | None = None,
) -> JobResult:
    """Run a batch/v1 Job's pod as one local process, retrying up to backoffLimit as Kubernetes.

    restartPolicy Never makes a new pod per attempt, so each attempt gets its own log
    (logs/pod-<attempt>.log) and the result's log is the last pod's; OnFailure restarts the
    container in the same pod, so attempts append to one log. Only the primary container runs.
    wrap: as in `jobs.run_job`, for the Job's one pod (replica "Pod" 0).
    """
    name = doc.get("metadata", {}).get("name", "job")
    spec = doc.get("spec", {})
    pod = spec["template"]["spec"]
    container = operators.pick_container(pod, container_name)
    restart = pod.get("restartPolicy", "Never")
    if restart not in ("Never", "OnFailure"):
        raise ValueError(f"Job {name}: restartPolicy must be Never or OnFailure, got {restart!r}")
    backoff = int(spec.get("backoffLimit", JOB_BACKOFF_LIMIT))
    deadline_s = spec.get("activeDeadlineSeconds")
    limit = min(timeout, float(deadline_s)) if deadline_s else timeout
    workdir.mkdir(parents=True, exist_ok=True)
    paths = paths or PathMap(workdir=workdir)
    mount_volumes(pod, container, paths)
    the_pod = operators.Replica("Pod", 0, container, pod, restart)
    wrapped = wrap(the_pod, operators.pod_labels(doc, the_pod), paths) if wrap else None
    argv = wrapped or local_argv(container, paths)
    proc_env = local_env(container, paths, env)
    cwd = local_cwd(container, paths)

    start = time.monotonic()
    replica = ReplicaResult("Pod", 0, log_path=workdir / "logs" / "pod-0.log")
    reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    for attempt in range(backoff + 1):
        if restart == "Never":
            replica.log_path = workdir / "logs" / f"pod-{attempt}.log"
        code = _run_once(argv, proc_env, cwd, replica.log_path, start + limit, cancel)
        replica.exit_codes.append(code if code is not None else 143)
        if code is None:
            replica.status = "Terminated"
            if deadline_s and limit < timeout:
                reason, message = (
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
            else:
                reason, message = "Timeout", f"Job {name} ran past {limit:g} s"
            break
        replica.status = "Succeeded" if code == 0 else "Failed"
        if code == 0:
            reason, message = "Complete", ""
            break
    return JobResult(
        kind="Job",
        name=name,
        succeeded=reason == "Complete",
        reason=reason,
        message=message,
        replicas=[replica],
        workdir=workdir,
        seconds=time.monotonic() - start,
        primary_key=("Pod", 0),
    )


def _run_once(
    argv: list[str],
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    deadline: float,
    cancel: threading.Event | None,
) -> int | None:
    """The exit code of one attempt (128+N for signal N, as the kubelet reports), or None when
    the deadline or a cancel stopped it."""
    proc = procs.start(argv, log_path=log_path, env=env, cwd=cwd)
    try:
        while True:
            try:
                code = proc.wait(timeout=0.1)
                return 128 - code if code < 0 else code
            except subprocess.TimeoutExpired:
                # Polling lets Ctrl-C in the main thread stop trials started in their own session.
                if time.monotonic() > deadline or (cancel is not None and cancel.is_set()):
                    return None
    finally:
        procs.stop(proc)

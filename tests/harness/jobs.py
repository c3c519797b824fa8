"""Run a Kubeflow training job on this machine the way its operator would run it on a cluster.

One process per replica on 127.0.0.1, each with the environment the operator sets (see
`operators`), the container's command mapped through `containers.PathMap`, and its log under
`<workdir>/logs/<type>-<index>.log` (every attempt appended after a header line).

Restarts follow the replica's restartPolicy: Never; OnFailure (non-zero exit); Always (any exit,
as the kubelet does, so an Always replica never completes: use it for PS); ExitCode (only the
retryable codes 130, 137, 138, 143; everything else is permanent). Every restart counts against
`runPolicy.backoffLimit` (no limit when unset) as in Training Operator v1.9
(core.PastBackoffLimit): the job fails with BackoffLimitExceeded as soon as the job's restarts
*reach* the limit, so a limit of N leaves N - 1 restarts that can still finish (a manifest that
must survive one killed worker sets backoffLimit: 2 or more). One deliberate difference: the
operator does not count ExitCode restarts (training-operator#2045), here they count, so a crash
loop ends. A restart waits 0.2 s, doubling up to 5 s (the kubelet's
CrashLoopBackOff, shortened). A plain batch/v1 Job is handed to `batch`.

TrainJob: the nodes are the pods of one Indexed Job in a JobSet. A failed node restarts in place
under its pod's restartPolicy (JobSet's default OnFailure) while the Job's backoffLimit (default
6) lasts; then the Job fails, and the TrainJob with it unless the runtime's JobSet
`failurePolicy.maxRestarts` (0 in the stock runtimes) allows recreating every node. The runtime
is one of `runtimes=` (the repository's own TrainingRuntimes) or a stock one (`trainer`); a
TrainJob naming any other fails before anything starts, with the runtime's name.

SparkApplication: spark-submit in local mode is the single "Driver" replica; OnFailure retries
`onFailureRetries` times (none when unset) after `onFailureRetryInterval` seconds; Always
resubmits after any exit.

When the job succeeds or fails, still-running replicas are stopped (cleanPodPolicy: Running).
`runPolicy.activeDeadlineSeconds` (TrainJob: `spec.activeDeadlineSeconds`) and `timeout` stop it too.

JobResult.reason reads like the operator's condition: `<Kind>Succeeded`, `<Kind>Failed`, with
`(BackoffLimitExceeded)` or `(DeadlineExceeded)` appended when that is why; TrainJob `Complete` or
`Failed (FailedJobs | ReachedMaxRestarts | DeadlineExceeded)`; SparkApplication `COMPLETED` or
`FAILED`; and the harness's own `Timeout` and `Cancelled`.

Fault injection: `kill_after={("Worker", 0): 3.0}` SIGKILLs that replica's process group once,
3 s after the replica first started, whichever attempt is running then (exit code 137, as the
kubelet reports an OOM or node kill); a callable instead of seconds is polled while the replica
runs and the kill happens the first time it returns True, e.g. once a checkpoint file exists.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.harness import batch, operators, procs, trainer
from tests.harness.containers import PathMap, local_argv, local_cwd, local_env, mount_volumes
from tests.harness.results import JobFailed, JobResult, ReplicaResult

POLL_SECONDS = 0.05

__all__ = ["JobFailed", "JobResult", "ReplicaResult", "replica_env", "run_job"]

# The pure env builder lives with the other operator rules; it is part of this module's API.
replica_env = operators.replica_env


@dataclass
class _Slot:
    """One replica while the job runs: what to start and the process of its current attempt."""

    spec: operators.Replica
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    result: ReplicaResult
    proc: subprocess.Popen | None = None
    first_start: float | None = None
    restart_at: float | None = None
    fault: float | Callable[[], bool] | None = None


@dataclass
class _Outcome:
    succeeded: bool
    reason: str
    message: str


KillAfter = Mapping[tuple[str, int], float | Callable[[], bool]]


def run_job(
    doc: dict,
    *,
    workdir: Path,
    timeout: float = 1800.0,
    env: Mapping[str, str] | None = None,
    paths: PathMap | None = None,
    kill_after: KillAfter | None = None,
    runtimes: Iterable[Mapping] = (),
    cancel: threading.Event | None = None,
    wrap: operators.WrapCommand | None = None,
) -> JobResult:
    """Run the job to its end and report it as the operator would; never leaves a process behind.

    env: extra variables for every replica (over the container's env, under the operator's).
    runtimes: TrainingRuntime / ClusterTrainingRuntime manifests a TrainJob may name, besides
    the stock ones (`trainer.STOCK_RUNTIMES`).
    kill_after: fault injection, see the module docstring.
    cancel: when set, the job is stopped and reported with reason "Cancelled" (Katib uses it
    to stop running trials once the goal is reached).
    wrap: called once per replica before anything starts, with the replica, its pod's labels
    (`operators.pod_labels`) and `paths`; the argv it returns replaces the container's command
    (Katib's metrics collector wraps the primary container so), None keeps it.
    """
    workdir = Path(workdir)
    if doc.get("kind") == "Job":
        if kill_after:
            raise ValueError("kill_after applies to training jobs, not a batch/v1 Job")
        return batch.run_batch_job(
            doc, workdir=workdir, timeout=timeout, env=env, paths=paths, cancel=cancel, wrap=wrap
        )
    workdir.mkdir(parents=True, exist_ok=True)
    paths = paths or PathMap(workdir)
    kind = operators.kind_of(doc)
    runtime = trainer.resolve(doc, runtimes) if kind == "TrainJob" else None
    slots = _prepare(doc, workdir, paths, env or {}, kill_after or {}, runtime, wrap)
    job = _Runner(doc, kind, slots, _limits(doc, kind, runtime))
    started = time.monotonic()
    try:
        outcome = job.run(timeout, cancel)
    finally:
        job.stop_all()
    result = JobResult(
        kind=kind,
        name=doc.get("metadata", {}).get("name", kind.lower()),
        succeeded=outcome.succeeded,
        reason=outcome.reason,
        message=outcome.message,
        replicas=[s.result for s in slots],
        workdir=workdir,
        seconds=time.monotonic() - started,
        primary_key=operators.primary(doc),
    )
    return result


def _prepare(
    doc: dict,
    workdir: Path,
    paths: PathMap,
    extra: Mapping[str, str],
    kill_after: KillAfter,
    runtime: Mapping | None,
    wrap: operators.WrapCommand | None = None,
) -> list[_Slot]:
    replicas = operators.plan(doc, runtime)
    unknown = set(kill_after) - {r.key for r in replicas}
    if unknown:
        raise ValueError(f"kill_after names replicas the job does not have: {sorted(unknown)}")
    # Mount first: a mount decides where the container paths in a command point to.
    for r in replicas:
        mount_volumes(r.pod_spec, r.container, paths)
    ports = {r.key: procs.free_port() for r in replicas}
    slots = []
    for r in replicas:
        container = r.container
        if doc["kind"] == "SparkApplication":
            container = {**operators.spark_container(doc), "env": r.container.get("env", [])}
        operator_env = operators.replica_env(doc, r.replica_type, r.index, ports, runtime)
        fields = trainer.fields(doc, r.index) if runtime is not None else {}
        result = ReplicaResult(
            r.replica_type,
            r.index,
            log_path=workdir / "logs" / f"{r.replica_type.lower()}-{r.index}.log",
        )
        wrapped = wrap(r, operators.pod_labels(doc, r), paths) if wrap is not None else None
        slots.append(
            _Slot(
                spec=r,
                argv=wrapped or local_argv(container, paths),
                env=local_env(container, paths, extra={**extra, **operator_env}, fields=fields),
                cwd=local_cwd(container, paths),
                result=result,
                fault=kill_after.get(r.key),
            )
        )
    return slots


@dataclass
class _Limits:
    backoff_limit: (
        int | None
    )  # restarts allowed in the whole job (TrainJob: its node Job); None: no limit
    deadline: float | None  # activeDeadlineSeconds
    gang_restarts: int | None  # TrainJob: JobSet failurePolicy.maxRestarts; None: not a gang
    retry_interval: float | None  # SparkApplication onFailureRetryInterval


def _limits(doc: dict, kind: str, runtime: Mapping | None) -> _Limits:
    spec = doc["spec"]
    if kind == "TrainJob":
        node = trainer.node(doc, runtime or {})
        restarts = trainer.max_restarts(runtime or {})
        return _Limits(node.backoff_limit, spec.get("activeDeadlineSeconds"), restarts, None)
    if kind == "SparkApplication":
        policy = spec.get("restartPolicy") or {}
        retries = policy.get("onFailureRetries", 0) if policy.get("type") == "OnFailure" else None
        return _Limits(retries, None, None, float(policy.get("onFailureRetryInterval", 0)))
    run_policy = spec.get("runPolicy") or {}
    return _Limits(
        run_policy.get("backoffLimit"), run_policy.get("activeDeadlineSeconds"), None, None
    )


class _Runner:
    """The reconcile loop: start, watch, restart, decide, for one job."""

    def __init__(self, doc: dict, kind: str, slots: list[_Slot], limits: _Limits) -> None:
        self.doc, self.kind, self.slots, self.limits = doc, kind, slots, limits
        self.name = doc.get("metadata", {}).get("name", kind.lower())
        self.namespace = doc.get("metadata", {}).get("namespace", "default")
        self.restarts = 0
        self.job_failures = 0  # TrainJob: failures of the trainer's Job since it was (re)created
        self.gang_restarts = 0  # TrainJob: times JobSet recreated every node
        self.outcome: _Outcome | None = None

    def run(self, timeout: float, cancel: threading.Event | None = None) -> _Outcome:
        start = time.monotonic()
        for slot in self.slots:
            self._start(slot)
        while True:
            now = time.monotonic()
            for slot in self.slots:
                self._tick(slot, now)
            outcome = self.outcome or self._decide()
            if outcome is None and self.limits.deadline and now - start >= self.limits.deadline:
                outcome = self._deadline_exceeded()
            if outcome is None and cancel is not None and cancel.is_set():
                outcome = _Outcome(False, "Cancelled", f"{self.kind} {self.name} was cancelled")
            if outcome is None and now - start >= timeout:
                outcome = _Outcome(
                    False, "Timeout", f"{self.kind} {self.name} ran past {timeout:g} s"
                )
            if outcome is not None:
                return outcome
            time.sleep(POLL_SECONDS)

    def _tick(self, slot: _Slot, now: float) -> None:
        if slot.proc is not None and slot.proc.poll() is not None:
            self._exited(slot, now)
        elif slot.proc is None and slot.restart_at is not None and now >= slot.restart_at:
            self._start(slot)
        elif slot.proc is not None and slot.fault is not None and _due(slot, now):
            slot.fault = None
            procs.kill(slot.proc, signal.SIGKILL)

    def _start(self, slot: _Slot) -> None:
        attempt = len(slot.result.exit_codes) + 1
        # One line, whatever the command: a shell script's own lines would read as log output
        # (and as `name=value` metrics to a StdOut collector).
        command = shlex.join(slot.argv).replace("\n", "\\n")
        _log_line(slot, f"===== {slot.result.name} attempt {attempt}: {command}")
        slot.proc = procs.start(
            slot.argv, log_path=slot.result.log_path, env=slot.env, cwd=slot.cwd
        )
        slot.first_start = slot.first_start or time.monotonic()
        slot.restart_at = None
        slot.result.status = "Running"

    def _exited(self, slot: _Slot, now: float) -> None:
        code = _exit_code(slot.proc.returncode)
        slot.proc = None
        slot.result.exit_codes.append(code)
        _log_line(slot, f"===== {slot.result.name} exited with code {code}")
        if self.limits.gang_restarts is not None:
            self._gang_exited(slot, code, now)
        elif not operators.should_restart(slot.spec.restart_policy, code):
            slot.result.status = "Succeeded" if code == 0 else "Failed"
        elif (
            self.limits.backoff_limit is not None and self.restarts + 1 >= self.limits.backoff_limit
        ):
            slot.result.status = "Failed"
            self.outcome = self._backoff_exceeded()
        else:
            self._schedule_restart(slot, now)

    def _schedule_restart(self, slot: _Slot, now: float) -> None:
        self.restarts += 1
        if self.limits.retry_interval is not None:
            delay = self.limits.retry_interval
        else:
            delay = min(5.0, 0.2 * 2 ** (slot.result.restarts))
        slot.restart_at = now + delay
        slot.result.status = "Restarting"

    def _gang_exited(self, slot: _Slot, code: int, now: float) -> None:
        if code == 0:
            slot.result.status = "Succeeded"
            return
        # The node's pod first: restarted in place under restartPolicy OnFailure while its Job
        # (all nodes are pods of one Indexed Job) has failures left under its backoffLimit.
        if operators.should_restart(slot.spec.restart_policy, code) and self.job_failures < (
            self.limits.backoff_limit or 0
        ):
            self.job_failures += 1
            self._schedule_restart(slot, now)
            return
        # The Job has failed; JobSet recreates every child Job while failurePolicy allows it.
        if self.gang_restarts >= (self.limits.gang_restarts or 0):
            slot.result.status = "Failed"
            return
        for other in self.slots:
            if other.proc is not None:
                self._terminate(other)
        self.gang_restarts += 1
        self.job_failures = 0
        for other in self.slots:
            other.restart_at = now + 0.2
            other.result.status = "Restarting"

    def _decide(self) -> _Outcome | None:
        failed = [s for s in self.slots if s.result.status == "Failed"]
        if failed:
            return self._failed(failed)
        statuses = {s.spec.key: s.result.status for s in self.slots}
        if operators.succeeded(self.doc, statuses):
            return self._succeeded()
        return None

    def _succeeded(self) -> _Outcome:
        if self.kind == "TrainJob":
            return _Outcome(
                True, "Complete", f"TrainJob {self.name} completed: all nodes succeeded"
            )
        if self.kind == "SparkApplication":
            return _Outcome(True, "COMPLETED", f"driver of {self.name} completed")
        msg = f"{self.kind} {self.namespace}/{self.name} successfully completed."
        return _Outcome(True, f"{self.kind}Succeeded", msg)

    def _failed(self, failed: list[_Slot]) -> _Outcome:
        first = failed[0].result
        if self.kind == "TrainJob":
            reason = (
                "Failed (ReachedMaxRestarts)"
                if self.limits.gang_restarts
                else "Failed (FailedJobs)"
            )
            msg = f"TrainJob {self.name}: node {first.index} failed with exit code {first.exit_codes[-1]}"
            return _Outcome(False, reason, msg)
        if self.kind == "SparkApplication":
            msg = f"driver of {self.name} failed with exit code {first.exit_codes[-1]}"
            return _Outcome(False, "FAILED", msg)
        n = sum(1 for s in failed if s.result.replica_type == first.replica_type)
        msg = (
            f"{self.kind} {self.namespace}/{self.name} has failed because {n} "
            f"{first.replica_type} replica(s) failed."
        )
        return _Outcome(False, f"{self.kind}Failed", msg)

    def _backoff_exceeded(self) -> _Outcome:
        if self.kind == "SparkApplication":
            msg = f"driver of {self.name} failed after {self.restarts} onFailureRetries"
            return _Outcome(False, "FAILED", msg)
        msg = f"Job {self.name} has failed because it has reached the specified backoff limit"
        return _Outcome(False, f"{self.kind}Failed (BackoffLimitExceeded)", msg)

    def _deadline_exceeded(self) -> _Outcome:
        if self.kind == "TrainJob":
            return _Outcome(
                False, "Failed (DeadlineExceeded)", "TrainJob exceeded its active deadline"
            )
        msg = f"Job {self.name} has failed because it was active longer than specified deadline"
        return _Outcome(False, f"{self.kind}Failed (DeadlineExceeded)", msg)

    def _terminate(self, slot: _Slot) -> None:
        code = _exit_code(procs.stop(slot.proc))
        slot.proc = None
        slot.result.exit_codes.append(code)
        slot.result.status = "Terminated"
        _log_line(slot, f"===== {slot.result.name} stopped by the harness (exit code {code})")

    def stop_all(self) -> None:
        """Stop what still runs: cleanPodPolicy Running, and the end of a timeout or an error."""
        for slot in self.slots:
            slot.restart_at = None
            if slot.proc is not None:
                self._terminate(slot)
            elif slot.result.status in ("Restarting", "Pending"):
                slot.result.status = "Terminated"


def _due(slot: _Slot, now: float) -> bool:
    if callable(slot.fault):
        return bool(slot.fault())
    return slot.first_start is not None and now - slot.first_start >= float(slot.fault)


def _exit_code(returncode: int | None) -> int:
    # Popen reports death by signal N as -N; the kubelet reports 128 + N.
    if returncode is None:
        return -1
    return 128 - returncode if returncode < 0 else returncode


def _log_line(slot: _Slot, text: str) -> None:
    slot.result.log_path.parent.mkdir(parents=True, exist_ok=True)
    with slot.result.log_path.open("a") as log:
        log.write(f"{text} [{time.strftime('%H:%M:%S')}]\n")

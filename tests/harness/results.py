"""What running a job returns: each replica's exit codes and log, and the job's condition.

Its own module so that `jobs` (training jobs) and `batch` (a batch/v1 Job) both return the same
classes without importing each other; `jobs` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LOG_TAIL_LINES = 40  # of each failed replica's log, in JobFailed's message

__all__ = ["JobFailed", "JobResult", "ReplicaResult"]


class JobFailed(RuntimeError):
    """A job ended without success; the message has the condition and the failed replicas' logs."""


@dataclass
class ReplicaResult:
    replica_type: str
    index: int
    exit_codes: list[int] = field(default_factory=list)
    log_path: Path = Path()
    status: str = "Pending"  # Succeeded, Failed, Running, Restarting, or Terminated by the harness

    @property
    def restarts(self) -> int:
        return max(0, len(self.exit_codes) - 1)

    @property
    def name(self) -> str:
        return f"{self.replica_type.lower()}-{self.index}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class JobResult:
    kind: str
    name: str
    succeeded: bool
    reason: str
    message: str
    replicas: list[ReplicaResult]
    workdir: Path
    seconds: float
    primary_key: tuple[str, int] = ("Worker", 0)  # from operators.primary when run_job builds it

    def replica(self, replica_type: str, index: int = 0) -> ReplicaResult:
        for r in self.replicas:
            if r.replica_type == replica_type and r.index == index:
                return r
        raise KeyError(f"{self.kind} {self.name} has no replica {replica_type}-{index}")

    def primary(self) -> ReplicaResult:
        return self.replica(*self.primary_key)

    def summary(self) -> str:
        rows = [("NAME", "STATUS", "RESTARTS", "EXIT CODES")]
        for r in self.replicas:
            codes = ",".join(str(c) for c in r.exit_codes) or "-"
            rows.append((f"{self.name}-{r.name}", r.status, str(r.restarts), codes))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
        lines.append(
            f"{self.kind} {self.name}: {self.reason}: {self.message} ({self.seconds:.1f} s)"
        )
        return "\n".join(line.rstrip() for line in lines)

    def raise_for_failure(self) -> None:
        if self.succeeded:
            return
        parts = [self.summary()]
        failed = [
            r
            for r in self.replicas
            if r.status == "Failed" or (r.exit_codes and r.exit_codes[-1] not in (0, 143))
        ]
        # A timeout or a deadline fails no replica: then the primary's log tells where it hung.
        for r in failed or [self.primary()]:
            tail = "\n".join(r.log().splitlines()[-LOG_TAIL_LINES:])
            parts.append(f"--- last lines of {r.name} ({r.log_path}) ---\n{tail}")
        raise JobFailed("\n".join(parts))

"""The cluster lane: apply a case's manifests to the kind cluster from tests/kind/up.sh and wait.

Used only by `pytest --kind`; every other run skips it. Nothing here runs without kubectl and
a reachable cluster, and `cluster_problem()` says precisely what is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

CONTEXT = "kind-kubeflow-cases"
# The condition that says a resource finished, per kind (the operators' status conditions).
DONE = {
    "TFJob": ("Succeeded", "Failed"),
    "PyTorchJob": ("Succeeded", "Failed"),
    "XGBoostJob": ("Succeeded", "Failed"),
    "TrainJob": ("Complete", "Failed"),
    "Experiment": ("Succeeded", "Failed"),
    "InferenceService": ("Ready", None),
}


def kubectl(*args: str, timeout: float = 120.0, check: bool = True) -> str:
    result = subprocess.run(
        ["kubectl", "--context", CONTEXT, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def cluster_problem() -> str | None:
    """None when the kind cluster answers; else why the lane cannot run."""
    if shutil.which("kubectl") is None:
        return "kubectl is not installed"
    try:
        kubectl("cluster-info", timeout=20)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        return f"no cluster at context {CONTEXT} (start one with tests/kind/up.sh): {err}"
    return None


def apply(manifest: Path, namespace: str = "default") -> None:
    kubectl("apply", "-n", namespace, "-f", str(manifest))


def wait_done(kind: str, name: str, namespace: str = "default", timeout: float = 1800.0) -> str:
    """Poll the resource's conditions until it succeeds or fails; return the final condition type."""
    good, bad = DONE[kind]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kubectl("get", kind.lower(), name, "-n", namespace, "-o", "json", check=False)
        conditions = json.loads(out).get("status", {}).get("conditions", []) if out else []
        true = {c["type"] for c in conditions if c.get("status") == "True"}
        if good in true:
            return good
        if bad and bad in true:
            return bad
        time.sleep(10)
    raise TimeoutError(f"{kind}/{name} did not finish in {timeout:.0f} s")

"""The cluster lane: apply a case's kustomization to the kind cluster from tests/kind/up.sh and wait.

Used only by `pytest --kind`; every other run skips it. Nothing that talks to the cluster runs
without kubectl and a reachable cluster, and `cluster_problem()` says precisely what is missing.
What the lane applies is what a user applies: `kubectl kustomize <case>/manifests` (plus, with
LEGACY_V1=1, the case's `legacy-v1` Component), so namespace, labels and image tags are the
kustomization's. The workloads in it are found without kubectl (`workloads`), so the tests are
collected on any machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

CONTEXT = os.environ.get("KIND_CONTEXT", "kind-kubeflow-cases")
TIMEOUT = float(os.environ.get("KIND_TIMEOUT", "1800"))  # seconds per workload
LEGACY_COMPONENT = "legacy-v1"  # the Component with the Training Operator v1 kinds

# The status condition that says a resource finished well, and the one that says it failed
# (Trainer v2.3 TrainJob: Complete / Failed; batch Job: Complete / Failed; Katib Experiment:
# Succeeded / Failed; KServe InferenceService: Ready).
DONE: dict[str, tuple[str, str | None]] = {
    "Job": ("Complete", "Failed"),
    "TrainJob": ("Complete", "Failed"),
    "Experiment": ("Succeeded", "Failed"),
    "InferenceService": ("Ready", None),
}
# Training Operator v1 (legacy-v1 Components only, LEGACY_V1=1).
LEGACY_DONE: dict[str, tuple[str, str | None]] = {
    "TFJob": ("Succeeded", "Failed"),
    "PyTorchJob": ("Succeeded", "Failed"),
    "XGBoostJob": ("Succeeded", "Failed"),
}
# A SparkApplication reports a state, not conditions (spark-operator v2.5.2 api/v1beta2).
SPARK_STATES = ("COMPLETED", "FAILED")
WAITED = {*DONE, *LEGACY_DONE, "SparkApplication"}
# Kinds of opt-in operators the default lane does not install (Seldon Core: SELDON=1 up.sh).
OPT_IN = {"SeldonDeployment"}
# Trainers first, then what tunes them, then what serves their model.
ORDER = ["Job", "TrainJob", "SparkApplication", *LEGACY_DONE, "Experiment", "InferenceService"]


def kubectl(
    *args: str, timeout: float = 120.0, check: bool = True, stdin: str | None = None
) -> str:
    result = subprocess.run(
        ["kubectl", "--context", CONTEXT, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
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


def legacy_requested() -> bool:
    return os.environ.get("LEGACY_V1") == "1"


# --- What a kustomization holds, read without kubectl (for test collection) ---


def _kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text()) or {}


def documents(folder: Path) -> list[dict[str, Any]]:
    """The objects a kustomization folder lists, following its resources and components.

    Remote resources (URLs) are skipped. Names are as written: kustomize's namePrefix or
    nameSuffix of the top folder are applied by `rendered_name`.
    """
    found: list[dict[str, Any]] = []
    config = _kustomization(folder)
    for entry in [*config.get("resources", []), *config.get("components", [])]:
        if "://" in entry or entry.startswith("github.com/"):
            continue
        path = folder / entry
        if path.is_dir():
            found += documents(path)
        elif path.suffix in (".yaml", ".yml"):
            found += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return found


def workloads(docs: Iterable[dict[str, Any]], legacy: bool = False) -> list[tuple[str, str]]:
    """(kind, name) of every object the lane waits for, trainers first, servers last."""
    kinds = {*DONE, "SparkApplication", *(LEGACY_DONE if legacy else ())}
    found = {(d["kind"], d["metadata"]["name"]) for d in docs if d.get("kind") in kinds}
    return sorted(found, key=lambda kn: (ORDER.index(kn[0]), kn[1]))


def rendered_name(folder: Path, name: str) -> str:
    config = _kustomization(folder)
    return f"{config.get('namePrefix', '')}{name}{config.get('nameSuffix', '')}"


# --- The cluster side ---


def render(manifests: Path, components: Iterable[str] = ()) -> list[dict[str, Any]]:
    """`kubectl kustomize` of a case's manifests folder, with extra Components of that folder.

    The Components go in through a throwaway overlay in a temporary folder; its paths to the
    case's folder are relative, as kustomize requires. The overlay repeats the base's namespace
    and labels: a Component listed by an overlay does not get the base's.
    """
    components = list(components)
    if not components:
        out = kubectl("kustomize", str(manifests))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            base = os.path.relpath(manifests.resolve(), tmp)
            overlay = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [base],
                "components": [f"{base}/{c}" for c in components],
            }
            config = _kustomization(manifests)
            overlay.update({k: config[k] for k in ("namespace", "labels") if k in config})
            (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
            out = kubectl("kustomize", tmp)
    return [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]


def supporting(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the workloads need beside themselves: PVCs, TrainingRuntimes, ServiceAccounts..."""
    return [d for d in docs if d.get("kind") not in WAITED | OPT_IN]


def find(docs: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise LookupError(f"{kind}/{name} is not in the rendered kustomization")


def apply(docs: Iterable[dict[str, Any]]) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(list(docs)))


def delete(docs: Iterable[dict[str, Any]]) -> None:
    """Delete what apply made; never raises (cleanup runs also after a failure)."""
    docs = list(docs)
    if docs:
        stdin = yaml.safe_dump_all(docs)
        kubectl("delete", "-f", "-", "--ignore-not-found", timeout=300, check=False, stdin=stdin)


def outcome(kind: str, obj: dict[str, Any]) -> str | None:
    """'good' or 'bad' when the object has finished one way or the other; None while it runs."""
    status = obj.get("status") or {}
    if kind == "SparkApplication":
        state = (status.get("applicationState") or {}).get("state")
        return {SPARK_STATES[0]: "good", SPARK_STATES[1]: "bad"}.get(state)
    good, bad = {**DONE, **LEGACY_DONE}[kind]
    true = {c.get("type") for c in status.get("conditions", []) if c.get("status") == "True"}
    if good in true:
        return "good"
    if bad and bad in true:
        return "bad"
    return None


def wait_done(kind: str, name: str, namespace: str, timeout: float = TIMEOUT) -> str:
    """Poll until the resource succeeds or fails; 'good' or 'bad', else TimeoutError with its status."""
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        out = kubectl("get", kind.lower(), name, "-n", namespace, "-o", "json", check=False)
        obj = json.loads(out) if out.strip() else {}
        result = outcome(kind, obj)
        if result:
            return result
        time.sleep(10)
    last = json.dumps(obj.get("status", {}), indent=1)[:2000]
    raise TimeoutError(f"{kind}/{name} did not finish in {timeout:.0f} s; last status:\n{last}")


def diagnose(namespace: str) -> str:
    """Pods and recent events of the namespace, for the message of a failed wait."""
    pods = kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False)
    events = kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False)
    return f"pods:\n{pods}\nlast events:\n" + "\n".join(events.splitlines()[-20:])

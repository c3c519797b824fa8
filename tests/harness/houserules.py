"""The house rules DESIGN.md sets on every manifest, on top of its schema; checked once, by the
contract, for every case (`contract.house_rules`).

- Every container of the case runs the case's image, as non-root (its own
  `securityContext.runAsNonRoot` or its pod's), without privilege escalation
  (`allowPrivilegeEscalation: false` on the container), with resource requests and limits.
- No literal credential: no env var whose name says it holds a secret (`..._SECRET...`,
  `...PASSWORD...`, `...TOKEN...`, `..._KEY`) with a `value`, and no key such as `password:` or
  `aws_secret_access_key:` with a value anywhere; such values come from Secrets (`valueFrom`,
  `envFrom`, a kustomize secretGenerator reading a file git ignores).

Where the containers are, by kind: a pod template's `containers` (Jobs, the Training Operator v1
jobs, Deployments, TrainingRuntimes, Seldon's componentSpecs, a Katib trialSpec); an
InferenceService's predictor and explainer, as `containers` or as a `model` on a serving runtime
(whose image is the runtime's, named by KServe, so only its security and sizes are the case's);
a TrainJob's trainer, sized by `resourcesPerNode` and
secured by the `node` container of its runtimePatches or of its runtime; a SparkApplication's
driver and executor (`cores`, `coreLimit`, `memory` are its sizes). Seldon's prebuilt explainer
image (an explainer `containerSpec` naming no command of ours) is not the case's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from tests.harness import manifests, trainer

SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|(^|_)(API_|ACCESS_)?KEY$", re.I)
SECRET_KEYS = {"password", "token", "aws_secret_access_key", "aws_access_key_id", "secretkey"}
NOT_WORKLOADS = {"Kustomization", "Component", "PersistentVolumeClaim", "ServiceAccount", "Role",
                 "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service",
                 "VirtualService"}  # fmt: skip


def check_file(path: Path, image: str, root: Path) -> list[str]:
    """Every house-rule problem of one YAML file, labelled by its path below `root`'s parent."""
    docs = manifests.load(path)
    # The runtimes beside the file, read only when a TrainJob may need one.
    needs_runtimes = any(d.get("kind") in ("TrainJob", "Experiment") for d in docs)
    runtimes = trainer.runtimes_beside(path) if needs_runtimes else []
    problems = []
    for doc in docs:
        label = f"{path.relative_to(root.parent).as_posix()} {doc.get('kind')}/" + str(
            (doc.get("metadata") or {}).get("name", "?")
        )
        problems += [f"{label}: {p}" for p in check(doc, image, runtimes)]
    return problems


def check(doc: Mapping, image: str, runtimes: Iterable[Mapping] = ()) -> list[str]:
    """Every house-rule problem of one manifest, each as "<where>: <what is wrong>"."""
    problems = list(_credentials(doc))
    if doc.get("kind") in NOT_WORKLOADS:
        return problems
    found = list(_containers(doc, list(runtimes)))
    if not found and doc.get("kind") != "Secret":
        problems.append("no container found: the house rules cannot be checked")
    for where, container, pod_context, sizes in found:
        context = {**pod_context, **(container.get("securityContext") or {})}
        if container.get("image") not in (None, image):
            problems.append(f"{where}: image {container.get('image')}, not the case's {image}")
        if context.get("runAsNonRoot") is not True:
            problems.append(f"{where}: set securityContext.runAsNonRoot: true")
        if (container.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: set securityContext.allowPrivilegeEscalation: false")
        missing = [k for k in sizes if not k[1]]
        if missing:
            problems.append(f"{where}: needs {' and '.join(k for k, _ in missing)}")
    return problems


def _containers(doc: Mapping, runtimes: list[Mapping]) -> Iterator[tuple[str, dict, dict, list]]:
    """(where, container, its pod's securityContext, [(size name, present)]) of every container."""
    kind = doc.get("kind")
    if kind == "SparkApplication":
        spec = doc.get("spec") or {}
        for role in ("driver", "executor"):
            pod = spec.get(role) or {}
            sizes = [(f"{role}.{k}", k in pod) for k in ("cores", "coreLimit", "memory")]
            container = {"image": spec.get("image"), "securityContext": pod.get("securityContext")}
            yield f"spec.{role}", container, {}, sizes
        return
    if kind == "TrainJob":
        yield from _trainjob(doc, "spec.trainer", runtimes)
        return
    if kind == "Experiment":
        trial = ((doc.get("spec") or {}).get("trialTemplate") or {}).get("trialSpec") or {}
        if trial.get("kind") == "TrainJob":
            yield from _trainjob(trial, "spec.trialTemplate.trialSpec.spec.trainer", runtimes)
            return
    if kind == "InferenceService":
        # `model` is the container KServe builds from a ServingRuntime: no image of ours.
        for role, component in (doc.get("spec") or {}).items():
            if isinstance(component, Mapping) and isinstance(component.get("model"), Mapping):
                pod_context = component.get("securityContext") or {}
                yield _sized(f"spec.{role}.model", component["model"], pod_context)
    for where, pod in manifests.find(doc, lambda d: isinstance(d.get("containers"), list)):
        pod_context = pod.get("securityContext") or {}
        for i, container in enumerate(pod["containers"]):
            yield _sized(f"{where}.containers[{i}]".lstrip("."), container, pod_context)


def _sized(where: str, container: Mapping, pod_context: Mapping) -> tuple[str, dict, dict, list]:
    resources = container.get("resources") or {}
    sizes = [
        ("resources.requests", "requests" in resources),
        ("resources.limits", "limits" in resources),
    ]
    return where, dict(container), dict(pod_context), sizes


def _trainjob(job: Mapping, where: str, runtimes: list[Mapping]) -> Iterator[tuple]:
    spec = job.get("spec") or {}
    node = trainer.node(job, trainer.resolve(job, runtimes))
    patched = [c for _, c in manifests.find(spec.get("runtimePatches") or [], _is_node)]
    contexts = [c["securityContext"] for c in patched if c.get("securityContext")]
    context = contexts[0] if contexts else node.container.get("securityContext") or {}
    resources = (spec.get("trainer") or {}).get("resourcesPerNode") or {}
    sizes = [
        ("resourcesPerNode.requests", "requests" in resources),
        ("resourcesPerNode.limits", "limits" in resources),
    ]
    container = {"image": node.container.get("image"), "securityContext": context}
    yield where, container, node.pod_spec.get("securityContext") or {}, sizes


def _is_node(d: Mapping) -> bool:
    return d.get("name") == trainer.NODE and "image" not in d


def _credentials(doc: object, path: str = "") -> Iterator[str]:
    if isinstance(doc, Mapping):
        name = doc.get("name")
        if isinstance(name, str) and "value" in doc and SECRET_NAME.search(name) and doc["value"]:
            yield f"{path}: env {name} holds a literal value; take it from a Secret (valueFrom)"
        for key, value in doc.items():
            if str(key).lower() in SECRET_KEYS and isinstance(value, str | int) and value != "":
                yield f"{path}.{key}: a literal credential; keep it in a Secret, out of the repository"
            yield from _credentials(value, f"{path}.{key}" if path else str(key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _credentials(value, f"{path}[{i}]")

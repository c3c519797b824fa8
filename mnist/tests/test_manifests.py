"""The mnist manifests as a cluster would get them: secure containers, one image, kustomize renders.

Strict schema validation runs in tests/test_contract.py; these are the house rules DESIGN.md sets
on top (non-root, no privilege escalation, requests and limits, the image named once) and the
GPU component.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.harness import cases, manifests

CASE_DIR = Path(__file__).resolve().parents[1]
MANIFESTS = CASE_DIR / "manifests"
IMAGE = cases.load_case(CASE_DIR).image
FILES = sorted(p for p in MANIFESTS.glob("*.yaml") if p.name not in {"pipeline.yaml"})
RBAC = {"ServiceAccount", "Role", "RoleBinding"}


def workload_docs() -> list[tuple[str, dict]]:
    docs = []
    for path in FILES:
        for doc in manifests.load(path):
            # RBAC objects run nothing: rbac.yaml is checked in test_cluster_path.py.
            if doc.get("kind") not in {"Kustomization", "PersistentVolumeClaim"} | RBAC:
                docs.append((path.name, doc))
    return docs


@pytest.mark.parametrize(
    ("name", "doc"), workload_docs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_container_is_secure_and_sized(name: str, doc: dict) -> None:
    found = list(manifests.containers(doc))
    assert found, f"{name}: no container"
    for where, container in found:
        assert container["image"] == IMAGE, f"{name}{where}: image {container['image']}"
        if doc["kind"] == "TrainJob":
            # The trainer's resources are per node; its securityContext comes from runtimePatches.
            sized = doc["spec"]["trainer"]["resourcesPerNode"]
            secured = [
                c
                for _, c in manifests.find(
                    doc["spec"]["runtimePatches"], lambda d: d.get("name") == "node"
                )
                if "securityContext" in c
            ]
            assert secured, f"{name}: no securityContext patched onto the node container"
            context = secured[0]["securityContext"]
        else:
            sized = container.get("resources", {})
            context = container.get("securityContext", {})
        assert {"requests", "limits"} <= set(sized), f"{name}{where}: needs requests and limits"
        assert context.get("allowPrivilegeEscalation") is False, f"{name}{where}"
        assert context.get("runAsNonRoot") is True, f"{name}{where}"


def test_kustomization_lists_every_manifest_and_names_the_image() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in FILES if p.name != "kustomization.yaml"}
    name, _, tag = IMAGE.rpartition(":")
    assert kustomization["images"] == [{"name": name, "newTag": tag}]


def test_no_credentials_in_the_manifests() -> None:
    for path in MANIFESTS.rglob("*.yaml"):
        text = path.read_text().lower()
        for word in ("aws_secret_access_key:", "password:", "token:"):
            assert word not in text, f"{path}: {word} looks like a literal credential"


def kustomize(folder: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize rendering is checked where it is")
    out = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def gpu_limits(docs: list[dict]) -> list[str]:
    return [
        f"{d['kind']}/{d['metadata']['name']}{where}"
        for d in docs
        for where, _ in manifests.find(d, lambda node: "nvidia.com/gpu" in node)
    ]


def test_kustomize_renders_everything_in_one_namespace_without_gpus() -> None:
    docs = kustomize(MANIFESTS)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "PersistentVolumeClaim",
            "TFJob",
            "PyTorchJob",
            "TrainJob",
            "Experiment",
            "InferenceService",
            "SeldonDeployment",
            *sorted(RBAC),
        ]
    )
    assert len({d["metadata"]["namespace"] for d in docs}) == 1
    assert gpu_limits(docs) == []


def test_gpu_component_asks_a_gpu_for_every_trainer_and_server(tmp_path: Path) -> None:
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    kustomization = yaml.safe_load((copy / "kustomization.yaml").read_text())
    kustomization["components"] = ["gpu"]
    (copy / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    docs = kustomize(copy)
    limited = gpu_limits(docs)
    owners = sorted({entry.split(".", 1)[0] for entry in limited})
    assert owners == [
        "Experiment/mnist-random",
        "InferenceService/mnist",
        "PyTorchJob/mnist-torch",
        "TFJob/mnist",
        "TrainJob/mnist-trainjob",
    ], limited
    assert len(limited) == 8  # chief + worker, master + worker, trainer, trial chief + worker, isvc
    for doc in docs:
        assert manifests.validate(doc) == [], doc["kind"]

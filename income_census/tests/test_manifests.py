"""The income_census manifests as a cluster would get them: secure, sized, one image, kustomize.

Strict schema validation runs in tests/test_contract.py; these are the house rules DESIGN.md sets
on top (non-root, no privilege escalation, requests and limits, the image named once).
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
FILES = sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "pipeline.yaml")


WORKLOADS = [
    (path.name, doc)
    for path in FILES
    for doc in manifests.load(path)
    if doc.get("kind") not in {"Kustomization", "PersistentVolumeClaim"}
]


@pytest.mark.parametrize(("name", "doc"), WORKLOADS, ids=[n for n, _ in WORKLOADS])
def test_every_container_is_secure_and_sized(name: str, doc: dict) -> None:
    found = list(manifests.containers(doc))
    assert found, f"{name}: no container"
    for where, container in found:
        if where.endswith(".explainer") and doc["kind"] == "SeldonDeployment":
            continue  # Seldon's own prebuilt explainer image, not ours
        assert container["image"] == IMAGE, f"{name}{where}: image {container['image']}"
        sized = container.get("resources", {})
        assert {"requests", "limits"} <= set(sized), f"{name}{where}: needs requests and limits"
        context = container.get("securityContext", {})
        assert context.get("allowPrivilegeEscalation") is False, f"{name}{where}"
        assert context.get("runAsNonRoot") is True, f"{name}{where}"


def test_kustomization_lists_every_manifest_and_names_the_image() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {
        p.name for p in FILES if p.name != "kustomization.yaml"
    }
    name, _, tag = IMAGE.rpartition(":")
    assert kustomization["images"] == [{"name": name, "newTag": tag}]


def test_no_credentials_in_the_manifests() -> None:
    for path in MANIFESTS.rglob("*.yaml"):
        text = path.read_text().lower()
        for word in ("aws_secret_access_key:", "password:", "token:"):
            assert word not in text, f"{path}: {word} looks like a literal credential"


def test_kustomize_renders_everything_in_one_namespace() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize rendering is checked where it is")
    out = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len({d["metadata"]["namespace"] for d in docs}) == 1
    for doc in docs:
        assert manifests.validate(doc) == [], doc["kind"]

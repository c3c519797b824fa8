"""The income_census manifests as a cluster would get them: secure, sized, one image, kustomize.

Strict schema validation and the house rules DESIGN.md sets on top (non-root, no privilege
escalation, requests and limits, the case's image, no literal credentials) run for every case in
tests/test_contract.py (tests/harness/houserules.py); these are what is particular to this case,
and what the default kustomization and the opt-in Components (legacy-v1/, seldon/) render.
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
COMPONENTS = ("legacy-v1", "seldon")
# The Training Operator v1 kinds (kubeflow.org/v1), which Kubeflow no longer installs.
V1_KINDS = {"TFJob", "PyTorchJob", "XGBoostJob", "MXJob", "PaddleJob", "JAXJob", "MPIJob"}
KUSTOMIZE_KINDS = {"Kustomization", "Component"}
RBAC = {"ServiceAccount", "Role", "RoleBinding"}  # run nothing; see test_cluster_path.py

WORKLOADS = [
    (path.relative_to(MANIFESTS).as_posix(), doc)
    for path in sorted(p for p in MANIFESTS.rglob("*.yaml") if p.name != "pipeline.yaml")
    for doc in manifests.load(path)
    if doc.get("kind") not in {*KUSTOMIZE_KINDS, *RBAC, "PersistentVolumeClaim"}
]


def test_kustomization_lists_every_manifest_and_names_the_image() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {
        p.name for p in FILES if p.name != "kustomization.yaml"
    }
    name, _, tag = IMAGE.rpartition(":")
    assert kustomization["images"] == [{"name": name, "newTag": tag}]


def test_the_default_lists_no_training_operator_v1_kind_nor_seldon() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    kinds = {
        doc["kind"]
        for name in kustomization["resources"]
        for doc in manifests.load(MANIFESTS / name)
    }
    assert {"TrainJob", "Experiment", "InferenceService"} <= kinds, kinds
    assert not kinds & V1_KINDS and "SeldonDeployment" not in kinds
    assert not kustomization.get("components")  # both are opt-in


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_validates_and_lists_its_files(component: str) -> None:
    folder = MANIFESTS / component
    (config,) = manifests.load(folder / "kustomization.yaml")
    assert manifests.validate(config) == []
    assert (config["apiVersion"], config["kind"]) == (
        "kustomize.config.k8s.io/v1alpha1",
        "Component",
    )
    assert config["resources"], f"{component}: lists nothing"
    for name in config["resources"]:
        assert (folder / name).is_file(), f"{component} lists {name}, which is not there"
        for doc in manifests.load(folder / name):
            assert manifests.validate(doc) == [], f"{component}/{name}"
    # Every YAML of the folder is listed: nothing in it is left out by mistake.
    assert {p.name for p in folder.glob("*.yaml")} == {"kustomization.yaml", *config["resources"]}


def test_legacy_v1_swaps_the_trainjob_for_the_xgboostjob() -> None:
    (config,) = manifests.load(MANIFESTS / "legacy-v1" / "kustomization.yaml")
    assert {d["kind"] for d in manifests.load(MANIFESTS / "legacy-v1" / "xgboostjob.yaml")} == {
        "XGBoostJob"
    }
    (trainjob,) = manifests.load(MANIFESTS / "trainjob.yaml")
    (patch,) = config["patches"]
    deleted = yaml.safe_load(patch["patch"])
    assert deleted == {
        "$patch": "delete",
        "apiVersion": trainjob["apiVersion"],
        "kind": "TrainJob",
        "metadata": {"name": trainjob["metadata"]["name"]},
    }


def test_the_seldon_component_holds_the_seldondeployment() -> None:
    (config,) = manifests.load(MANIFESTS / "seldon" / "kustomization.yaml")
    assert config["resources"] == ["seldondeployment.yaml"]
    kinds = {d["kind"] for d in manifests.load(MANIFESTS / "seldon" / "seldondeployment.yaml")}
    assert kinds == {"SeldonDeployment"}
    assert "patches" not in config  # it adds, and changes nothing of the default


def kustomize(folder: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize rendering is checked where it is")
    out = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_kustomize_renders_everything_in_one_namespace() -> None:
    docs = kustomize(MANIFESTS)
    assert len({d["metadata"]["namespace"] for d in docs}) == 1
    for doc in docs:
        assert manifests.validate(doc) == [], doc["kind"]
    kinds = {d["kind"] for d in docs}
    assert not kinds & V1_KINDS and "SeldonDeployment" not in kinds, kinds
    assert "TrainJob" in kinds


@pytest.mark.parametrize(
    ("components", "added", "removed"),
    [
        (["legacy-v1"], {"XGBoostJob"}, {"TrainJob"}),
        (["seldon"], {"SeldonDeployment"}, set()),
        (["legacy-v1", "seldon"], {"XGBoostJob", "SeldonDeployment"}, {"TrainJob"}),
    ],
    ids=["legacy-v1", "seldon", "both"],
)
def test_kustomize_renders_the_components_when_asked(
    tmp_path: Path, components: list[str], added: set[str], removed: set[str]
) -> None:
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    kustomization = yaml.safe_load((copy / "kustomization.yaml").read_text())
    kustomization["components"] = components
    (copy / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    default = {d["kind"] for d in kustomize(MANIFESTS)}
    docs = kustomize(copy)
    assert {d["kind"] for d in docs} == (default - removed) | added
    assert len({d["metadata"]["namespace"] for d in docs}) == 1
    for doc in docs:
        assert manifests.validate(doc) == [], doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubeflow-case-studies"

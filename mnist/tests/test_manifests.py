"""The mnist manifests as a cluster would get them: secure containers, one image, kustomize renders.

Strict schema validation and the house rules DESIGN.md sets on top (non-root, no privilege
escalation, requests and limits, the case's image, no literal credentials) run for every case in
tests/test_contract.py (tests/harness/houserules.py); these are what is particular to this case and
the GPU component.
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
# The opt-in kustomize Components' own manifests.
COMPONENT_FILES = sorted(
    p for folder in ("legacy-v1", "seldon") for p in (MANIFESTS / folder).glob("*.yaml")
)
RBAC = {"ServiceAccount", "Role", "RoleBinding"}
LEGACY_KINDS = {"TFJob", "PyTorchJob", "XGBoostJob", "SeldonDeployment"}


def workload_docs() -> list[tuple[str, dict]]:
    docs = []
    for path in FILES + COMPONENT_FILES:
        for doc in manifests.load(path):
            # RBAC objects run nothing: rbac.yaml is checked in test_cluster_path.py.
            if (
                doc.get("kind")
                not in {"Kustomization", "Component", "PersistentVolumeClaim"} | RBAC
            ):
                docs.append((path.name, doc))
    return docs


def test_kustomization_lists_every_manifest_and_names_the_image() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in FILES if p.name != "kustomization.yaml"}
    name, _, tag = IMAGE.rpartition(":")
    assert kustomization["images"] == [{"name": name, "newTag": tag}]


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
            "TrainingRuntime",
            "TrainJob",
            "TrainJob",
            "Experiment",
            "InferenceService",
            *sorted(RBAC),
        ]
    )
    # What a cluster installed from Kubeflow's manifests today runs: no Training Operator v1
    # kind and no SeldonDeployment unless a Component asks for them.
    assert not LEGACY_KINDS & set(kinds)
    assert len({d["metadata"]["namespace"] for d in docs}) == 1
    assert gpu_limits(docs) == []


def with_components(tmp_path: Path, *components: str) -> list[dict]:
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    kustomization = yaml.safe_load((copy / "kustomization.yaml").read_text())
    kustomization["components"] = list(components)
    (copy / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return kustomize(copy)


def test_the_legacy_component_swaps_the_trainjobs_for_v1_jobs(tmp_path: Path) -> None:
    docs = with_components(tmp_path, "legacy-v1", "seldon")
    named = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert [n for n in named if n[0] in LEGACY_KINDS] == [
        ("PyTorchJob", "mnist-torch"),
        ("SeldonDeployment", "mnist"),
        ("TFJob", "mnist"),
    ]
    # A cluster without Trainer v2 would refuse these kinds: they are gone.
    assert not [n for n in named if n[0] in ("TrainJob", "TrainingRuntime")]
    experiments = [d for d in docs if d["kind"] == "Experiment"]
    assert [e["metadata"]["name"] for e in experiments] == ["mnist-random-tfjob"]
    assert experiments[0]["spec"]["trialTemplate"]["trialSpec"]["kind"] == "TFJob"
    # The same search as the default Experiment, only the trials' kind differs.
    default = manifests.load(MANIFESTS / "katib-experiment.yaml")[0]["spec"]
    for key in ("objective", "algorithm", "parameters", "metricsCollectorSpec"):
        assert experiments[0]["spec"][key] == default[key], key
    for doc in docs:
        assert manifests.validate(doc) == [], doc["kind"]


def test_gpu_component_asks_a_gpu_for_every_trainer_and_server(tmp_path: Path) -> None:
    docs = with_components(tmp_path, "gpu")
    limited = gpu_limits(docs)
    owners = sorted({entry.split(".", 1)[0] for entry in limited})
    assert owners == [
        "Experiment/mnist-random",
        "InferenceService/mnist",
        "TrainJob/mnist",
        "TrainJob/mnist-torch",
    ], limited
    assert len(limited) == 4  # per node of each TrainJob and trial, and the server
    for doc in docs:
        assert manifests.validate(doc) == [], doc["kind"]
    # With the legacy Component first, its jobs get theirs: chief + worker, master + worker,
    # and the TFJob trials' chief + worker.
    legacy = gpu_limits(with_components(tmp_path / "legacy", "legacy-v1", "gpu"))
    assert sorted({e.split(".", 1)[0] for e in legacy}) == [
        "Experiment/mnist-random-tfjob",
        "InferenceService/mnist",
        "PyTorchJob/mnist-torch",
        "TFJob/mnist",
    ]
    assert len(legacy) == 7

"""The imdb_sentiment manifests as a cluster would get them: one image, kustomize renders, the
runtime is the repository's, and what the jobs write is what the server reads.

Strict schema validation and the house rules DESIGN.md sets on top (non-root, no privilege
escalation, requests and limits, the case's image, no literal credentials) run for every case in
tests/test_contract.py (tests/harness/houserules.py); these are what is particular to this case.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.harness import cases, manifests, trainer

CASE_DIR = Path(__file__).resolve().parents[1]
MANIFESTS = CASE_DIR / "manifests"
IMAGE = cases.load_case(CASE_DIR).image
FILES = sorted(p for p in MANIFESTS.glob("*.yaml") if p.name not in {"pipeline.yaml"})
RBAC = {"ServiceAccount", "Role", "RoleBinding"}
LEGACY_KINDS = {"TFJob", "PyTorchJob", "XGBoostJob", "SeldonDeployment"}
RUNTIME = MANIFESTS / "tensorflow-runtime.yaml"
# The repository's TensorFlow runtime as the template case defines it, when it is beside this one.
TEMPLATE_RUNTIME = CASE_DIR.parent / "mnist" / "manifests" / "tensorflow-runtime.yaml"


def one(path: Path, kind: str) -> dict:
    (doc,) = [d for d in manifests.load(path) if d.get("kind") == kind]
    return doc


# Copied from mnist.tests.test_manifests.test_kustomization_lists_every_manifest_and_names_the_image
def test_kustomization_lists_every_manifest_and_names_the_image() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in FILES if p.name != "kustomization.yaml"}
    name, _, tag = IMAGE.rpartition(":")
    assert kustomization["images"] == [{"name": name, "newTag": tag}]


# Copied from mnist.tests.test_manifests.kustomize
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
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "PersistentVolumeClaim",
            "TrainingRuntime",
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
    for doc in docs:
        assert manifests.validate(doc) == [], doc["kind"]


# Copied from mnist.tests.test_manifests.with_components
def with_components(tmp_path: Path, *components: str) -> list[dict]:
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    kustomization = yaml.safe_load((copy / "kustomization.yaml").read_text())
    kustomization["components"] = list(components)
    (copy / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return kustomize(copy)


def test_the_legacy_component_swaps_the_trainjob_for_the_tfjob(tmp_path: Path) -> None:
    docs = with_components(tmp_path, "legacy-v1", "seldon")
    named = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert [n for n in named if n[0] in LEGACY_KINDS] == [
        ("SeldonDeployment", "imdb"),
        ("TFJob", "imdb-sentiment"),
    ]
    # A cluster without Trainer v2 would refuse these kinds: they are gone.
    assert not [n for n in named if n[0] in ("TrainJob", "TrainingRuntime")]
    experiments = [d for d in docs if d["kind"] == "Experiment"]
    assert [e["metadata"]["name"] for e in experiments] == ["imdb-sentiment-bayesian-tfjob"]
    assert experiments[0]["spec"]["trialTemplate"]["trialSpec"]["kind"] == "TFJob"
    # The same search as the default Experiment, only the trials' kind differs.
    default = manifests.load(MANIFESTS / "katib-experiment.yaml")[0]["spec"]
    for key in ("objective", "algorithm", "parameters", "metricsCollectorSpec"):
        assert experiments[0]["spec"][key] == default[key], key
    for doc in docs:
        assert manifests.validate(doc) == [], doc["kind"]


def test_the_tfjob_runs_the_trainjobs_program_with_its_flags() -> None:
    # Either training writes the same model to the same folder, so the server serves either.
    job = one(MANIFESTS / "trainjob.yaml", "TrainJob")["spec"]["trainer"]
    tfjob = one(MANIFESTS / "legacy-v1" / "tfjob.yaml", "TFJob")["spec"]["tfReplicaSpecs"]
    for replica in tfjob.values():
        (container,) = replica["template"]["spec"]["containers"]
        assert container["command"] == job["args"][:3]
        own = [a.replace("/tfjob", "/trainjob") for a in container["args"]]  # its checkpoints
        assert own == job["args"][3:]


# --- the runtime ---------------------------------------------------------------------------


def without_identity(runtime: dict) -> dict:
    """The runtime without what names it and its case: its name, labels and default image."""
    spec = yaml.safe_load(yaml.safe_dump(runtime["spec"]))
    for _, container in manifests.find(spec, lambda d: d.get("name") == trainer.NODE):
        container.pop("image", None)
    return spec


def test_the_runtime_is_the_repositorys_tensorflow_runtime_under_this_cases_name() -> None:
    if not TEMPLATE_RUNTIME.exists():
        pytest.skip("this folder was copied without mnist/: nothing to compare the runtime with")
    ours, template = one(RUNTIME, "TrainingRuntime"), one(TEMPLATE_RUNTIME, "TrainingRuntime")
    # The same entry point, policy, ports, sizes and failure rules as the template's ...
    assert without_identity(ours) == without_identity(template)
    # ... under a name of its own: both cases' kustomizations apply to one profile namespace,
    # where one name would be one object that each `apply -k` rewrites and each `delete -k`
    # takes from the other (tensorflow-runtime.yaml says more).
    assert ours["metadata"]["name"] != template["metadata"]["name"]
    assert ours["metadata"]["labels"]["app.kubernetes.io/name"] == "imdb-sentiment"


def test_no_other_case_applies_a_runtime_of_this_name() -> None:
    name = one(RUNTIME, "TrainingRuntime")["metadata"]["name"]
    others = [
        path
        for path in CASE_DIR.parent.glob("*/manifests/**/*.yaml")
        if CASE_DIR not in path.parents
        for doc in manifests.load(path)
        if doc.get("kind") == "TrainingRuntime" and doc["metadata"]["name"] == name
    ]
    assert others == []


def test_every_trainjob_sets_the_image_and_args_and_keeps_the_entry_point() -> None:
    # Trainer v2.3.0 replaces the runtime container's image and args with the TrainJob's
    # (jobset/builder.go): the runtime's image is a default, the entry point must stay.
    experiment = one(MANIFESTS / "katib-experiment.yaml", "Experiment")
    trial = experiment["spec"]["trialTemplate"]["trialSpec"]
    runtime = one(RUNTIME, "TrainingRuntime")
    for job in (one(MANIFESTS / "trainjob.yaml", "TrainJob"), trial):
        assert trainer.resolve(job, [runtime]) == runtime
        spec = job["spec"]["trainer"]
        assert spec["image"] == IMAGE and "command" not in spec
        assert spec["args"][:3] == ["python", "-m", "imdb_sentiment.train_distributed"]


# --- where the model goes ----------------------------------------------------------------------


def claims(doc: dict) -> set[str]:
    return {c["claimName"] for _, c in manifests.find(doc, lambda d: "claimName" in d)}


def test_what_the_jobs_write_is_what_the_server_reads() -> None:
    pvc = one(MANIFESTS / "pvc.yaml", "PersistentVolumeClaim")["metadata"]["name"]
    trainjob = one(MANIFESTS / "trainjob.yaml", "TrainJob")
    tfjob = one(MANIFESTS / "legacy-v1" / "tfjob.yaml", "TFJob")
    experiment = one(MANIFESTS / "katib-experiment.yaml", "Experiment")
    seldon = one(MANIFESTS / "seldon" / "seldondeployment.yaml", "SeldonDeployment")
    for doc in (trainjob, tfjob, experiment, seldon):
        assert claims(doc) == {pvc}, doc["kind"]
    model_dirs = {
        a.removeprefix("--model-dir=")
        for _, d in manifests.find([trainjob, tfjob], lambda d: "args" in d)
        for a in d["args"]
        if a.startswith("--model-dir=")
    }
    assert model_dirs == {"/mnt/pvc/imdb"}  # the claim is mounted at /mnt/pvc
    served = one(MANIFESTS / "inferenceservice.yaml", "InferenceService")
    uris = [
        e["value"]
        for _, e in manifests.find(served, lambda d: d.get("name") == "STORAGE_URI")
        if "value" in e
    ]
    uris += [d["storageUri"] for _, d in manifests.find(served, lambda d: "storageUri" in d)]
    assert uris == [f"pvc://{pvc}/imdb"]

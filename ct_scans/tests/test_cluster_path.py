"""The ct_scans serving manifest as KServe 0.16 and later read it.

    .venv/bin/python -m pytest ct_scans/tests/test_cluster_path.py -q

The pipeline deploys nothing (it ends in its HTML report), so unlike mnist and income_census this
case has no RBAC for a deploy step nor a storage Secret: the InferenceService reads the PVC.
"""

from __future__ import annotations

from pathlib import Path

from tests.harness import manifests

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
MODE = "serving.kserve.io/deploymentMode"  # KServe 0.16+: Standard; RawDeployment is deprecated


def test_the_inference_service_asks_for_standard_mode() -> None:
    (isvc,) = manifests.load(MANIFESTS / "inferenceservice.yaml")
    # Not RawDeployment (the deprecated alias), not Serverless or Knative (which need Knative).
    assert isvc["metadata"].get("annotations", {}).get(MODE) == "Standard"
    assert manifests.validate(isvc) == []


def test_it_reads_the_pvc_and_needs_no_storage_credentials() -> None:
    (isvc,) = manifests.load(MANIFESTS / "inferenceservice.yaml")
    predictor = isvc["spec"]["predictor"]
    assert "serviceAccountName" not in predictor
    (container,) = predictor["containers"]
    storage = {e["name"]: e["value"] for e in container["env"]}["STORAGE_URI"]
    assert storage.startswith("pvc://")

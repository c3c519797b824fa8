"""The SeldonDeployment (manifests/seldon/) runs the InferenceService's server, on the TF-IDF model.

Seldon Core v1 with `protocol: v2` forwards Open Inference requests to the container, so the
deployment is the same image, command and arguments as the InferenceService, and no environment
of seldon-core's own is needed (its wrapper could not load the BiLSTM: seldon-core wants
protobuf<4, TensorFlow 2.21 protobuf>=6.31). Here the container the SeldonDeployment describes is
started by the harness, on a free 127.0.0.1 port, serving the session's TF-IDF model (the
InferenceService test serves the BiLSTM, so both kinds are served over HTTP): its V2 answers must
be SentimentModel.probabilities in this process, and its explanations explain.explain's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from imdb_sentiment import data
from imdb_sentiment import explain as occlusion
from imdb_sentiment.model import SentimentModel, label_of
from tests.harness import manifests
from tests.harness.serving import load_inference_service, serve

CASE = Path(__file__).resolve().parents[1]
ISVC = CASE / "manifests" / "inferenceservice.yaml"
SDEP = CASE / "manifests" / "seldon" / "seldondeployment.yaml"
V2 = "/v2/models/imdb/infer"
TOLERANCE = 1e-9  # the same float64 scikit-learn arithmetic in both processes


def seldon_container() -> tuple[dict, dict]:
    sdep = yaml.safe_load(SDEP.read_text())
    return sdep, sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]


def test_the_seldon_component_is_valid_and_runs_the_inference_service_container() -> None:
    assert manifests.validate_file(SDEP) == []
    component = yaml.safe_load((SDEP.parent / "kustomization.yaml").read_text())
    assert component["kind"] == "Component" and component["resources"] == [SDEP.name]
    isvc = load_inference_service(ISVC)["spec"]["predictor"]["containers"][0]
    sdep, pod = seldon_container()
    container = pod["containers"][0]
    for field in ("image", "command", "args", "resources", "securityContext", "readinessProbe"):
        assert container[field] == isvc[field], field
    assert sdep["spec"]["protocol"] == "v2"
    assert sdep["spec"]["predictors"][0]["graph"]["name"] == container["name"]
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    # The same model folder as the InferenceService's pvc://<claim>/<folder>.
    storage = {e["name"]: e["value"] for e in isvc["env"]}["STORAGE_URI"]
    mount = container["volumeMounts"][0]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim_uri = f"pvc://{volume['persistentVolumeClaim']['claimName']}/{mount['subPath']}"
    assert (mount["mountPath"], mount["readOnly"], claim_uri) == ("/mnt/models", True, storage)


@pytest.fixture(scope="module")
def seldon(tmp_path_factory: pytest.TempPathFactory, tfidf_model_dir: Path):
    sdep, pod = seldon_container()
    isvc = {  # the harness starts an InferenceService's predictor: give it Seldon's container
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": sdep["spec"]["predictors"][0]["graph"]["name"]},
        "spec": {"predictor": {"containers": pod["containers"]}},
    }
    workdir = tmp_path_factory.mktemp("seldon")
    with serve(isvc, workdir=workdir, model_dir=tfidf_model_dir, timeout=300) as running:
        yield running


def test_the_seldon_container_answers_v2_as_the_tfidf_model_in_process(
    seldon, tfidf_model_dir: Path
) -> None:
    _, (texts, _) = data.load_sample()
    texts = texts[:16] + texts[-16:]
    model = SentimentModel.load(tfidf_model_dir)
    assert model.kind == "tfidf"
    tensor = {"name": "review", "shape": [len(texts)], "datatype": "BYTES", "data": texts}
    answer = seldon.post(V2, {"inputs": [tensor]})
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    expected = model.probabilities(texts)
    np.testing.assert_allclose(outputs["probability_positive"], expected, rtol=0, atol=TOLERANCE)
    assert outputs["label"] == [label_of(p) for p in expected]
    assert len(set(outputs["label"])) == 2

    explained = seldon.post("/v1/models/imdb:explain", {"instances": texts[:1], "top_words": 4})
    assert explained.status_code == 200, explained.text
    (found,) = explained.json()["explanations"]
    expected_words = occlusion.explain(model, texts[0], top=4)["words"]
    assert [w["word"] for w in found["words"]] == [w["word"] for w in expected_words]

"""imdb_sentiment.serve as the InferenceService runs it, against the same model in process.

One server for the module (the predictor's command from manifests/inferenceservice.yaml on a
free 127.0.0.1 port, stopped by its pid) serving the session's smoke BiLSTM. Its labels and
calibrated probabilities over V1, V2 JSON and V2 binary data must be those of
SentimentModel.probabilities in this process on the same real test reviews of the sample; its
:explain must be explain.explain's; bad requests (the shared suite, and this case's own: empty,
not text, a 1 MB review, mixed types, too many) must get a 400 that says what was wrong, and the
server must keep serving. The TF-IDF model is served in test_seldon.py.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kserve.errors import InvalidInput

from imdb_sentiment import data
from imdb_sentiment import explain as occlusion
from imdb_sentiment.model import SentimentModel, label_of
from imdb_sentiment.serve import (
    DEFAULT_MAX_EXPLAIN_REVIEWS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_REVIEW_CHARS,
    DEFAULT_MAX_REVIEWS,
    check_reviews,
)
from tests.harness import badrequests
from tests.harness.serving import Server, serve

CASE = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE.parent
ISVC = CASE / "manifests" / "inferenceservice.yaml"
V1 = "/v1/models/imdb:predict"
V2 = "/v2/models/imdb/infer"
EXPLAIN = "/v1/models/imdb:explain"
N_REVIEWS = 32
# The server and this process run the same float32 BiLSTM on the same batch; the answers travel
# as float64 JSON, which reads back exactly.
TOLERANCE = 1e-6
GOOD = "The acting was superb and the music was beautiful. Highly recommended."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path):
    workdir = tmp_path_factory.mktemp("serve")
    with serve(ISVC, workdir=workdir, model_dir=trained_model_dir, timeout=300) as running:
        yield running


@pytest.fixture(scope="module")
def model(trained_model_dir: Path) -> SentimentModel:
    return SentimentModel.load(trained_model_dir)


@pytest.fixture(scope="module")
def reviews() -> tuple[list[str], np.ndarray]:
    """The first N_REVIEWS real test reviews of the sample (both labels) and their labels."""
    _, (texts, labels) = data.load_sample()
    chosen = np.r_[np.flatnonzero(labels == 1)[:16], np.flatnonzero(labels == 0)[:16]]
    return [texts[i] for i in chosen], labels[chosen]


def v2_reviews(texts: list[str]) -> list[dict]:
    return [{"name": "review", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]


def outputs_of(response) -> dict[str, list]:
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def test_v1_labels_and_probabilities_equal_the_in_process_model(server, model, reviews) -> None:
    texts, labels = reviews
    answer = server.v1_predict(texts)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert all(set(p) == {"label", "probability_positive"} for p in predictions)
    served = np.array([p["probability_positive"] for p in predictions])
    expected = model.probabilities(texts)
    np.testing.assert_allclose(served, expected, rtol=0, atol=TOLERANCE)
    assert [p["label"] for p in predictions] == [label_of(p) for p in expected]
    # Not a constant: the answers follow the reviews (the smoke model gets ~0.88 of the sample).
    right = np.mean((served >= 0.5) == (labels == 1))
    assert right >= 0.75, f"served labels right for only {right:.0%} of {len(texts)} reviews"


def test_v2_json_and_binary_data_answer_as_v1_does(server, model, reviews) -> None:
    texts = reviews[0][:8]
    expected = model.probabilities(texts)
    as_json = outputs_of(server.v2_infer(v2_reviews(texts)))
    np.testing.assert_allclose(as_json["probability_positive"], expected, rtol=0, atol=TOLERANCE)
    assert as_json["label"] == [label_of(p) for p in expected]

    # The binary-data extension both ways: reviews in as length-prefixed UTF-8, answers out raw.
    body, headers = badrequests.binary_request({"inputs": v2_reviews(texts)}, binary_output=True)
    answer = server.post(V2, body, headers)
    assert answer.status_code == 200, answer.text
    length = int(answer.headers[badrequests.HEADER])
    head, raw = json.loads(answer.content[:length]), answer.content[length:]
    outputs, offset = {}, 0
    for output in head["outputs"]:
        size = output["parameters"]["binary_data_size"]
        outputs[output["name"]] = raw[offset : offset + size]
        offset += size
    assert offset == len(raw)
    probabilities = np.frombuffer(outputs["probability_positive"], "<f8")
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=TOLERANCE)
    labels, at = [], 0
    while at < len(outputs["label"]):
        (n,) = struct.unpack_from("<I", outputs["label"], at)
        labels.append(outputs["label"][at + 4 : at + 4 + n].decode())
        at += 4 + n
    assert labels == [label_of(p) for p in expected]


def test_a_shape_n_by_1_and_non_ascii_text_are_served(server, model) -> None:
    texts = ["Ébouriffant ! The plot was gripping.", "Ennuyeux… the script was dull."]
    tensor = {**v2_reviews(texts)[0], "shape": [2, 1]}
    served = outputs_of(server.v2_infer([tensor]))["probability_positive"]
    np.testing.assert_allclose(served, model.probabilities(texts), rtol=0, atol=TOLERANCE)


def test_the_committed_sample_request(server) -> None:
    request = json.loads((CASE / "sample" / "request.json").read_text())
    answer = server.v1_predict(request["instances"])
    assert answer.status_code == 200, answer.text
    assert [p["label"] for p in answer.json()["predictions"]] == ["positive", "negative"]


def test_explain_gives_the_in_process_occlusion(server, model, reviews) -> None:
    texts = reviews[0][:2]
    answer = server.post(EXPLAIN, {"instances": texts, "top_words": 5})
    assert answer.status_code == 200, answer.text
    explanations = answer.json()["explanations"]
    assert len(explanations) == 2
    for text, found in zip(texts, explanations, strict=True):
        expected = occlusion.explain(model, text, top=5)
        assert found["method"] == "occlusion" and found["label"] == expected["label"]
        assert found["probability_positive"] == pytest.approx(
            expected["probability_positive"], abs=TOLERANCE
        )
        assert len(found["words"]) == 5
        assert [w["word"] for w in found["words"]] == [w["word"] for w in expected["words"]]
        np.testing.assert_allclose(
            [w["attribution"] for w in found["words"]],
            [w["attribution"] for w in expected["words"]],
            rtol=0,
            atol=TOLERANCE,
        )
        assert all(
            w["count"] >= 1 and w["word"] in occlusion.words_of(text) for w in found["words"]
        )
    default = server.post(EXPLAIN, {"instances": texts[:1]}).json()["explanations"][0]
    assert len(default["words"]) == occlusion.DEFAULT_TOP_WORDS


# --- bad requests: this case's own --------------------------------------------------------------

MEGABYTE_REVIEW = "great " * (1_000_000 // 6)  # about 1 MB of text, under the body limit
OWN_BAD = {
    "empty-string": (V1, {"instances": [""]}, "instances[0]: the review has no words"),
    "only-line-breaks": (V1, {"instances": [GOOD, "<br /><br />!?"]}, "instances[1]: the review"),
    "number": (V1, {"instances": [42]}, "instances[0]: expected a review as text"),
    "null": (V1, {"instances": [None]}, "got null"),
    "list": (V1, {"instances": [[GOOD]]}, "instances[0]: expected a review as text"),
    "mixed-types": (V1, {"instances": [GOOD, 3.5, True]}, "instances[1]: expected a review"),
    "megabyte-review": (
        V1,
        {"instances": [MEGABYTE_REVIEW]},
        f"over the limit of {DEFAULT_MAX_REVIEW_CHARS} (--max-review-chars)",
    ),
    "too-many": (
        V1,
        {"instances": [GOOD] * (DEFAULT_MAX_REVIEWS + 1)},
        f"at most {DEFAULT_MAX_REVIEWS} reviews per request",
    ),
    "explain-too-many": (
        EXPLAIN,
        {"instances": [GOOD] * (DEFAULT_MAX_EXPLAIN_REVIEWS + 1)},
        f"at most {DEFAULT_MAX_EXPLAIN_REVIEWS} reviews",
    ),
    "explain-empty": (EXPLAIN, {"instances": [" "]}, "instances[0]: the review has no words"),
    "explain-top-zero": (EXPLAIN, {"instances": [GOOD], "top_words": 0}, "top_words"),
    "explain-top-huge": (EXPLAIN, {"instances": [GOOD], "top_words": 101}, "1 to 100"),
    "explain-top-text": (EXPLAIN, {"instances": [GOOD], "top_words": "5"}, "top_words"),
    "explain-top-bool": (EXPLAIN, {"instances": [GOOD], "top_words": True}, "top_words"),
    "v2-empty-string": (V2, {"inputs": v2_reviews([GOOD, ""])}, "'review'[1]: the review has"),
    "v2-megabyte-review": (V2, {"inputs": v2_reviews([MEGABYTE_REVIEW])}, "--max-review-chars"),
    "v2-numbers": (
        V2,
        {"inputs": [{"name": "review", "shape": [2], "datatype": "FP32", "data": [1, 2]}]},
        "expected datatype BYTES",
    ),
    "v2-misnamed": (
        V2,
        {"inputs": [{**v2_reviews([GOOD])[0], "name": "text"}]},
        "named 'review', got ['text']",
    ),
    "v2-two-columns": (
        V2,
        {"inputs": [{**v2_reviews([GOOD, GOOD])[0], "shape": [1, 2]}]},
        "expected shape [N] (or [N, 1])",
    ),
    "v2-too-many": (
        V2,
        {"inputs": v2_reviews([GOOD] * (DEFAULT_MAX_REVIEWS + 1))},
        f"at most {DEFAULT_MAX_REVIEWS} reviews",
    ),
}


@pytest.mark.parametrize("path, body, message", OWN_BAD.values(), ids=OWN_BAD.keys())
def test_own_bad_requests_get_a_400_naming_the_review(server: Server, path, body, message) -> None:
    answer = server.post(path, body)
    assert answer.status_code == 400, answer.text[:500]
    assert message in answer.json()["error"], answer.text[:500]
    assert server.v1_predict([GOOD]).status_code == 200  # and it keeps serving


def test_binary_megabyte_review_and_non_utf8_review_get_a_400(server: Server) -> None:
    body, headers = badrequests.binary_request({"inputs": v2_reviews([MEGABYTE_REVIEW])})
    answer = server.post(V2, body, headers)
    assert answer.status_code == 400 and "--max-review-chars" in answer.json()["error"]
    body, headers = badrequests.binary_request({"inputs": v2_reviews(["good", "fine"])})
    answer = server.post(V2, body.replace(b"fine", b"\xff\xfe\xfd\xfc"), headers)
    assert answer.status_code == 400, answer.text
    assert "'review'[1]: expected UTF-8 text" in answer.json()["error"]


def test_check_reviews_takes_its_limits_from_the_flags() -> None:
    assert check_reviews(["a b", "c"], "instances", 2, 3) == ["a b", "c"]
    with pytest.raises(InvalidInput, match=r"instances\[1\]: a review of 4 characters"):
        check_reviews(["abc", "abcd"], "instances", 2, 3)
    with pytest.raises(InvalidInput, match="at most 2 reviews"):
        check_reviews(["a", "b", "c"], "instances", 2, 3)


# --- the harness's shared suite -----------------------------------------------------------------

GOOD_V1 = {"instances": [GOOD]}
GOOD_V2 = {"inputs": v2_reviews([GOOD])}
# `{"instances": ["text"]}` is a bad request for a model of numbers and a one-word review here:
# it is answered (test_a_one_word_review_is_answered), so that probe is left out.
ANSWERED_HERE = {"v1-text-instance"}
SHARED = [
    p
    for p in badrequests.probes(GOOD_V1, GOOD_V2, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES)
    if p.name not in ANSWERED_HERE
]


@pytest.mark.parametrize("probe", SHARED, ids=str)
def test_shared_bad_request_suite(server: Server, probe: badrequests.Probe) -> None:
    badrequests.check(server, probe, GOOD_V1, GOOD_V2)


def test_a_one_word_review_is_answered(server: Server, model) -> None:
    answer = server.v1_predict(["text"])
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    expected = model.probabilities(["text"])[0]
    assert prediction["probability_positive"] == pytest.approx(expected, abs=TOLERANCE)


# --- the command line ---------------------------------------------------------------------------


def test_flags_are_spelled_as_in_train_and_their_defaults_are_in_the_help(tmp_path) -> None:
    from imdb_sentiment.serve import parse_args

    assert parse_args(["--model-dir", str(tmp_path)]).model_dir == tmp_path
    assert parse_args(["--model_dir", str(tmp_path)]).model_dir == tmp_path
    args = parse_args(["--max-reviews", "10", "--max-review-chars", "500", "--top-words", "3"])
    assert (args.max_reviews, args.max_review_chars, args.top_words) == (10, 500, 3)
    shown = subprocess.run(
        [sys.executable, "-m", "imdb_sentiment.serve", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for flag, default in (
        ("--max-reviews", DEFAULT_MAX_REVIEWS),
        ("--max-review-chars", DEFAULT_MAX_REVIEW_CHARS),
        ("--max-explain-reviews", DEFAULT_MAX_EXPLAIN_REVIEWS),
        ("--max-request-bytes", DEFAULT_MAX_REQUEST_BYTES),
    ):
        assert flag in shown
        assert f"(default: {default})" in " ".join(shown.split()), flag


@pytest.mark.parametrize("present", [[], ["model.joblib"]], ids=["no-model", "no-calibration"])
def test_a_folder_without_a_model_is_one_line_and_exit_1(tmp_path: Path, present) -> None:
    for name in present:
        (tmp_path / name).write_bytes(b"")
    run = subprocess.run(
        [sys.executable, "-m", "imdb_sentiment.serve", "--model-dir", str(tmp_path),
         "--host", "127.0.0.1", "--http_port", "0"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    missing = "calibration.json" if present else "model.keras or model.joblib"
    assert last.startswith(f"serve.py: error: no {missing} in {tmp_path}"), last

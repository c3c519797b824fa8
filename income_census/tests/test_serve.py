"""income_census.serve as the InferenceService runs it, against the Pipeline in process.

One server for the module (the predictor's command from manifests/inferenceservice.yaml on a
free 127.0.0.1 port, stopped by its pid): V1 rows by position and by name, V2 per-column and
positional tensors, :explain, and the bad requests that must get a 400 naming the column.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest

from income_census import data, rows
from income_census.model import CATEGORIES, FEATURES, NUMERIC
from income_census.serve import DEFAULT_MAX_REQUEST_BYTES
from tests.harness import badrequests, manifests
from tests.harness.serving import Server, serve

CASE = Path(__file__).resolve().parents[1]
ISVC = CASE / "manifests" / "inferenceservice.yaml"
V1 = "/v1/models/income:predict"
V2 = "/v2/models/income/infer"
EXPLAIN = "/v1/models/income:explain"
BOOK_ROW = [39, 7, 1, 1, 1, 1, 4, 1, 2174, 0, 40, 9]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("serve")
    with serve(ISVC, workdir=workdir, model_dir=trained_model_dir, timeout=120) as running:
        yield running


@pytest.fixture(scope="module")
def model(trained_model_dir: Path):
    return joblib.load(trained_model_dir / "model.joblib")


@pytest.fixture(scope="module")
def test_rows():
    return data.load_sample()[1][0]


def by_name(frame) -> list[dict]:
    """Rows as a JSON client sends them: numbers as numbers, "?" for unknown categories."""
    out = []
    for record in frame[list(FEATURES)].to_dict("records"):
        out.append(
            {
                k: (float(v) if k in NUMERIC else ("?" if v != v else v))  # NaN -> "?"
                for k, v in record.items()
            }
        )
    return out


def test_v1_rows_by_name_equal_the_in_process_model(server: Server, model, test_rows) -> None:
    batch = test_rows.iloc[:40]
    answer = server.v1_predict(by_name(batch))
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    expected = model.predict_proba(batch)
    served = np.array([p["probabilities"] for p in predictions])
    np.testing.assert_allclose(served, expected, atol=1e-12)
    assert [p["class"] for p in predictions] == expected.argmax(axis=1).tolist()
    assert {p["label"] for p in predictions} <= {"<=50K", ">50K"}


def test_the_books_positional_request(server: Server, model) -> None:
    answer = server.v1_predict([BOOK_ROW])
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    expected = model.predict_proba(rows.parse_rows([BOOK_ROW]))[0]
    np.testing.assert_allclose(prediction["probabilities"], expected, atol=1e-12)
    assert prediction["label"] == "<=50K"  # the first person of adult.data earns <=50K


def test_the_committed_sample_request(server: Server, model) -> None:
    request = json.loads((CASE / "sample" / "request.json").read_text())
    answer = server.v1_predict(request["instances"])
    assert answer.status_code == 200, answer.text
    labels = [p["label"] for p in answer.json()["predictions"]]
    assert labels == ["<=50K", ">50K"]


def test_v2_per_column_and_positional_tensors(server: Server, model, test_rows) -> None:
    batch = test_rows.iloc[:10]
    named = by_name(batch)
    inputs = [
        {
            "name": column,
            "shape": [len(named)],
            "datatype": "FP64" if column in NUMERIC else "BYTES",
            "data": [row[column] for row in named],
        }
        for column in FEATURES
    ]
    answer = server.v2_infer(inputs)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    expected = model.predict_proba(batch)
    np.testing.assert_allclose(
        np.reshape(outputs["probabilities"]["data"], (-1, 2)), expected, atol=1e-12
    )
    assert outputs["class"]["data"] == expected.argmax(axis=1).tolist()

    book = server.v2_infer(
        [{"name": "rows", "shape": [1, 12], "datatype": "INT64", "data": BOOK_ROW}]
    )
    assert book.status_code == 200, book.text
    assert {o["name"]: o["data"] for o in book.json()["outputs"]}["label"] == ["<=50K"]


def test_explain_gives_an_anchor_with_precision(server: Server, test_rows) -> None:
    answer = server.post(EXPLAIN, {"instances": by_name(test_rows.iloc[[1]])})
    assert answer.status_code == 200, answer.text
    (found,) = answer.json()["explanations"]
    assert found["label"] == "<=50K"
    assert found["anchor"] and set(found["features"]) <= set(FEATURES)
    for condition in found["anchor"]:
        assert any(feature in condition for feature in FEATURES), condition
    assert 0.9 <= found["precision"] <= 1.0 and 0.0 <= found["coverage"] <= 1.0, found


GOOD = dict(zip(FEATURES, BOOK_ROW, strict=True))
BAD_V1 = {
    "wrong-column-count": ([BOOK_ROW + [1]], "expected 12 values"),
    "unknown-category": ([{**GOOD, "occupation": "Astronaut"}], "'occupation' has no category"),
    "text-in-number": ([{**GOOD, "hours-per-week": "forty"}], "'hours-per-week' must be a number"),
    "missing-value": ([{**GOOD, "race": None}], "'race' is null"),
    "missing-column": ([{k: v for k, v in GOOD.items() if k != "sex"}], "['sex'] are missing"),
    "empty-batch": ([], "at least one row"),
    "not-a-list": ("rows", "to be a list"),  # KServe's own check, before the model's
    "bad-code": ([{**GOOD, "native-country": 42}], "'native-country' code 42 is out of range"),
}


@pytest.mark.parametrize("instances, message", BAD_V1.values(), ids=BAD_V1.keys())
def test_bad_v1_requests_get_a_400_naming_the_problem(server: Server, instances, message) -> None:
    answer = server.post(V1, {"instances": instances})
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"], answer.text
    assert server.v1_predict([BOOK_ROW]).status_code == 200  # and it keeps serving


@pytest.mark.parametrize(
    "path, body, message",
    [
        (V1, b"not json", "Unrecognized request format"),
        (V1, {"rows": [BOOK_ROW]}, "'instances' list"),
        (EXPLAIN, {"instances": [BOOK_ROW], "threshold": 2}, "threshold"),
        (EXPLAIN, {"instances": [BOOK_ROW] * 6}, "at most 5 rows"),
    ],
    ids=["non-json", "no-instances", "bad-threshold", "too-many-to-explain"],
)
def test_bad_explain_and_body_requests(server: Server, path: str, body, message: str) -> None:
    answer = server.post(path, body)
    assert answer.status_code == 400, answer.text
    assert message in answer.text
    assert server.v1_predict([BOOK_ROW]).status_code == 200


def test_bad_v2_requests(server: Server) -> None:
    wrong_shape = server.v2_infer(
        [{"name": "rows", "shape": [1, 11], "datatype": "INT64", "data": BOOK_ROW[:11]}]
    )
    assert wrong_shape.status_code == 400 and "expected 12 values" in wrong_shape.json()["error"]
    strings = server.v2_infer(
        [{"name": "rows", "shape": [1, 12], "datatype": "BYTES", "data": ["x"] * 12}]
    )
    assert strings.status_code == 400 and "INT64 or FP64" in strings.json()["error"]
    partial = server.v2_infer(
        [
            {"name": "age", "shape": [1], "datatype": "FP64", "data": [39]},
            {"name": "sex", "shape": [1], "datatype": "BYTES", "data": ["Male"]},
        ]
    )
    assert partial.status_code == 400 and "missing: ['workclass'" in partial.json()["error"]
    assert server.v1_predict([BOOK_ROW]).status_code == 200


def test_predictor_and_explainer_run_the_same_server() -> None:
    isvc = manifests.load(ISVC)[0]
    predictor = isvc["spec"]["predictor"]["containers"][0]
    explainer = isvc["spec"]["explainer"]["containers"][0]
    for key in ("image", "command", "args", "env"):
        assert predictor[key] == explainer[key], key
    assert predictor["command"] == ["python", "-m", "income_census.serve"]


# --- the harness's shared suite, and this case's own bad requests -------------------------------

NAMED = {c: (v if c in NUMERIC else CATEGORIES[c][v]) for c, v in GOOD.items()}


def by_column(named_rows: list[dict]) -> list[dict]:
    """V2 inputs, one per column, for rows by name."""
    return [
        {
            "name": column,
            "shape": [len(named_rows)],
            "datatype": "FP64" if column in NUMERIC else "BYTES",
            "data": [row[column] for row in named_rows],
        }
        for column in FEATURES
    ]


GOOD_V1 = {"instances": [BOOK_ROW]}
GOOD_V2 = {"inputs": by_column([NAMED])}
SHARED = badrequests.probes(GOOD_V1, GOOD_V2, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES)


@pytest.mark.parametrize("probe", SHARED, ids=str)
def test_shared_bad_request_suite(server: Server, probe: badrequests.Probe) -> None:
    badrequests.check(server, probe, GOOD_V1, GOOD_V2)


def rows_tensor(values: list, shape: list[int], datatype: str = "INT64") -> dict:
    return {"inputs": [{"name": "rows", "shape": shape, "datatype": datatype, "data": values}]}


HUGE = 1.7e308  # finite, and beyond the float32 the trees compare
OWN_BAD = {
    "v1-huge-age": (V1, {"instances": [{**GOOD, "age": HUGE}]}, "'age' must be a finite"),
    "v1-huge-gain": (V1, {"instances": [[*BOOK_ROW[:8], HUGE, *BOOK_ROW[9:]]]}, "capital-gain"),
    "explain-huge-age": (EXPLAIN, {"instances": [{**GOOD, "age": HUGE}]}, "'age' must be"),
    "v2-rows-zero-wide": (V2, rows_tensor([], [1, 0]), "expected 12 values"),
    "v2-rows-misnamed": (
        V2,
        {"inputs": [{**rows_tensor(BOOK_ROW, [1, 12])["inputs"][0], "name": "row"}]},
        "unknown: ['row']",
    ),
    "v2-rows-huge": (V2, rows_tensor([HUGE, *BOOK_ROW[1:]], [1, 12], "FP64"), "'age' must be"),
    "v2-columns-of-unequal-length": (
        V2,
        {
            "inputs": [
                {**t, "shape": [2], "data": t["data"] * 2} if t["name"] == "sex" else t
                for t in by_column([NAMED])
            ]
        },
        "'sex': 2 rows, but input 'age' has 1",
    ),
    "v2-category-as-number": (
        V2,
        {
            "inputs": [
                {**t, "datatype": "FP64", "data": [3.5]} if t["name"] == "race" else t
                for t in by_column([NAMED])
            ]
        },
        "'race' must be a category name or its code",
    ),
}


@pytest.mark.parametrize("path, body, message", OWN_BAD.values(), ids=OWN_BAD.keys())
def test_own_bad_requests_get_a_400_naming_the_column(server: Server, path, body, message) -> None:
    answer = server.post(path, body)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"], answer.text
    assert server.v1_predict([BOOK_ROW]).status_code == 200


def test_category_bytes_that_are_not_utf8_get_a_400(server: Server) -> None:
    request = {"inputs": by_column([NAMED])}
    body, headers = badrequests.binary_request(request)
    broken = body.replace(NAMED["occupation"].encode(), b"\xff" * len(NAMED["occupation"]))
    answer = server.post(V2, broken, headers)
    assert answer.status_code == 400, answer.text
    assert "'occupation'[0]: expected UTF-8 text" in answer.json()["error"]


def test_binary_columns_answer_as_json_columns_do(server: Server, model, test_rows) -> None:
    batch = test_rows.iloc[:32]
    request = {"inputs": by_column(by_name(batch))}
    body, headers = badrequests.binary_request(request)
    answer = server.post(V2, body, headers)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    expected = model.predict_proba(batch)
    np.testing.assert_allclose(
        np.reshape(outputs["probabilities"]["data"], (-1, 2)), expected, atol=1e-12
    )
    assert outputs["label"]["data"] == [["<=50K", ">50K"][c] for c in expected.argmax(axis=1)]


def test_model_dir_is_spelled_as_in_train_and_kserves_spelling_still_works(tmp_path) -> None:
    from income_census.serve import parse_args

    assert parse_args(["--model-dir", str(tmp_path)]).model_dir == tmp_path
    assert parse_args(["--model_dir", str(tmp_path)]).model_dir == tmp_path
    assert parse_args(["--max-rows", "10", "--max-explain-rows", "2"]).max_rows == 10


def test_an_xgboost_pipeline_is_served_over_v1_and_v2(tmp_path: Path, test_rows) -> None:
    # XGBoost answers predict_proba with a Fortran-ordered array; the served JSON must not care.
    import subprocess
    import sys

    model_dir = tmp_path / "xgboost"
    subprocess.run(
        [sys.executable, "-m", "income_census.train", "--sample", "--model", "xgboost",
         "--model-dir", str(model_dir)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    xgb = joblib.load(model_dir / "model.joblib")
    batch = test_rows.iloc[:8]
    expected = xgb.predict_proba(batch)
    with serve(ISVC, workdir=tmp_path / "serve", model_dir=model_dir, timeout=120) as running:
        answer = running.v1_predict(by_name(batch))
        assert answer.status_code == 200, answer.text
        served = np.array([p["probabilities"] for p in answer.json()["predictions"]])
        np.testing.assert_allclose(served, expected, rtol=1e-6)
        answer = running.v2_infer(by_column(by_name(batch)))
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o for o in answer.json()["outputs"]}
        probabilities = np.array(outputs["probabilities"]["data"]).reshape(expected.shape)
        np.testing.assert_allclose(probabilities, expected, rtol=1e-6)

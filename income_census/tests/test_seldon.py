"""income_census.seldon_model behind Seldon Core's own REST app, against the in-process Pipeline.

seldon-core cannot live in the main environment, so the requests run in .venv-seldon (made once
from requirements/seldon.txt, about 80 s): one run of seldon_driver.py per module builds
Seldon's Flask app around IncomeClassifier, POSTs every request below to /api/v1.0/predictions
and prints the answers. The book's request and real test rows sent by name must get the
probabilities the Pipeline gives in this process; bad requests must get a 400 that names the
column, and the server must keep serving after them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml

from income_census import data
from income_census.model import FEATURES
from income_census.rows import parse_rows
from tests.harness import venvs

CASE = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE.parent
DRIVER = Path(__file__).with_name("seldon_driver.py")
SDEP = CASE / "manifests" / "seldon" / "seldondeployment.yaml"
CLASS_NAMES = ["<=50K", ">50K"]
TOLERANCE = 1e-9
N_ROWS = 20

# adult.data's first person (State-gov, Bachelors, Never-married, Adm-clerical, Not-in-family,
# White, Male, United-States) in the book's encoding, and as the data file writes it.
BOOK_ROW = [39, 7, 1, 1, 1, 1, 4, 1, 2174, 0, 40, 9]
FIRST_ADULT_ROW = [39, "State-gov", "Bachelors", "Never-married", "Adm-clerical",
                   "Not-in-family", "White", "Male", 2174, 0, 40, "United-States"]  # fmt: skip


def by_name(*rows: list) -> dict:
    return {"data": {"names": list(FEATURES), "ndarray": [list(row) for row in rows]}}


def positional(*rows: list) -> dict:
    return {"data": {"ndarray": [list(row) for row in rows]}}


def replaced(row: list, column: str, value: object) -> list:
    return [value if name == column else v for name, v in zip(FEATURES, row, strict=True)]


# name -> (request body, words the 400's message must contain)
BAD_REQUESTS = {
    "too_few_columns": (positional(BOOK_ROW[:11]), ["expected 12 values", "got 11"]),
    "too_many_columns": (positional([*BOOK_ROW, 0]), ["expected 12 values", "got 13"]),
    "ragged_rows": (positional(BOOK_ROW, BOOK_ROW[:11]), ["data.ndarray[1]", "row 1 11"]),
    "unknown_category": (
        by_name(replaced(FIRST_ADULT_ROW, "workclass", "Astronaut")),
        ["'workclass'", "'Astronaut'"],
    ),
    "code_out_of_range": (positional(replaced(BOOK_ROW, "occupation", 99)), ["'occupation'", "99"]),
    "text_in_numeric_column": (
        by_name(replaced(FIRST_ADULT_ROW, "age", "thirty-nine")),
        ["'age' must be a number", "'thirty-nine'"],
    ),
    "null_value": (positional(replaced(BOOK_ROW, "hours-per-week", None)), ["'hours-per-week'"]),
    "null_category": (by_name(replaced(FIRST_ADULT_ROW, "race", None)), ["'race' is null", "'?'"]),
    "empty_batch": (positional(), ["at least one row"]),
    "unknown_column_name": (
        {"data": {"names": ["salary", *FEATURES[1:]], "ndarray": [FIRST_ADULT_ROW]}},
        ["unknown column", "salary"],
    ),
    "names_and_values_differ": (
        {"data": {"names": list(FEATURES[:11]), "ndarray": [FIRST_ADULT_ROW]}},
        ["12 values for the 11 names"],
    ),
    "not_a_row": ({"data": {"ndarray": [39, 7]}}, ["expected a row"]),
}


@pytest.fixture(scope="module")
def test_rows() -> list[list]:
    """The first N_ROWS real rows of the sample's test file, as a client sends them by name."""
    _, (rows, _) = data.load_sample()
    rows = rows[list(FEATURES)].head(N_ROWS).fillna("?")  # the files' unknown marker
    return [
        [int(v) if isinstance(v, float) and v.is_integer() else v for v in row]
        for row in rows.itertuples(index=False)
    ]


@pytest.fixture(scope="module")
def sent(test_rows: list[list]) -> dict[str, dict]:
    """Every request the driver sends, in order: good ones, bad ones, then a good one again."""
    good = {
        "book": positional(BOOK_ROW),
        # The AnchorTabular explainer calls the model with float arrays of codes.
        "book_as_floats": positional([float(v) for v in BOOK_ROW]),
        "book_as_tensor": {"data": {"tensor": {"shape": [1, 12], "values": BOOK_ROW}}},
        "first_adult_row_by_name": by_name(FIRST_ADULT_ROW),
        "test_rows_by_name": by_name(*test_rows),
    }
    bad = {name: body for name, (body, _) in BAD_REQUESTS.items()}
    return {**good, **bad, "not_json": "{this is not JSON", "book_after_errors": good["book"]}


@pytest.fixture(scope="module")
def answers(sent: dict, trained_model_dir: Path, tmp_path_factory) -> dict[str, dict]:
    """{name: {"status", "response"}} from one driver run in the seldon environment."""
    python = venvs.ensure("seldon")
    requests_file = tmp_path_factory.mktemp("seldon") / "requests.json"
    requests_file.write_text(json.dumps([{"name": n, "body": b} for n, b in sent.items()]))
    run = subprocess.run(
        [str(python), str(DRIVER), str(trained_model_dir), str(requests_file)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert [r["name"] for r in results] == list(sent)
    return {r["name"]: r for r in results}


@pytest.fixture(scope="module")
def pipeline(trained_model_dir: Path):
    return joblib.load(trained_model_dir / "model.joblib")


def probabilities(answer: dict) -> np.ndarray:
    """The probabilities of a 200 answer, after checking Seldon labelled the two columns."""
    assert answer["status"] == 200, answer["response"]
    response = answer["response"]["data"]
    assert response["names"] == CLASS_NAMES
    if "tensor" in response:  # Seldon answers in the request's format
        return np.reshape(response["tensor"]["values"], response["tensor"]["shape"])
    return np.asarray(response["ndarray"])


def test_book_request_matches_in_process_pipeline(answers, pipeline) -> None:
    got = probabilities(answers["book"])
    assert got.shape == (1, 2)
    assert got.sum() == pytest.approx(1.0, abs=TOLERANCE)
    expected = pipeline.predict_proba(parse_rows([BOOK_ROW]))
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_float_codes_and_category_names_give_the_books_answer(answers) -> None:
    book = probabilities(answers["book"])
    for name in ("book_as_floats", "book_as_tensor", "first_adult_row_by_name"):
        np.testing.assert_allclose(probabilities(answers[name]), book, rtol=0, atol=TOLERANCE)


def test_real_rows_by_name_match_in_process_pipeline(answers, pipeline, test_rows) -> None:
    got = probabilities(answers["test_rows_by_name"])
    assert got.shape == (N_ROWS, 2)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=TOLERANCE)
    rows = parse_rows([dict(zip(FEATURES, row, strict=True)) for row in test_rows])
    np.testing.assert_allclose(got, pipeline.predict_proba(rows), rtol=0, atol=TOLERANCE)
    assert len(set(got[:, 1].round(6))) > 1, "every row got the same answer"


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_gets_400_naming_the_problem(answers, name: str) -> None:
    answer = answers[name]
    assert answer["status"] == 400, answer["response"]
    status = answer["response"]["status"]
    assert status["reason"] == "MICROSERVICE_BAD_DATA"
    for words in BAD_REQUESTS[name][1]:
        assert words in status["info"], status["info"]


def test_non_json_body_gets_400(answers) -> None:
    assert answers["not_json"]["status"] == 400, answers["not_json"]["response"]


def test_server_keeps_serving_after_bad_requests(answers) -> None:
    np.testing.assert_array_equal(
        probabilities(answers["book_after_errors"]), probabilities(answers["book"])
    )


def test_seldon_deployment_runs_this_class() -> None:
    """The manifest's container runs IncomeClassifier on the folder the model is mounted at."""
    predictor = yaml.safe_load(SDEP.read_text())["spec"]["predictors"][0]
    container = predictor["componentSpecs"][0]["spec"]["containers"][0]
    assert predictor["graph"]["name"] == container["name"]
    command = [*container.get("command", []), *container.get("args", [])]
    assert "income_census.seldon_model.IncomeClassifier" in command
    assert command[command.index("--service-type") + 1] == "MODEL"
    parameters = {p["name"]: p["value"] for p in predictor["graph"].get("parameters", [])}
    model_dir = parameters.get("model_dir", "/mnt/models")
    assert model_dir in [m["mountPath"] for m in container["volumeMounts"]]
    assert predictor["explainer"]["type"] == "AnchorTabular"


def test_the_image_installs_the_environment_the_tests_use() -> None:
    from tests.harness.contract import pins

    in_image = pins(CASE / "requirements-seldon.txt")
    assert in_image == pins(REPO_ROOT / "requirements" / "seldon.txt")
    dockerfile = (CASE / "Dockerfile").read_text()
    assert "requirements-seldon.txt" in dockerfile and "seldon-core-microservice" in dockerfile

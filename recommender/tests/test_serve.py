"""recommender.serve as the InferenceService runs it, against the same model in process.

One server for the module (the predictor's command from manifests/inferenceservice.yaml on a
free 127.0.0.1 port, stopped by its pid) serving the session's smoke model, with purchases.npz
made from the sample and a VERSION. Its top-N lists must be those of model.ItemScorer in this
process with every bought product left out; no list may hold a product the customer bought; an
unknown customer gets the most popular products, marked as a fallback; every answer names the
version; bad requests (the shared suite, and this case's own: unknown fields, negative,
fractional and too large n, ids that are not text, an empty batch) get a 400 that says what was
wrong, and the server keeps serving.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recommender import data
from recommender.export import VERSION_FILE, Purchases
from recommender.model import KERAS_FILE, ItemScorer
from recommender.serve import (
    DEFAULT_MAX_CUSTOMERS,
    DEFAULT_MAX_ID_CHARS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_TOP_N,
    VERSION_HEADER,
)
from tests.harness import badrequests, manifests
from tests.harness.copies import check_case
from tests.harness.serving import Server, serve

CASE = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE.parent
ISVC = CASE / "manifests" / "inferenceservice.yaml"
V1 = "/v1/models/recommender:predict"
V2 = "/v2/models/recommender/infer"
VERSION = "7"
UNKNOWN = "a-customer-the-model-never-saw"
# The server and this process compute the same float32 NumPy scores; JSON carries float64.
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def sample() -> data.Interactions:
    return data.load_sample()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, trained_model_dir: Path, sample) -> Path:
    folder = tmp_path_factory.mktemp("serve-model") / "recommender"
    shutil.copytree(trained_model_dir, folder)
    Purchases.of(sample).save(folder)
    (folder / VERSION_FILE).write_text(VERSION + "\n")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir: Path):
    workdir = tmp_path_factory.mktemp("serve")
    with serve(ISVC, workdir=workdir, model_dir=model_dir, timeout=300) as running:
        yield running


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> ItemScorer:
    import keras

    return ItemScorer(keras.saving.load_model(model_dir / KERAS_FILE))


def bought_by(sample: data.Interactions, customer: str) -> set[str]:
    user = sample.user_ids.index(customer)
    return {sample.item_ids[i] for i in sample.items[sample.users == user]}


def expected_top(scorer, sample, customer: str, n: int) -> tuple[list[str], np.ndarray]:
    """The n best products the customer did not buy, by this process's scores."""
    user = sample.user_ids.index(customer)
    scores = scorer(np.array([user]))[0].astype(np.float64)
    scores[sample.items[sample.users == user]] = -np.inf
    order = np.argsort(-scores, kind="stable")[: min(n, int(np.isfinite(scores).sum()))]
    return [sample.item_ids[i] for i in order], scores[order]


def predictions(answer) -> list[dict]:
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def test_served_top_n_equals_in_process_scoring_minus_bought(server, scorer, sample) -> None:
    customers = sample.user_ids[:: len(sample.user_ids) // 20][:20]
    ns = [1 + (7 * i) % 25 for i in range(len(customers))]
    instances = [{"customer": c, "n": n} for c, n in zip(customers, ns, strict=True)]
    served = predictions(server.v1_predict(instances))
    assert len(served) == len(customers)
    for found, customer, n in zip(served, customers, ns, strict=True):
        products, scores = expected_top(scorer, sample, customer, n)
        assert found["customer"] == customer and found["fallback"] is False
        assert found["products"] == products, customer
        np.testing.assert_allclose(found["scores"], scores, rtol=0, atol=TOLERANCE)
        assert found["scores"] == sorted(found["scores"], reverse=True)


def test_no_list_holds_a_bought_product_for_any_customer(server, sample) -> None:
    n_items = sample.n_items
    for start in range(0, sample.n_users, DEFAULT_MAX_CUSTOMERS):
        batch = sample.user_ids[start : start + DEFAULT_MAX_CUSTOMERS]
        served = predictions(server.v1_predict([{"customer": c, "n": n_items} for c in batch]))
        for found, customer in zip(served, batch, strict=True):
            bought = bought_by(sample, customer)
            assert not bought & set(found["products"]), customer
            # Every product not bought, once each: n = every product leaves none out.
            assert len(found["products"]) == len(set(found["products"])) == n_items - len(bought)


def test_an_unknown_customer_gets_the_most_popular_products(server, sample) -> None:
    known = sample.user_ids[0]
    served = predictions(
        server.v1_predict([{"customer": UNKNOWN, "n": 5}, {"customer": known, "n": 5}])
    )
    buyers = Purchases.of(sample).popularity
    order = np.lexsort((np.arange(len(buyers)), -buyers))[:5]
    assert served[0] == {
        "customer": UNKNOWN,
        "products": [sample.item_ids[i] for i in order],
        "scores": buyers[order].astype(float).tolist(),
        "fallback": True,
    }
    assert served[1]["fallback"] is False and served[1]["products"] != served[0]["products"]


def test_n_defaults_to_top_n_and_the_committed_request(server, sample) -> None:
    request = json.loads((CASE / "sample" / "request.json").read_text())
    answer = server.post(V1, request)
    served = predictions(answer)
    assert [len(p["products"]) for p in served] == [5, DEFAULT_TOP_N, 3]
    assert [p["fallback"] for p in served] == [False, False, True]


def test_every_answer_names_the_model_version(server, sample) -> None:
    answer = server.v1_predict([{"customer": sample.user_ids[0]}])
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == VERSION
    assert answer.headers[VERSION_HEADER] == VERSION
    answer = server.v2_infer(v2_customers([sample.user_ids[0]]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == VERSION
    assert answer.headers[VERSION_HEADER] == VERSION


def v2_customers(customers: list[str], n: int | None = None) -> list[dict]:
    inputs = [
        {"name": "customer", "shape": [len(customers)], "datatype": "BYTES", "data": customers}
    ]
    if n is not None:
        inputs.append({"name": "n", "shape": [1], "datatype": "INT64", "data": [n]})
    return inputs


def test_v2_json_and_binary_data_answer_as_v1_does(server, sample) -> None:
    customers = [*sample.user_ids[:3], UNKNOWN]
    expected = predictions(server.v1_predict([{"customer": c, "n": 4} for c in customers]))
    answer = server.v2_infer(v2_customers(customers, 4))
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["products"]["shape"] == outputs["scores"]["shape"] == [4, 4]
    products = np.array(outputs["products"]["data"]).reshape(4, 4).tolist()
    scores = np.array(outputs["scores"]["data"]).reshape(4, 4)
    assert products == [p["products"] for p in expected]
    np.testing.assert_allclose(scores, [p["scores"] for p in expected], rtol=0, atol=TOLERANCE)
    assert outputs["count"]["data"] == [4, 4, 4, 4]
    assert outputs["fallback"]["data"] == [False, False, False, True]

    body, headers = badrequests.binary_request(
        {"inputs": v2_customers(customers, 4)}, binary_output=True
    )
    answer = server.post(V2, body, headers)
    assert answer.status_code == 200, answer.text
    length = int(answer.headers[badrequests.HEADER])
    head, raw = json.loads(answer.content[:length]), answer.content[length:]
    chunks, offset = {}, 0
    for output in head["outputs"]:
        size = output["parameters"]["binary_data_size"]
        chunks[output["name"]] = raw[offset : offset + size]
        offset += size
    assert offset == len(raw)
    np.testing.assert_allclose(
        np.frombuffer(chunks["scores"], "<f8").reshape(4, 4),
        [p["scores"] for p in expected],
        rtol=0,
        atol=TOLERANCE,
    )
    names, at = [], 0
    while at < len(chunks["products"]):
        (size,) = struct.unpack_from("<I", chunks["products"], at)
        names.append(chunks["products"][at + 4 : at + 4 + size].decode())
        at += 4 + size
    assert names == [p for found in expected for p in found["products"]]


def test_v2_rows_shorter_than_n_are_padded_and_counted(server, sample) -> None:
    # The customer who bought most: n = every product leaves a row shorter than n.
    heaviest = int(np.argmax(np.bincount(sample.users)))
    customer = sample.user_ids[heaviest]
    left = sample.n_items - len(bought_by(sample, customer))
    answer = server.v2_infer(v2_customers([customer, UNKNOWN], sample.n_items))
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    assert outputs["count"] == [left, sample.n_items]
    first_row = outputs["products"][: sample.n_items]
    assert all(first_row[:left]) and first_row[left:] == [""] * (sample.n_items - left)


# --- bad requests: this case's own --------------------------------------------------------------

KNOWN = "1"  # a customer of the sample
OWN_BAD = {
    "customer-a-number": (V1, {"instances": [{"customer": 1}]}, "instances[0].customer: expected"),
    "customer-null": (V1, {"instances": [{"customer": None}]}, "got null"),
    "customer-a-list": (V1, {"instances": [{"customer": [KNOWN]}]}, "got a list"),
    "customer-empty": (V1, {"instances": [{"customer": " "}]}, "got an empty one"),
    "customer-too-long": (
        V1,
        {"instances": [{"customer": "x" * (DEFAULT_MAX_ID_CHARS + 1)}]},
        "(--max-id-chars)",
    ),
    "customer-missing": (V1, {"instances": [{"n": 3}]}, "instances[0]: missing 'customer'"),
    "misspelt-field": (V1, {"instances": [{"customerId": KNOWN}]}, "unknown field 'customerId'"),
    "bare-id": (V1, {"instances": [KNOWN]}, "instances[0]: expected an object"),
    "n-negative": (V1, {"instances": [{"customer": KNOWN, "n": -1}]}, "instances[0].n: expected"),
    "n-zero": (V1, {"instances": [{"customer": KNOWN, "n": 0}]}, "from 1 to 300"),
    "n-fraction": (V1, {"instances": [{"customer": KNOWN, "n": 2.5}]}, "got a number (2.5)"),
    "n-text": (V1, {"instances": [{"customer": KNOWN, "n": "10"}]}, "instances[0].n"),
    "n-bool": (V1, {"instances": [{"customer": KNOWN, "n": True}]}, "got true/false"),
    "n-over-the-products": (
        V1,
        {"instances": [{"customer": UNKNOWN, "n": 301}]},
        "from 1 to 300 (the number of products), got a number (301)",
    ),
    "mixed-batch": (
        V1,
        {"instances": [{"customer": KNOWN}, {"customer": 5}]},
        "instances[1].customer",
    ),
    "empty-batch": (V1, {"instances": []}, "non-empty batch of customers"),
    "too-many": (
        V1,
        {"instances": [{"customer": KNOWN}] * (DEFAULT_MAX_CUSTOMERS + 1)},
        f"at most {DEFAULT_MAX_CUSTOMERS} customers",
    ),
    "v2-customer-numbers": (
        V2,
        {"inputs": [{"name": "customer", "shape": [1], "datatype": "INT64", "data": [1]}]},
        "expected datatype BYTES",
    ),
    "v2-customer-empty": (V2, {"inputs": v2_customers([KNOWN, ""])}, "'customer'[1]: expected"),
    "v2-n-negative": (V2, {"inputs": v2_customers([KNOWN], -3)}, "input 'n': expected a whole"),
    "v2-n-too-large": (V2, {"inputs": v2_customers([KNOWN], 301)}, "from 1 to 300"),
    "v2-n-fraction": (
        V2,
        {"inputs": [*v2_customers([KNOWN]), {"name": "n", "shape": [1], "datatype": "INT64", "data": [2.5]}]},
        "fractions",
    ),
    "v2-n-float": (
        V2,
        {"inputs": [*v2_customers([KNOWN]), {"name": "n", "shape": [1], "datatype": "FP64", "data": [3]}]},
        "expected datatype INT64",
    ),
    "v2-n-per-customer": (
        V2,
        {"inputs": [*v2_customers([KNOWN, KNOWN]), {"name": "n", "shape": [2], "datatype": "INT64", "data": [3, 4]}]},
        "expected shape [1]",
    ),
    "v2-misnamed": (
        V2,
        {"inputs": [{**v2_customers([KNOWN])[0], "name": "user"}]},
        "expected an input named 'customer'",
    ),
    "v2-two-columns": (
        V2,
        {"inputs": [{**v2_customers([KNOWN, KNOWN])[0], "shape": [1, 2]}]},
        "expected shape [N] (or [N, 1])",
    ),
}  # fmt: skip


@pytest.mark.parametrize("path, body, message", OWN_BAD.values(), ids=OWN_BAD.keys())
def test_own_bad_requests_get_a_400_naming_the_customer(
    server: Server, path, body, message
) -> None:
    answer = server.post(path, body)
    assert answer.status_code == 400, answer.text[:500]
    assert message in answer.json()["error"], answer.text[:500]
    assert server.v1_predict([{"customer": KNOWN}]).status_code == 200  # and it keeps serving


# --- the harness's shared suite -----------------------------------------------------------------

GOOD_V1 = {"instances": [{"customer": KNOWN, "n": 3}]}
GOOD_V2 = {"inputs": v2_customers([KNOWN], 3)}
SHARED = badrequests.probes(GOOD_V1, GOOD_V2, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES)


@pytest.mark.parametrize("probe", SHARED, ids=str)
def test_shared_bad_request_suite(server: Server, probe: badrequests.Probe) -> None:
    badrequests.check(server, probe, GOOD_V1, GOOD_V2)


# --- the manifest, the copies, the command line -------------------------------------------------


def test_the_manifest_runs_serve_on_the_models_claim() -> None:
    assert manifests.validate_file(ISVC) == []
    (isvc,) = manifests.load(ISVC)
    (container,) = isvc["spec"]["predictor"]["containers"]
    assert container["command"] == ["python", "-m", "recommender.serve"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["STORAGE_URI"] == "pvc://recommender-models/recommender"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_the_kserve_plumbing_is_mnists_copied() -> None:
    assert check_case(CASE) == []


@pytest.mark.parametrize("remove", [KERAS_FILE, "purchases.npz"], ids=["no-model", "no-purchases"])
def test_a_folder_without_its_files_is_one_line_and_exit_1(
    tmp_path: Path, model_dir: Path, remove: str
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / remove).unlink()
    run = subprocess.run(
        [sys.executable, "-m", "recommender.serve", "--model-dir", str(folder),
         "--host", "127.0.0.1", "--http_port", "0"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"serve.py: error: no {remove} in {folder}"), last


def test_flags_and_their_defaults_are_in_the_help(tmp_path: Path) -> None:
    from recommender.serve import parse_args

    args = parse_args(["--model_dir", str(tmp_path), "--model-version", "3", "--top-n", "5"])
    assert (args.model_dir, args.model_version, args.top_n) == (tmp_path, "3", 5)
    shown = subprocess.run(
        [sys.executable, "-m", "recommender.serve", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    shown = " ".join(shown.split())
    for flag, default in (
        ("--top-n", DEFAULT_TOP_N),
        ("--max-customers", DEFAULT_MAX_CUSTOMERS),
        ("--max-id-chars", DEFAULT_MAX_ID_CHARS),
        ("--max-request-bytes", DEFAULT_MAX_REQUEST_BYTES),
    ):
        assert f"{flag}" in shown and f"(default: {default})" in shown, flag
    assert "--model-version" in shown

"""The serving harness against the echo model fixture: V1, V2, bad requests, clean stops, and
the shared bad-request suite (tests/harness/badrequests.py): what it catches and how it judges."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from kserve import InferInput, InferRequest

from tests.fixtures.serving.echo_model import EchoModel
from tests.harness import badrequests, procs
from tests.harness.serving import ServerStartError, load_inference_service, serve

MANIFEST = Path(__file__).parent / "fixtures" / "serving" / "inferenceservice.yaml"
WEIGHTS = [1.0, 2.0, 0.5, -1.0]
ROWS = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -2.0, 10.0]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("echo-model")
    (path / "weights.json").write_text(json.dumps({"weights": WEIGHTS}))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path):
    with serve(MANIFEST, workdir=tmp_path_factory.mktemp("serve"), model_dir=model_dir) as s:
        yield s


@pytest.fixture(scope="module")
def in_process(model_dir: Path) -> EchoModel:
    model = EchoModel("echo", model_dir)
    model.load()
    return model


def v2_input(rows: list, datatype: str = "FP32", shape: list[int] | None = None) -> dict:
    flat = [v for row in rows for v in row]
    shape = shape if shape is not None else [len(rows), len(rows[0]) if rows else 0]
    return {"name": "x", "shape": shape, "datatype": datatype, "data": flat}


def test_binds_loopback_with_the_manifest_name(server) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert server.model_name == "echo"
    assert "Uvicorn running on http://127.0.0.1:" in server.log()


def test_v1_matches_the_model_in_process(server, in_process: EchoModel) -> None:
    response = server.v1_predict(ROWS)
    assert response.status_code == 200, response.text
    expected = asyncio.run(in_process({"instances": ROWS}))[0]["predictions"]
    assert response.json()["predictions"] == pytest.approx(expected)
    assert expected == pytest.approx(list(np.asarray(ROWS) @ WEIGHTS))


def test_v2_matches_the_model_in_process(server, in_process: EchoModel) -> None:
    response = server.v2_infer([v2_input(ROWS)], id="req-1")
    assert response.status_code == 200, response.text
    body = response.json()
    request = InferRequest("echo", [InferInput("x", [2, 4], "FP32", data=sum(ROWS, []))])
    expected = asyncio.run(in_process(request))[0].outputs[0].data
    assert body["outputs"][0]["data"] == pytest.approx(expected)
    assert body["outputs"][0]["shape"] == [2]
    assert body["id"] == "req-1"


def test_v2_makes_up_a_string_id(server) -> None:
    body = server.v2_infer([v2_input(ROWS[:1], "FP64")]).json()
    assert isinstance(body["id"], str) and body["id"]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("v1", {"instances": [[1.0, 2.0]]}, "expected shape [batch, 4]"),
        ("v1", {"instances": [[1.0, 2.0, 3.0, 4.0], [1.0]]}, "rows of 4 numbers"),
        ("v1", {"instances": [["a", "b", "c", "d"]]}, "expected numbers"),
        ("v1", {"instances": []}, "non-empty batch"),
        ("v1", {"rows": [[1.0, 2.0, 3.0, 4.0]]}, "'instances' list"),
        ("v1", b"this is not json", "Unrecognized request format"),
        ("v2", {"inputs": [v2_input([[1.0, 2.0]])]}, "expected shape [batch, 4]"),
        ("v2", {"inputs": [v2_input([[1.0, 2.0, 3.0, 4.0]], shape=[2, 4])]}, "does not match"),
        ("v2", {"inputs": [v2_input([["a", "b", "c", "d"]], "BYTES")]}, "numeric datatype"),
        ("v2", {"inputs": [v2_input([], shape=[0, 4])]}, "non-empty batch"),
    ],
)
def test_bad_requests_get_400_and_the_server_keeps_serving(server, path, body, message) -> None:
    url = (
        f"/v1/models/{server.model_name}:predict"
        if path == "v1"
        else f"/v2/models/{server.model_name}/infer"
    )
    response = server.post(url, body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert server.v1_predict(ROWS).status_code == 200


def test_non_json_content_type_says_json_is_expected(server) -> None:
    url = f"/v1/models/{server.model_name}:predict"
    response = server.post(url, "1,2,3,4", headers={"content-type": "text/csv"})
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["error"]


def test_stopped_after_the_block_also_when_it_raises(tmp_path: Path, model_dir: Path) -> None:
    with serve(MANIFEST, workdir=tmp_path, model_dir=model_dir) as s:
        pid = s.pid
        assert procs.alive(pid)
    assert not procs.alive(pid)

    with (
        pytest.raises(ZeroDivisionError),
        serve(MANIFEST, workdir=tmp_path, model_dir=model_dir) as s,
    ):
        pid = s.pid
        _ = 1 / 0
    assert not procs.alive(pid)


def test_start_failure_reports_the_log(tmp_path: Path) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    with (
        pytest.raises(ServerStartError) as failure,
        serve(MANIFEST, workdir=tmp_path, model_dir=empty, timeout=60),
    ):
        pytest.fail("the server should not have started")
    message = str(failure.value)
    assert "exited with code" in message
    assert "must hold weights.json" in message  # the server's own words, from its log


def test_wrong_model_name_is_explained(tmp_path: Path, model_dir: Path) -> None:
    isvc = load_inference_service(MANIFEST)
    isvc["metadata"]["name"] = "other"
    container = isvc["spec"]["predictor"]["containers"][0]
    container["args"] = [a for a in container["args"] if a not in ("--model_name", "echo")]
    with (
        pytest.raises(ServerStartError, match="does the manifest's --model_name match"),
        serve(isvc, workdir=tmp_path, model_dir=model_dir),
    ):
        pass


# --- the shared bad-request suite -----------------------------------------------------------------

GOOD_V1 = {"instances": ROWS}
GOOD_V2 = {"inputs": [v2_input(ROWS)]}


def test_the_suite_catches_what_plain_kserve_gets_wrong(server) -> None:
    # The echo model answers through KServe 0.21's own routes, with none of the case servers'
    # plumbing (mnist/serve.py): the suite must find its 500s and wrong successes, and pass
    # what KServe and the model get right. (The probes of a declared body that never comes
    # are left out: without a body limit they wait for their timeout.)
    probes = [
        p
        for p in badrequests.probes(GOOD_V1, GOOD_V2, max_request_bytes=1 << 16)
        if not p.headers_only
    ]
    found = {p.name: badrequests.problems(server, p, GOOD_V1, GOOD_V2) for p in probes}
    assert "a 500 (a server error)" in found["binary-header-not-a-number"][0]
    assert "a 500 (a server error)" in found["binary-bytes-length-overrun"][0]
    assert "a 200 with a wrong success" in found["binary-trailing-bytes"][0]
    assert "a 200 with a wrong success" in found["v2-unknown-output"][0]
    assert "expected 413, got 400" in found["v1-over-the-limit"][0]
    assert "null where numbers belong" in found["v1-huge-numbers"][0]  # inf + -inf: NaN
    for name in ("v1-not-json", "v1-empty-batch", "v2-data-one-short", "v2-unknown-model"):
        assert found[name] == [], (name, found[name])


def answer(status: int, body: object, headers: dict | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers or {})


PROBE = badrequests.Probe("p", "v2", b"{}", says=("inputs",))
HUGE = badrequests.Probe("h", "v1", b"{}", status=None, finite_ok=True)


@pytest.mark.parametrize(
    ("probe", "response", "problem"),
    [
        (PROBE, answer(400, {"error": "inputs: Field required"}), None),
        (PROBE, answer(500, {"error": "ValueError"}), "a 500 (a server error)"),
        (PROBE, answer(200, {"outputs": []}), "a 200 with a wrong success"),
        (PROBE, answer(422, {"detail": [{"msg": "x"}]}), "expected 400, got 422"),
        (PROBE, answer(400, {"detail": "inputs"}), 'not {"error": "<message>"}'),
        (PROBE, answer(400, b"inputs missing"), "the error is not JSON"),
        (PROBE, answer(400, {"error": "no"}), "does not say ['inputs']"),
        (HUGE, answer(200, {"predictions": [1.5, 2.0]}), None),
        (HUGE, answer(200, b'{"predictions": [NaN]}'), "NaN or infinity"),
        (HUGE, answer(200, {"outputs": [{"data": [None], "parameters": None}]}), "null where"),
        (HUGE, answer(413, {"error": "too large"}), None),
    ],
)
def test_the_suite_judges_an_answer(probe, response: httpx.Response, problem: str | None) -> None:
    found = badrequests.judge(probe, response)
    if problem is None:
        assert found == []
    else:
        assert found and problem in found[0], found


def test_binary_requests_carry_every_input_after_the_json() -> None:
    request = {
        "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.5]},
            {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["ab", "\u00e9"]},
        ]
    }
    body, headers = badrequests.binary_request(request, binary_output=True)
    length = int(headers[badrequests.HEADER])
    head = json.loads(body[:length])
    assert head["parameters"] == {"binary_data_output": True}
    x, s = head["inputs"]
    assert "data" not in x and x["parameters"] == {"binary_data_size": 16}
    assert np.frombuffer(body[length : length + 16], "<f4").tolist() == [1.0, 2.0, 3.0, 4.5]
    assert body[length + 16 :] == b"\x02\x00\x00\x00ab\x02\x00\x00\x00\xc3\xa9"
    assert s["parameters"] == {"binary_data_size": 12}
    assert request["inputs"][0]["data"] == [1.0, 2.0, 3.0, 4.5]  # the request is left as it was


def test_probe_names_are_unique_and_big_bodies_are_made_as_they_are_sent() -> None:
    probes = badrequests.probes(GOOD_V1, GOOD_V2, max_request_bytes=64 << 20)
    assert len({p.name for p in probes}) == len(probes)
    big = [p for p in probes if "over-the-limit" in p.name]
    assert len(big) == 6 and all(p.body is None for p in big)
    sent = sum(len(chunk) for chunk in big[0].chunks())
    assert sent == (64 << 20) + 1 == int(big[0].headers["content-length"])

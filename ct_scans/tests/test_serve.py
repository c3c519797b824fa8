"""ct_scans.serve as the InferenceService runs it, against `model.project` in process.

The module trains once (`python -m ct_scans.train --sample --rank 48`: the noisy phantom, at
full rank, k = its 48 slices, so that percent 0 can be checked against the scan itself) and
starts one server from manifests/inferenceservice.yaml on a free 127.0.0.1 port with that folder
as /mnt/models. The slices sent are new noisy draws of the phantom (noise seed 2; the trained
scan has seed 1). Served V1 and V2 answers must equal `model.project` within FP32 rounding
(1e-5 relative, 1e-3 HU absolute), denoising must raise the PSNR against the phantom's truth,
and bad requests must get a 400 that says what was expected while the server keeps serving.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from ct_scans import data, model
from ct_scans.sample import make_request
from ct_scans.serve import DEFAULT_MAX_REQUEST_BYTES
from tests.harness import badrequests
from tests.harness.serving import Server, serve

CASE = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE.parent
ISVC = CASE / "manifests" / "inferenceservice.yaml"
V1 = "/v1/models/ct-scans:predict"
V2 = "/v2/models/ct-scans/infer"
SIDE = data.PHANTOM_SHAPE[1]  # the sample's slices are 64 x 64
RANK = data.PHANTOM_SHAPE[0]  # 48: every singular value of the sample scan
INDICES = [10, 24, 40]  # slices near the top, in the middle, near the bottom of the head
ZERO = [[0] * SIDE] * SIDE


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ct-serve")


@pytest.fixture(scope="module")
def model_dir(workdir: Path) -> Path:
    """basis.npz of the sample scan at full rank; data.phantom_folder(workdir/data) holds the scan."""
    model_dir = workdir / "model"
    cmd = [sys.executable, "-m", "ct_scans.train", "--sample", "--rank", str(RANK)]
    cmd += ["--model-dir", str(model_dir), "--data-dir", str(workdir / "data")]
    run = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return model_dir


@pytest.fixture(scope="module")
def server(workdir: Path, model_dir: Path) -> Iterator[Server]:
    with serve(ISVC, workdir=workdir, model_dir=model_dir, timeout=120) as running:
        yield running


@pytest.fixture(scope="module")
def basis(model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(model_dir / "basis.npz") as stored:
        return stored["u"], stored["s"]


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return data.phantom()[INDICES]


@pytest.fixture(scope="module")
def slices() -> np.ndarray:
    """Three slices of the phantom with noise the basis has not seen, float32 (3, 64, 64)."""
    return data.noisy(data.phantom(), seed=2)[INDICES]


def projected(basis, slices: np.ndarray, percent: float) -> np.ndarray:
    """What the server must answer: `model.project` of the slices as float32 pixel columns."""
    u, s = basis
    columns = data.to_matrix(np.asarray(slices, np.float32))
    return data.to_volume(model.project(u, s, columns, percent), SIDE, SIDE)


def assert_fp32_equal(served, expected) -> None:
    np.testing.assert_allclose(np.asarray(served), expected, rtol=1e-5, atol=1e-3)


def v2_slices(slices, datatype: str = "FP32", shape: list[int] | None = None) -> dict:
    slices = np.asarray(slices)
    shape = list(slices.shape) if shape is None else shape
    return {"name": "slices", "shape": shape, "datatype": datatype, "data": slices.ravel().tolist()}


def v2_percent(value, datatype: str = "FP64", shape: tuple[int, ...] = (1,)) -> dict:
    return {"name": "percent", "shape": list(shape), "datatype": datatype, "data": [value]}


def v2_denoised(response: httpx.Response) -> tuple[np.ndarray, dict]:
    assert response.status_code == 200, response.text
    body = response.json()
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"]) == ("denoised", "FP32")
    return np.reshape(output["data"], output["shape"]), body["parameters"]


def v1_denoised(response: httpx.Response) -> tuple[np.ndarray, dict]:
    assert response.status_code == 200, response.text
    body = response.json()
    return np.asarray(body.pop("predictions")), body


# --- the answers are model.project's ---------------------------------------------------------------


def test_v2_fp32_volume_equals_svd_project(server: Server, basis, slices) -> None:
    response = server.v2_infer([v2_slices(slices)], id="scan-7", parameters={"percent": 5})
    denoised, parameters = v2_denoised(response)
    assert denoised.shape == (3, SIDE, SIDE)
    assert_fp32_equal(denoised, projected(basis, slices, 5))
    assert parameters == {"percent": 5.0, "kept": model.kept(basis[1], 5)}
    assert response.json()["id"] == "scan-7"


def test_v2_int16_with_percent_as_a_tensor(server: Server, basis, slices) -> None:
    whole = np.rint(slices).astype(np.int16)  # as DICOM stores them
    inputs = [v2_slices(whole, "INT16"), v2_percent(10.0)]
    denoised, parameters = v2_denoised(server.v2_infer(inputs))
    assert_fp32_equal(denoised, projected(basis, whole, 10))
    assert parameters["kept"] == model.kept(basis[1], 10) < model.kept(basis[1], 5)


def test_v1_equals_svd_project_with_percent_and_by_default(server: Server, basis, slices) -> None:
    denoised, extra = v1_denoised(server.v1_predict(slices.tolist(), percent=1))
    assert_fp32_equal(denoised, projected(basis, slices, 1))
    assert extra == {"percent": 1.0, "kept": model.kept(basis[1], 1)}
    denoised, extra = v1_denoised(server.v1_predict(slices[:1].tolist()))
    assert_fp32_equal(denoised, projected(basis, slices[:1], 5))  # the case's default, 5 %
    assert extra["percent"] == 5.0


def test_v2_binary_data_extension_both_ways(server: Server, basis, slices) -> None:
    # How a full-size volume should travel: raw INT16 bytes in, raw FP32 bytes out.
    whole = np.rint(slices).astype(np.int16)
    raw = whole.astype("<i2").tobytes()
    head = {
        "inputs": [
            {
                "name": "slices",
                "shape": list(whole.shape),
                "datatype": "INT16",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True, "percent": 5},
    }
    header = json.dumps(head).encode()
    sent = {"inference-header-content-length": str(len(header))}
    sent["content-type"] = "application/octet-stream"  # JSON and bytes: not application/json
    response = server.post(V2, header + raw, sent)
    assert response.status_code == 200, response.text
    json_length = int(response.headers["inference-header-content-length"])
    (output,) = json.loads(response.content[:json_length])["outputs"]
    assert output["shape"] == list(whole.shape) and output["datatype"] == "FP32"
    denoised = np.frombuffer(response.content[json_length:], "<f4").reshape(whole.shape)
    assert_fp32_equal(denoised, projected(basis, whole, 5))


def test_denoising_raises_the_psnr(server: Server, slices, truth) -> None:
    denoised, _ = v2_denoised(server.v2_infer([v2_slices(slices)]))
    peak = float(np.ptp(data.phantom()))
    for clean, noisy, answer in zip(truth, slices, denoised, strict=True):
        # About +3 to +5 dB here: projecting onto 18 of 4096 directions drops most new noise.
        assert model.psnr(clean, answer, peak) > model.psnr(clean, noisy, peak) + 2.0


def test_percent_zero_projects_onto_the_whole_basis(server: Server, basis, slices) -> None:
    # Percent 0 keeps all k = 48 singular values: the answer is U U^T x, x projected onto the
    # whole stored basis. For a new slice that is not x (48 directions of 4096 pixels) but a
    # fixed point: projecting the answer again changes nothing.
    once, parameters = v1_denoised(server.v1_predict(slices.tolist(), percent=0))
    assert parameters["kept"] == len(basis[1]) == RANK
    assert_fp32_equal(once, projected(basis, slices, 0))
    assert np.abs(once - slices).max() > 100  # most of the new noise is gone
    twice, _ = v1_denoised(server.v1_predict(once.tolist(), percent=0))
    np.testing.assert_allclose(twice, once, atol=0.05)


def test_percent_zero_gives_back_the_slices_of_the_trained_scan(server: Server, workdir) -> None:
    # At full rank U spans every slice of the scan it came from: those come back unchanged.
    scan = data.read_series(data.phantom_folder(workdir / "data")).volume[
        INDICES
    ]  # what train read
    answer, _ = v1_denoised(server.v1_predict(scan.tolist(), percent=0))
    np.testing.assert_allclose(answer, scan, atol=0.05)


def test_the_committed_sample_request(server: Server) -> None:
    text = (CASE / "sample" / "request.json").read_text()
    assert text == make_request.render(make_request.request_body()), (
        "sample/request.json differs: python -m ct_scans.sample.make_request"
    )
    assert len(text) < 60_000
    denoised, parameters = v2_denoised(server.post(V2, json.loads(text)))
    assert denoised.shape == (1, SIDE, SIDE) and parameters["percent"] == 5.0
    clean = data.phantom()[make_request.SLICE_INDEX]
    noisy = make_request.noisy_slice()[0]
    peak = float(np.ptp(data.phantom()))
    assert model.psnr(clean, denoised[0], peak) > model.psnr(clean, noisy, peak) + 2.0


def test_model_metadata_names_the_tensors(server: Server) -> None:
    metadata = server.get("/v2/models/ct-scans").json()
    assert metadata["inputs"][0] == {"name": "slices", "datatype": "FP32", "shape": [-1, 64, 64]}
    assert metadata["outputs"] == [{"name": "denoised", "datatype": "FP32", "shape": [-1, 64, 64]}]


# --- bad requests ---------------------------------------------------------------------------------

NAN = float("nan")
BAD_REQUESTS = [
    ("v1-shape", V1, {"instances": [[[0] * 63] * 64]}, "expected shape [64, 64]"),
    ("v1-flat", V1, {"instances": [[0] * 4096]}, "basis's 64x64 pixels"),
    ("v1-strings", V1, {"instances": [[["a"] * 64] * 64]}, "expected numbers"),
    ("v1-null", V1, {"instances": [None]}, "expected numbers"),
    ("v1-ragged", V1, {"instances": [[[0] * 64] * 63 + [[0] * 3]]}, "64x64 array"),
    ("v1-beyond-fp32", V1, {"instances": [[[1e39] * 64] * 64]}, "finite Hounsfield units"),
    ("v1-nan", V1, json.dumps({"instances": [[[NAN] * 64] * 64]}), "Unrecognized request"),
    ("v1-empty", V1, {"instances": []}, "at least one slice"),
    ("v1-too-many", V1, {"instances": [ZERO] * 33}, "at most 32 slices"),
    ("v1-missing", V1, {"slices": [ZERO]}, "'instances' list"),
    ("v1-not-json", V1, b"this is not json", "Unrecognized request format"),
    ("v1-percent-100", V1, {"instances": [ZERO], "percent": 100}, "in [0, 100)"),
    ("v1-percent-negative", V1, {"instances": [ZERO], "percent": -1}, "in [0, 100)"),
    ("v1-percent-text", V1, {"instances": [ZERO], "percent": "5"}, "expected a number"),
    ("v1-percent-bool", V1, {"instances": [ZERO], "percent": True}, "expected a number"),
    ("v2-shape", V2, {"inputs": [v2_slices([[[0] * 63] * 64])]}, "expected shape [N, 64, 64]"),
    ("v2-one-slice-2d", V2, {"inputs": [v2_slices(ZERO)]}, "expected shape [N, 64, 64]"),
    ("v2-short", V2, {"inputs": [v2_slices([ZERO], shape=[2, 64, 64])]}, "does not match"),
    ("v2-strings", V2, {"inputs": [v2_slices([[["a"] * 64] * 64])]}, "does not match FP32"),
    (
        "v2-nan",
        V2,
        json.dumps({"inputs": [v2_slices([[[NAN] * 64] * 64])]}),
        "finite Hounsfield units",
    ),
    (
        "v2-inf",
        V2,
        json.dumps({"inputs": [v2_slices([[[float("inf")] * 64] * 64], "FP64")]}),
        "finite Hounsfield units",
    ),
    ("v2-fp64-beyond-fp32", V2, {"inputs": [v2_slices([[[1e300] * 64] * 64], "FP64")]}, "FP32"),
    ("v2-int16-overflow", V2, {"inputs": [v2_slices([[[40000] * 64] * 64], "INT16")]}, "INT16"),
    ("v2-int-fraction", V2, {"inputs": [v2_slices([[[0.5] * 64] * 64], "INT32")]}, "whole"),
    ("v2-bool", V2, {"inputs": [v2_slices([[[True] * 64] * 64], "BOOL")]}, "expected datatype"),
    ("v2-empty", V2, {"inputs": [v2_slices(np.zeros((0, 64, 64)))]}, "at least one slice"),
    ("v2-minus-one", V2, {"inputs": [v2_slices([ZERO], shape=[-1, 64, 64])]}, "at least one"),
    ("v2-too-many", V2, {"inputs": [v2_slices([ZERO] * 33)]}, "at most 32 slices"),
    (
        "v2-two-tensors",
        V2,
        {"inputs": [v2_slices([ZERO]), {**v2_slices([ZERO]), "name": "volume"}]},
        "one input tensor of slices",
    ),
    ("v2-misnamed", V2, {"inputs": [{**v2_slices([ZERO]), "name": "slice"}]}, "'slices'"),
    (
        "v1-overflowing-projection",
        V1,
        {"instances": [[[3.4e38] * 64] * 64]},
        "the denoised slices came out as NaN or infinity",
    ),
    (
        "v2-percent-100",
        V2,
        {"inputs": [v2_slices([ZERO])], "parameters": {"percent": 100}},
        "in [0, 100)",
    ),
    (
        "v2-percent-text",
        V2,
        {"inputs": [v2_slices([ZERO])], "parameters": {"percent": "five"}},
        "expected a number",
    ),
    (
        "v2-percent-list",
        V2,
        {"inputs": [v2_slices([ZERO])], "parameters": {"percent": [5]}},
        "parameters.percent",
    ),
    ("v2-percent-nan", V2, json.dumps({"inputs": [v2_slices([ZERO]), v2_percent(NAN)]}), "100)"),
    (
        "v2-percent-shape",
        V2,
        {"inputs": [v2_slices([ZERO]), v2_percent(5, shape=(1, 1))]},
        "shape [1]",
    ),
    (
        "v2-percent-twice",
        V2,
        {"inputs": [v2_slices([ZERO]), v2_percent(5)], "parameters": {"percent": 5}},
        "not both",
    ),
    ("v2-missing", V2, {"tensors": []}, "inputs: Field required"),
    ("v2-not-json", V2, b"this is not json", "not valid JSON"),
]


def assert_still_serving(server: Server) -> None:
    assert server.v1_predict([ZERO]).status_code == 200
    assert server.v2_infer([v2_slices([ZERO])]).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_gets_400_saying_what_was_expected(
    server: Server, path: str, body, message: str
) -> None:
    response = server.post(path, body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"], response.text
    assert_still_serving(server)


def test_non_json_content_type_says_json_is_expected(server: Server) -> None:
    response = server.post(V1, "1,2,3", headers={"content-type": "text/csv"})
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["error"]
    assert_still_serving(server)


# The harness's shared suite: every generic malformed request, V1, V2 JSON and binary.
GOOD_V1 = {"instances": [ZERO], "percent": 5}
GOOD_V2 = {"inputs": [v2_slices([ZERO])], "parameters": {"percent": 5}}
SHARED = badrequests.probes(GOOD_V1, GOOD_V2, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES)


@pytest.mark.parametrize("probe", SHARED, ids=str)
def test_shared_bad_request_suite(server: Server, probe: badrequests.Probe) -> None:
    badrequests.check(server, probe, GOOD_V1, GOOD_V2)


def test_percent_as_a_binary_tensor(server: Server, basis, slices) -> None:
    request = {"inputs": [v2_slices(slices), v2_percent(10.0)]}
    body, headers = badrequests.binary_request(request)
    denoised, parameters = v2_denoised(server.post(V2, body, headers))
    assert_fp32_equal(denoised, projected(basis, slices, 10))
    assert parameters["percent"] == 10.0


def test_model_dir_is_spelled_as_in_train_and_kserves_spelling_still_works(tmp_path) -> None:
    from ct_scans.serve import parse_args

    assert parse_args(["--model-dir", str(tmp_path)]).model_dir == tmp_path
    assert parse_args(["--model_dir", str(tmp_path)]).model_dir == tmp_path
    assert parse_args(["--max-slices", "4"]).max_slices == 4

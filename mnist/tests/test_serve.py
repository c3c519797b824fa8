"""mnist.serve as the InferenceService and the SeldonDeployment run it, against the Keras model.

One server per module, started by the harness from manifests/inferenceservice.yaml on a free
127.0.0.1 port with the session's trained model as /mnt/models. Its V1, V2 and PNG answers must
be the in-process Keras model's answers on the same real test digits; bad requests must get a
4xx that says what was expected while the server keeps serving.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from kserve.errors import InvalidInput
from PIL import Image

from mnist import data
from mnist.serve import DEFAULT_MAX_REQUEST_BYTES, png_pixels
from tests.harness import badrequests
from tests.harness.serving import load_inference_service, serve

CASE = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE.parent
ISVC = CASE / "manifests" / "inferenceservice.yaml"
SDEP = CASE / "manifests" / "seldon" / "seldondeployment.yaml"
N_IMAGES = 32
PROB_TOLERANCE = 1e-5
ZEROS = [[0] * 28] * 28
V1 = "/v1/models/mnist:predict"
V2 = "/v2/models/mnist/infer"
CLIENT_LINE = re.compile(r"^(.+): (\d) \(probability ([0-9.]+)\)$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path):
    workdir = tmp_path_factory.mktemp("serve")
    with serve(ISVC, workdir=workdir, model_dir=trained_model_dir, timeout=300) as s:
        yield s


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    """The first N_IMAGES real test digits of the sample (uint8 28x28) and their labels."""
    _, (images, labels) = data.load_sample()
    return images[:N_IMAGES], labels[:N_IMAGES]


@pytest.fixture(scope="module")
def expected(trained_model_dir: Path, sample) -> np.ndarray:
    """The in-process Keras model's probabilities for the sample digits."""
    import keras

    model = keras.saving.load_model(trained_model_dir / "model.keras")
    return np.asarray(model.predict(data.normalize(sample[0]), verbose=0))


def png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    """PNG bytes of an array (uint8 2-D: greyscale), converted to `mode` when given."""
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    (image.convert(mode) if mode else image).save(buffer, "PNG")
    return buffer.getvalue()


def b64png(pixels: np.ndarray) -> str:
    return base64.b64encode(png(pixels)).decode()


def v2_pixels(images, datatype: str = "UINT8", shape: list[int] | None = None) -> dict:
    images = np.asarray(images)
    shape = list(images.shape) if shape is None else shape
    return {"name": "image", "shape": shape, "datatype": datatype, "data": images.ravel().tolist()}


def v2_bytes(items: list, shape: list[int] | None = None) -> dict:
    shape = [len(items)] if shape is None else shape
    return {"name": "image", "shape": shape, "datatype": "BYTES", "data": items}


def v2_answer(response: httpx.Response) -> tuple[list[int], np.ndarray]:
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["digit"]["datatype"] == "INT64"
    assert outputs["probabilities"]["datatype"] == "FP32"
    n = outputs["digit"]["shape"][0]
    assert outputs["probabilities"]["shape"] == [n, 10]
    probabilities = np.asarray(outputs["probabilities"]["data"]).reshape(n, 10)
    return outputs["digit"]["data"], probabilities


def v1_answer(response: httpx.Response) -> tuple[list[int], np.ndarray]:
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    return [p["digit"] for p in predictions], np.asarray([p["probabilities"] for p in predictions])


def assert_same_answers(got: tuple[list[int], np.ndarray], expected: np.ndarray) -> None:
    digits, probabilities = got
    assert digits == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(probabilities, expected, atol=PROB_TOLERANCE)


# --- the answers match the Keras model ----------------------------------------------------------


def test_v1_pixels_match_keras(server, sample, expected) -> None:
    assert_same_answers(v1_answer(server.v1_predict(sample[0].tolist())), expected)


@pytest.mark.parametrize("datatype", ["UINT8", "FP32"])
def test_v2_tensor_matches_keras(server, sample, expected, datatype: str) -> None:
    response = server.v2_infer([v2_pixels(sample[0], datatype)], id="req-7")
    assert_same_answers(v2_answer(response), expected)
    assert response.json()["id"] == "req-7"


def test_png_matches_keras_in_v1_and_v2(server, sample, expected) -> None:
    pngs = [b64png(image) for image in sample[0]]
    assert_same_answers(v1_answer(server.v1_predict([{"b64": p} for p in pngs])), expected)
    assert_same_answers(v2_answer(server.v2_infer([v2_bytes(pngs)])), expected)


def test_model_metadata_names_the_tensors(server) -> None:
    metadata = server.get("/v2/models/mnist").json()
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28]}]
    assert [o["name"] for o in metadata["outputs"]] == ["digit", "probabilities"]


def test_request_json_holds_real_digits_and_gets_them_right(server, trained_model_dir) -> None:
    instances = json.loads((CASE / "sample" / "request.json").read_text())["instances"]
    assert len(instances) == 2
    _, (images, labels) = data.load_sample()
    found = [np.flatnonzero((images == np.asarray(i)).all(axis=(1, 2))) for i in instances]
    assert all(len(f) == 1 for f in found), "request.json must hold digits of the sample"
    digits, _ = v1_answer(server.v1_predict(instances))
    assert digits == [int(labels[f[0]]) for f in found]


# --- PNG rules ------------------------------------------------------------------------------------


def test_png_of_an_mnist_digit_gives_its_exact_pixels(sample) -> None:
    image = sample[0][0]
    np.testing.assert_array_equal(png_pixels(png(image), "x"), image)
    np.testing.assert_array_equal(png_pixels(png(image, "RGB"), "x"), image)


def test_dark_digit_on_light_background_is_inverted(sample) -> None:
    image = sample[0][0]
    np.testing.assert_array_equal(png_pixels(png(255 - image), "x"), image)


def test_transparency_is_flattened_onto_white(sample) -> None:
    # A black digit drawn on a transparent canvas: ink where alpha is high.
    image = sample[0][0]
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = image
    np.testing.assert_allclose(png_pixels(png(rgba), "x"), image, atol=1)


def test_larger_square_png_is_resized_to_28(sample, expected, server) -> None:
    # 4x upscaled with nearest neighbour, then Lanczos brings it back close to the original.
    big = [np.kron(image, np.ones((4, 4), np.uint8)) for image in sample[0]]
    assert big[0].shape == (112, 112)
    pixels = png_pixels(png(big[0]), "x")
    assert pixels.shape == (28, 28)
    assert np.abs(pixels - sample[0][0]).mean() < 5  # of 255: the same digit, resampled
    confident = expected.max(axis=1) > 0.9  # a resampled borderline digit may flip
    digits, _ = v1_answer(server.v1_predict([{"b64": b64png(b)} for b in big]))
    assert np.array(digits)[confident].tolist() == expected.argmax(axis=1)[confident].tolist()


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"GIF89a....", "expected a PNG file"),
        (png(np.zeros((28, 30), np.uint8)), "expected a square PNG"),
        (png(np.zeros((2000, 2000), np.uint8)), "at most 1024 pixels"),
        (png(np.zeros((28, 28), np.uint16)), "8-bit"),
        (png(np.zeros((28, 28), np.uint8))[:50], "could not decode"),
    ],
    ids=["not-png", "non-square", "too-large", "16-bit", "truncated"],
)
def test_bad_pngs_are_refused(blob: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        png_pixels(blob, "x")


# --- the client CLI -------------------------------------------------------------------------------


def run_client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnist.client", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_client_prints_the_digit_of_each_png(
    server, sample, expected, tmp_path: Path, protocol: str
) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"digit{i}.png")
        paths[-1].write_bytes(png(255 - sample[0][i]))  # dark on light, as people draw
    run = run_client("--image", *map(str, paths), "--url", server.url, "--protocol", protocol)
    assert run.returncode == 0, run.stderr
    answers = [CLIENT_LINE.match(line) for line in run.stdout.splitlines()[::2]]
    assert [(a[1], int(a[2])) for a in answers] == [
        (str(p), d) for p, d in zip(paths, expected[:3].argmax(axis=1), strict=True)
    ]
    for answer, probabilities in zip(answers, expected[:3], strict=True):
        assert float(answer[3]) == pytest.approx(probabilities.max(), abs=1e-4)  # 4 decimals
    assert run.stdout.count("  probabilities: 0=") == 3


def test_client_on_the_committed_digit_png(server) -> None:
    pixels = np.asarray(Image.open(CASE / "sample" / "digit.png"))
    _, (images, labels) = data.load_sample()
    index = np.flatnonzero((images == pixels).all(axis=(1, 2)))
    assert len(index) == 1, "sample/digit.png must be a digit of the sample"
    run = run_client("--image", str(CASE / "sample" / "digit.png"), "--url", server.url)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{CASE / 'sample' / 'digit.png'}: {labels[index[0]]} ")


def test_client_exits_1_with_the_servers_message(server, tmp_path: Path) -> None:
    wide = tmp_path / "wide.png"
    wide.write_bytes(png(np.zeros((28, 40), np.uint8)))
    run = run_client("--image", str(wide), "--url", server.url)
    assert run.returncode == 1
    assert "400" in run.stderr and "expected a square PNG" in run.stderr


# --- bad requests -------------------------------------------------------------------------------

BAD_REQUESTS = [
    ("v1-shape", V1, {"instances": [[[0] * 28] * 27]}, 400, "expected shape [28, 28]"),
    ("v1-strings", V1, {"instances": [[["a"] * 28] * 28]}, 400, "expected numbers"),
    ("v1-ragged", V1, {"instances": [[[0] * 28] * 27 + [[0] * 3]]}, 400, "28x28 array"),
    ("v1-above-255", V1, {"instances": [[[256] * 28] * 28]}, 400, "pixel values 0-255"),
    ("v1-negative", V1, {"instances": [[[-1] * 28] * 28]}, 400, "pixel values 0-255"),
    ("v1-null", V1, {"instances": [None]}, 400, "expected numbers"),
    ("v1-nan", V1, json.dumps({"instances": [[[float("nan")] * 28] * 28]}), 400, "format"),
    ("v1-empty", V1, {"instances": []}, 400, "non-empty batch"),
    ("v1-missing", V1, {"images": [ZEROS]}, 400, "'instances' list"),
    ("v1-too-many", V1, {"instances": [ZEROS] * 257}, 400, "at most 256 images"),
    ("v1-not-json", V1, b"this is not json", 400, "Unrecognized request format"),
    ("v1-unknown-key", V1, {"instances": [{"png": "x"}]}, 400, '{"b64": "<base64 PNG>"}'),
    ("v1-bad-base64", V1, {"instances": [{"b64": "!!"}]}, 400, "expected base64"),
    ("v1-not-png", V1, {"instances": [{"b64": "aGVsbG8="}]}, 400, "expected a PNG file"),
    (
        "v1-non-square-png",
        V1,
        {"instances": [{"b64": b64png(np.zeros((20, 28), np.uint8))}]},
        400,
        "expected a square PNG",
    ),
    ("v2-shape", V2, {"inputs": [v2_pixels([0] * 784, shape=[1, 784])]}, 400, "[N, 28, 28]"),
    ("v2-short", V2, {"inputs": [v2_pixels([ZEROS], shape=[2, 28, 28])]}, 400, "does not match"),
    (
        "v2-strings",
        V2,
        {"inputs": [v2_pixels([[["a"] * 28] * 28], "FP32")]},
        400,
        "does not match FP32",
    ),
    (
        "v2-nan",
        V2,
        json.dumps({"inputs": [v2_pixels([[[float("nan")] * 28] * 28], "FP32")]}),
        400,
        "NaN or infinity",
    ),
    (
        "v2-inf",
        V2,
        json.dumps({"inputs": [v2_pixels([[[float("inf")] * 28] * 28], "FP64")]}),
        400,
        "NaN or infinity",
    ),
    ("v2-above-255", V2, {"inputs": [v2_pixels([[[300] * 28] * 28], "FP32")]}, 400, "0-255"),
    ("v2-uint8-overflow", V2, {"inputs": [v2_pixels([[[300] * 28] * 28])]}, 400, "UINT8"),
    ("v2-bool", V2, {"inputs": [v2_pixels([[[True] * 28] * 28], "BOOL")]}, 400, "datatype"),
    ("v2-empty", V2, {"inputs": [v2_pixels(np.zeros((0, 28, 28)))]}, 400, "non-empty batch"),
    ("v2-minus-one", V2, {"inputs": [v2_pixels([ZEROS], shape=[-1, 28, 28])]}, 400, "non-empty"),
    ("v2-too-many", V2, {"inputs": [v2_pixels([ZEROS] * 257)]}, 400, "at most 256 images"),
    (
        "v2-two-inputs",
        V2,
        {"inputs": [v2_pixels([ZEROS]), {**v2_pixels([ZEROS]), "name": "mask"}]},
        400,
        "exactly one input",
    ),
    ("v2-misnamed", V2, {"inputs": [{**v2_pixels([ZEROS]), "name": "images"}]}, 400, "'image'"),
    ("v2-missing", V2, {"tensors": []}, 400, "inputs: Field required"),
    ("v2-not-json", V2, b"this is not json", 400, "not valid JSON"),
    ("v2-bytes-shape", V2, {"inputs": [v2_bytes(["x"], shape=[1, 1])]}, 400, "shape [N]"),
    ("v2-bytes-bad-base64", V2, {"inputs": [v2_bytes(["!!"])]}, 400, "expected base64"),
    (
        "v2-bytes-non-square",
        V2,
        {"inputs": [v2_bytes([b64png(np.zeros((28, 20), np.uint8))])]},
        400,
        "square",
    ),
    ("v1-5MiB", V1, b"0" * (5 << 20), 413, "over the limit of 4194304 bytes"),
    ("v2-5MiB", V2, b"0" * (5 << 20), 413, "over the limit of 4194304 bytes"),
]


def assert_still_serving(server, sample) -> None:
    assert server.v1_predict(sample[0][:1].tolist()).status_code == 200
    assert server.v2_infer([v2_pixels(sample[0][:1])]).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_is_refused_and_the_server_keeps_serving(
    server, sample, path: str, body, status: int, message: str
) -> None:
    response = server.post(path, body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert_still_serving(server, sample)


def test_non_json_content_type_says_json_is_expected(server, sample) -> None:
    response = server.post(V1, "1,2,3", headers={"content-type": "text/csv"})
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["error"]
    assert_still_serving(server, sample)


@pytest.mark.parametrize("path", [V1, V2])
def test_oversized_chunked_body_gets_413(server, sample, path: str) -> None:
    # No Content-Length: the limit must hold while the body streams in.
    def chunks():
        for _ in range(80):
            yield b"0" * (64 << 10)

    response = httpx.post(
        server.url + path,
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert "over the limit" in response.json()["error"]
    assert_still_serving(server, sample)


# The harness's shared suite: every generic malformed request, V1, V2 JSON and binary.
GOOD_V1 = {"instances": [ZEROS]}
GOOD_V2 = {"inputs": [v2_pixels([ZEROS])]}
SHARED = badrequests.probes(GOOD_V1, GOOD_V2, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES)


@pytest.mark.parametrize("probe", SHARED, ids=str)
def test_shared_bad_request_suite(server, probe: badrequests.Probe) -> None:
    badrequests.check(server, probe, GOOD_V1, GOOD_V2)


# --- the binary-data extension --------------------------------------------------------------------


def post_binary(server, request: dict, binary_output: bool = False) -> httpx.Response:
    body, headers = badrequests.binary_request(request, binary_output=binary_output)
    return server.post(V2, body, headers)


def binary_answer(response: httpx.Response) -> tuple[list[int], np.ndarray]:
    """digit and probabilities from an answer with raw outputs after its JSON."""
    assert response.status_code == 200, response.text
    length = int(response.headers[badrequests.HEADER])
    outputs, offset, raw = json.loads(response.content[:length])["outputs"], length, {}
    for output in outputs:
        size = output["parameters"]["binary_data_size"]
        raw[output["name"]] = response.content[offset : offset + size]
        offset += size
    assert offset == len(response.content)
    digits = np.frombuffer(raw["digit"], "<i8").tolist()
    return digits, np.frombuffer(raw["probabilities"], "<f4").reshape(-1, 10)


def test_binary_pixels_in_and_out_match_keras(server, sample, expected) -> None:
    request = {"inputs": [v2_pixels(sample[0])]}  # UINT8: one byte a pixel after the JSON
    assert_same_answers(v2_answer(post_binary(server, request)), expected)
    assert_same_answers(binary_answer(post_binary(server, request, binary_output=True)), expected)


def test_raw_png_bytes_over_binary_v2_match_keras(server, sample, expected) -> None:
    # The documented path that got a 500 from KServe 0.21: it decodes BYTES as UTF-8 text.
    pngs = [png(image) for image in sample[0]]
    response = post_binary(server, {"inputs": [v2_bytes(pngs)]})
    assert_same_answers(v2_answer(response), expected)


def test_one_output_asked_for_by_name(server, sample, expected) -> None:
    request = {"inputs": [v2_pixels(sample[0][:2])], "outputs": [{"name": "digit"}]}
    response = server.post(V2, request)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["name"] == "digit" and output["data"] == expected[:2].argmax(axis=1).tolist()


def test_v1_probabilities_are_float32_in_their_shortest_decimals(server, sample) -> None:
    text = server.v1_predict(sample[0][:1].tolist()).text
    numbers = re.findall(r"[0-9][0-9.]*(?:e-?[0-9]+)?", text.split('"probabilities"')[1])
    for number in numbers:
        digits = number.split("e")[0].replace(".", "").lstrip("0")
        assert len(digits) <= 9, number  # a float32 needs at most 9; "0.9980999827384949"
        assert np.float32(number) == np.float32(float(number))


# --- the command line -----------------------------------------------------------------------------


def test_model_dir_is_spelled_as_in_train_and_kserves_spelling_still_works(tmp_path) -> None:
    from mnist.serve import parse_args

    assert parse_args(["--model-dir", str(tmp_path)]).model_dir == tmp_path
    assert parse_args(["--model_dir", str(tmp_path)]).model_dir == tmp_path
    assert parse_args(["--max-batch-size", "8"]).max_batch_size == 8


@pytest.mark.parametrize("flag", ["--max-batch-size", "--max-request-bytes"])
def test_a_bad_limit_is_a_usage_error(capsys, flag: str) -> None:
    from mnist.serve import parse_args

    with pytest.raises(SystemExit) as exit_:
        parse_args([flag, "0"])
    assert exit_.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_a_missing_model_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "mnist.serve", "--model-dir", str(tmp_path / "none")]
    run = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("serve.py: error: no model at")


# --- the SeldonDeployment runs the same server --------------------------------------------------


def seldon_container() -> tuple[dict, dict]:
    sdep = yaml.safe_load(SDEP.read_text())
    predictor = sdep["spec"]["predictors"][0]
    return sdep, predictor["componentSpecs"][0]["spec"]


def test_seldon_runs_the_inference_service_container() -> None:
    isvc = load_inference_service(ISVC)["spec"]["predictor"]["containers"][0]
    sdep, pod = seldon_container()
    container = pod["containers"][0]
    for field in ("image", "command", "args", "resources", "securityContext", "readinessProbe"):
        assert container[field] == isvc[field], field
    assert sdep["spec"]["protocol"] == "v2"
    assert sdep["spec"]["predictors"][0]["graph"]["name"] == container["name"]
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    # The same model folder as the InferenceService's pvc://mnist-models/mnist.
    storage = {e["name"]: e["value"] for e in isvc["env"]}["STORAGE_URI"]
    mount = container["volumeMounts"][0]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim_uri = f"pvc://{volume['persistentVolumeClaim']['claimName']}/{mount['subPath']}"
    assert (mount["mountPath"], claim_uri) == ("/mnt/models", storage)


def test_seldon_command_answers_v2(tmp_path: Path, trained_model_dir: Path, sample, expected):
    sdep, pod = seldon_container()
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": sdep["spec"]["predictors"][0]["graph"]["name"]},
        "spec": {"predictor": {"containers": pod["containers"]}},
    }
    with serve(isvc, workdir=tmp_path, model_dir=trained_model_dir, timeout=300) as seldon:
        response = seldon.post(V2, {"inputs": [v2_pixels(sample[0][:4])]})
    assert_same_answers(v2_answer(response), expected[:4])

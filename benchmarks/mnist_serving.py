"""The mnist model server against the in-process calls it makes: requests/s and p50/p99 latency.

    python -m benchmarks mnist_serving      # about 1 to 2 minutes on 2 cores

A model is trained once on the sample (2 epochs, into a temporary folder) and served as
mnist/manifests/inferenceservice.yaml describes, through tests.harness.serving on 127.0.0.1.
Rows, each at batch 1 and batch 32 (the first images of the sample's test split, uint8 pixels):

* `v1`: POST /v1/models/mnist:predict, `instances` of 28x28 pixel lists;
* `v2`: POST /v2/models/mnist/infer, one UINT8 tensor [N, 28, 28];
* `predict_on_batch`: in this process, `MnistModel.classify`, i.e. normalize + Keras
  `predict_on_batch`, exactly what the server runs per request: the floor of the HTTP rows;
* `model_predict`: in this process, normalize + Keras `model.predict(verbose=0)`, the call a
  server would naively make, for scale.

One client, one request at a time over one keep-alive connection (so requests/s is 1 / mean
latency, not a throughput under concurrency); request bodies are encoded once beforehand, so the
HTTP rows time the network, the server's parsing and validation, the model and the client's read
of the answer. Each row runs MAX_REQUESTS requests or MAX_SECONDS seconds, whichever ends first,
after WARMUP untimed ones; each HTTP row also checks its first answer's digits against the model.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from benchmarks.mnist_training import run_logged

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = REPO_ROOT / "mnist" / "manifests" / "inferenceservice.yaml"
TRAIN_EPOCHS = 2
BATCHES = (1, 32)
MAX_REQUESTS = 500
MAX_SECONDS = 5.0
WARMUP = 5
SERVER_START_TIMEOUT = 300  # seconds; a loaded machine imports TensorFlow slowly
# Each row's figures are read against the same figures of another row, for this reason:
READ_AGAINST = {
    "predict_on_batch": "model_predict",
    "model_predict": "predict_on_batch",
    "v1": "predict_on_batch",
    "v2": "predict_on_batch",
}
WHY = {
    "predict_on_batch": "what the server computes per request, in process",
    "model_predict": "the naive in-process call",
}


def measure(
    call: Callable[[], object],
    max_requests: int = MAX_REQUESTS,
    max_seconds: float = MAX_SECONDS,
    warmup: int = WARMUP,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[float], float]:
    """(latency of each timed call in seconds, total seconds): `warmup` untimed calls first,
    then calls one after another until max_requests are done or max_seconds have passed."""
    for _ in range(warmup):
        call()
    latencies: list[float] = []
    start = clock()
    while len(latencies) < max_requests and clock() - start < max_seconds:
        before = clock()
        call()
        latencies.append(clock() - before)
    return latencies, clock() - start


def summarize(latencies: Sequence[float], seconds: float) -> dict[str, float]:
    """requests, requests_per_second, p50_ms and p99_ms (linear interpolation between ranks)."""
    if not latencies or seconds <= 0:
        raise ValueError("nothing was measured")
    ms = np.asarray(latencies) * 1000.0
    return {
        "requests": len(latencies),
        "requests_per_second": len(latencies) / seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def figures(row: str, batch: int, stats: dict, against: str, against_stats: dict) -> Iterator[dict]:
    """The three figures of one row, each named against the same figure of row `against`."""
    units = {"requests_per_second": "requests/s", "p50_ms": "ms", "p99_ms": "ms"}
    for metric, unit in units.items():
        other = against_stats[metric]
        yield {
            "name": f"{row}_batch{batch}_{metric}",
            "value": round(stats[metric], 2),
            "unit": unit,
            "compared_with": f"{against}_batch{batch}_{metric} ({other:.2f} {unit}), "
            f"{WHY[against]}",
            "batch": batch,
            "requests": stats["requests"],
            "images_per_second": round(stats["requests_per_second"] * batch, 1),
            "bounds": f"{MAX_REQUESTS} requests or {MAX_SECONDS:.0f} s, after {WARMUP} warm-up",
        }


def v1_body(images: np.ndarray) -> bytes:
    return json.dumps({"instances": images.tolist()}).encode()


def v2_body(images: np.ndarray) -> bytes:
    tensor = {
        "name": "image",
        "shape": list(images.shape),
        "datatype": "UINT8",
        "data": images.ravel().tolist(),
    }
    return json.dumps({"inputs": [tensor]}).encode()


def answered_digits(protocol: str, answer: dict) -> list[int]:
    if protocol == "v1":
        return [p["digit"] for p in answer["predictions"]]
    return next(o["data"] for o in answer["outputs"] if o["name"] == "digit")


def http_call(server, protocol: str, images: np.ndarray, expected: list[int]) -> Callable:
    """A call that posts the images and fails on an error; it checks the digits of its first answer."""
    path = (
        f"/v1/models/{server.model_name}:predict"
        if protocol == "v1"
        else f"/v2/models/{server.model_name}/infer"
    )
    body = v1_body(images) if protocol == "v1" else v2_body(images)
    checked = False

    def call() -> None:
        nonlocal checked
        response = server.post(path, body)
        if response.status_code != 200:
            raise RuntimeError(f"{protocol} answered {response.status_code}: {response.text}")
        if not checked:
            digits = answered_digits(protocol, response.json())
            if digits != expected:
                raise RuntimeError(f"{protocol} answered {digits}, the model says {expected}")
            checked = True

    return call


def run() -> Iterator[dict]:
    from mnist import data
    from mnist.serve import MnistModel
    from tests.harness.serving import serve

    _, (test_x, _) = data.load_sample()
    with tempfile.TemporaryDirectory(prefix="bench-mnist-serving-") as tmp:
        workdir, model_dir = Path(tmp), Path(tmp) / "model"
        print(f"mnist_serving: training {TRAIN_EPOCHS} epochs on the sample ...", file=sys.stderr)
        argv = [sys.executable, "-m", "mnist.train", "--sample", f"--epochs={TRAIN_EPOCHS}"]
        run_logged([*argv, f"--model-dir={model_dir}"], workdir / "train.log", "train")

        served = MnistModel("mnist", model_dir)
        served.load()
        rows: dict[tuple[str, int], dict] = {}
        for batch in BATCHES:
            images = test_x[:batch]
            print(f"mnist_serving: in process, batch {batch} ...", file=sys.stderr)
            rows["predict_on_batch", batch] = summarize(
                *measure(lambda images=images: served.classify(images))
            )
            rows["model_predict", batch] = summarize(
                *measure(
                    lambda images=images: served.model.predict(data.normalize(images), verbose=0)
                )
            )

        print("mnist_serving: starting the server ...", file=sys.stderr)
        with serve(
            MANIFEST, workdir=workdir, model_dir=model_dir, timeout=SERVER_START_TIMEOUT
        ) as server:
            for batch in BATCHES:
                images = test_x[:batch]
                expected = served.classify(images).argmax(axis=1).tolist()
                for protocol in ("v1", "v2"):
                    print(f"mnist_serving: {protocol}, batch {batch} ...", file=sys.stderr)
                    call = http_call(server, protocol, images, expected)
                    rows[protocol, batch] = summarize(*measure(call))

    for batch in BATCHES:
        for row, against in READ_AGAINST.items():
            yield from figures(row, batch, rows[row, batch], against, rows[against, batch])

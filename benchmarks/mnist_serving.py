"""The mnist model server against the same model in process and behind a bare FastAPI endpoint.

    python -m benchmarks mnist_serving      # about 2 to 3 minutes on 2 cores

A model is trained once on the sample (2 epochs, into a temporary folder) and served as
mnist/manifests/inferenceservice.yaml describes, through tests.harness.serving on 127.0.0.1.
Rows, each at batch 1 and batch 32 (the first images of the sample's test split, uint8 pixels):

* `v1`: POST /v1/models/mnist:predict, `instances` of 28x28 pixel lists;
* `v2`: POST /v2/models/mnist/infer, one UINT8 tensor [N, 28, 28] as JSON;
* `v2_binary`: the same tensor with the binary-data extension (raw bytes after the JSON);
* `floor_v1`, `floor_v2`, `floor_v2_binary`: the same three requests to a bare FastAPI endpoint
  around the same `MnistModel.classify` (benchmarks/_floor.py): what any server must do;
* `predict_on_batch`: in this process, `MnistModel.classify`, i.e. normalize + Keras
  `predict_on_batch`, exactly what the server runs per request: the floor of every HTTP row;
* `model_predict`: in this process, normalize + Keras `model.predict(verbose=0)`, the call a
  server would naively make, for scale (timed on its own: it is 100 times slower).

One client, one request at a time over one keep-alive connection per server (so requests/s is
1 / mean latency, not a throughput under concurrency); request bodies are encoded once
beforehand. The rows take turns call by call (benchmarks/_serving.py), MAX_REQUESTS rounds or
MAX_SECONDS, after WARMUP untimed rounds; each HTTP row checks its first answer's digits against
the model. Besides each row's figures, `<protocol>_batch<N>_p50_over_floor` gives the served
p50 over the floor's, from the same run.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from benchmarks import _serving
from benchmarks.mnist_training import run_logged

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = REPO_ROOT / "mnist" / "manifests" / "inferenceservice.yaml"
TRAIN_EPOCHS = 2
BATCHES = (1, 32)
MAX_REQUESTS = 500
MAX_SECONDS = 5.0  # per row timed alone (model_predict)
ROUND_SECONDS = 30.0  # per batch, for the rows that take turns
WARMUP = 5
SERVER_START_TIMEOUT = 300  # seconds; a loaded machine imports TensorFlow slowly
# Each row's figures are read against the same figures of another row, for this reason:
READ_AGAINST = {
    "predict_on_batch": "model_predict",
    "model_predict": "predict_on_batch",
    "floor_v1": "predict_on_batch",
    "floor_v2": "predict_on_batch",
    "floor_v2_binary": "predict_on_batch",
    "v1": "floor_v1",
    "v2": "floor_v2",
    "v2_binary": "floor_v2_binary",
}
WHY = {
    "predict_on_batch": "what the server computes per request, in process",
    "model_predict": "the naive in-process call",
    "floor_v1": "a bare FastAPI endpoint around the same model, V1",
    "floor_v2": "a bare FastAPI endpoint around the same model, V2 JSON",
    "floor_v2_binary": "a bare FastAPI endpoint around the same model, V2 binary data",
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
            "times_against": round(stats[metric] / other, 2) if other else None,
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


def digit_checks(expected: list[int]) -> dict:
    """protocol -> a check of an answer's digits against the model's."""

    def check(protocol: str):
        def read(answer: dict) -> None:
            digits = answered_digits("v1" if protocol == "v1" else "v2", answer)
            if digits != expected:
                raise RuntimeError(f"{protocol} answered {digits}, the model says {expected}")

        return read

    return {protocol: check(protocol) for protocol in _serving.PROTOCOLS}


def run() -> Iterator[dict]:
    import httpx

    from mnist import data
    from mnist.serve import MnistModel
    from tests.harness.serving import serve

    _, (test_x, _) = data.load_sample()
    with (
        _serving.one_thread(),
        tempfile.TemporaryDirectory(prefix="bench-mnist-serving-") as tmp,
    ):
        workdir, model_dir = Path(tmp), Path(tmp) / "model"
        print(f"mnist_serving: training {TRAIN_EPOCHS} epochs on the sample ...", file=sys.stderr)
        argv = [sys.executable, "-m", "mnist.train", "--sample", f"--epochs={TRAIN_EPOCHS}"]
        run_logged([*argv, f"--model-dir={model_dir}"], workdir / "train.log", "train")

        served = MnistModel("mnist", model_dir)
        served.load()
        rows: dict[tuple[str, int], dict] = {}
        for batch in BATCHES:
            images = test_x[:batch]
            print(f"mnist_serving: model.predict, batch {batch} ...", file=sys.stderr)
            rows["model_predict", batch] = summarize(
                *measure(
                    lambda images=images: served.model.predict(data.normalize(images), verbose=0)
                )
            )

        print("mnist_serving: starting the server and the floor ...", file=sys.stderr)
        with (
            serve(
                MANIFEST, workdir=workdir, model_dir=model_dir, timeout=SERVER_START_TIMEOUT
            ) as server,
            _serving.floor("mnist", model_dir, workdir, SERVER_START_TIMEOUT) as floor_url,
            httpx.Client(base_url=server.url, timeout=60) as served_client,
            httpx.Client(base_url=floor_url, timeout=60) as floor_client,
        ):
            for batch in BATCHES:
                images = test_x[:batch]
                expected = served.classify(images).argmax(axis=1).tolist()
                sent = _serving.bodies({"instances": images.tolist()}, json.loads(v2_body(images)))
                checks = digit_checks(expected)
                calls = {"predict_on_batch": lambda images=images: served.classify(images)}
                calls |= _serving.endpoint_calls("floor_", floor_client, "mnist", sent, checks)
                calls |= _serving.endpoint_calls("", served_client, "mnist", sent, checks)
                print(
                    f"mnist_serving: {len(calls)} rows taking turns, batch {batch} ...",
                    file=sys.stderr,
                )
                timed = _serving.measure_alternating(
                    calls, MAX_REQUESTS, warmup=WARMUP, max_seconds=ROUND_SECONDS
                )
                for row, latencies in timed.items():
                    rows[row, batch] = summarize(latencies, sum(latencies))

    for batch in BATCHES:
        for row, against in READ_AGAINST.items():
            yield from figures(row, batch, rows[row, batch], against, rows[against, batch])
        yield from _serving.ratio_figures(rows, batch, "predict_on_batch")

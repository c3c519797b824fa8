"""The imdb_sentiment model server against the same model in process and behind a bare FastAPI
endpoint, for both models.

    python -m benchmarks imdb_serving      # about 2 to 4 minutes on 2 cores

Both models are trained once on the sample (the BiLSTM with case.toml's smoke arguments, the
TF-IDF baseline), each into a temporary folder, and served in turn as
imdb_sentiment/manifests/inferenceservice.yaml describes, through tests.harness.serving on
127.0.0.1. Rows, each at batch 1 and batch 64 (the first reviews of the sample's test split, raw
text with its <br /> line breaks):

* `in_process`: `SentimentServer.score` in this process, i.e. SentimentModel.probabilities
  (the model's own cleaning, the prediction, the calibration), exactly what the server and the
  floor compute per request;
* `v1`: POST /v1/models/imdb:predict, `instances` of review strings;
* `v2`: POST /v2/models/imdb/infer, one BYTES tensor [N] as JSON;
* `v2_binary`: the same tensor with the binary-data extension (length-prefixed UTF-8);
* `floor_v1`, `floor_v2`, `floor_v2_binary`: the same three requests to a bare FastAPI endpoint
  around the same `SentimentModel.probabilities` (benchmarks/_floor.py), which answers what the
  server answers (labels and calibrated `probability_positive`) with no checks and no KServe;
* at batch 1 only, `explain_in_process` (explain.explain, one prediction per distinct word of the
  review) and `explain` (POST /v1/models/imdb:explain, the same review).

One keep-alive client per server, one request at a time (so requests/s is 1 / mean latency, not
a throughput under concurrency); request bodies are encoded once beforehand. The rows of one
batch take turns call by call (benchmarks/_serving.py), MAX_REQUESTS rounds or ROUND_SECONDS,
after WARMUP untimed rounds, every process on one compute thread as the InferenceService's one
CPU would be; each HTTP row checks its first answer's labels against the model. Each figure is
named `<model>_<row>_batch<N>_<metric>` and read against the same figure of another row: a
served row against its floor, a floor against `in_process`, `explain` against
`explain_in_process`; `reviews_per_second` is requests/s times the batch. Besides these,
`<model>_<protocol>_batch<N>_p50_over_floor` gives the served p50 over the floor's (and, in the
same line, each over `in_process`), from the same run.
"""

from __future__ import annotations

import json
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks import _serving
from benchmarks.mnist_serving import summarize
from benchmarks.mnist_training import run_logged

REPO_ROOT = Path(__file__).resolve().parents[1]
CASE = REPO_ROOT / "imdb_sentiment"
MANIFEST = CASE / "manifests" / "inferenceservice.yaml"
MODELS = ("bilstm", "tfidf")
BATCHES = (1, 64)
MAX_REQUESTS = 300
ROUND_SECONDS = 20.0  # per model and batch, for the rows that take turns
WARMUP = 5
SERVER_START_TIMEOUT = 300  # seconds; a loaded machine imports TensorFlow slowly
NAME = "imdb"  # the InferenceService's model name
# Each row's figures are read against the same figures of another row, for this reason:
READ_AGAINST = {
    "floor_v1": "in_process",
    "floor_v2": "in_process",
    "floor_v2_binary": "in_process",
    "v1": "floor_v1",
    "v2": "floor_v2",
    "v2_binary": "floor_v2_binary",
    "explain": "explain_in_process",
}
WHY = {
    "in_process": "SentimentModel.probabilities in process, what the server computes",
    "explain_in_process": "explain.explain in process, what the server computes",
    "floor_v1": "a bare FastAPI endpoint around the same model, V1",
    "floor_v2": "a bare FastAPI endpoint around the same model, V2 JSON",
    "floor_v2_binary": "a bare FastAPI endpoint around the same model, V2 binary data",
}


def train_args(kind: str) -> list[str]:
    """The trainer's flags for one model: the BiLSTM as case.toml's smoke run, TF-IDF on the
    sample."""
    if kind == "tfidf":
        return ["--sample", "--model", "tfidf"]
    return list(tomllib.loads((CASE / "case.toml").read_text())["smoke"]["train_args"])


def v2_request(reviews: list[str]) -> dict:
    tensor = {"name": "review", "shape": [len(reviews)], "datatype": "BYTES", "data": reviews}
    return {"inputs": [tensor]}


def answered_labels(protocol: str, answer: dict) -> list[str]:
    if protocol == "v1":
        return [p["label"] for p in answer["predictions"]]
    return next(o["data"] for o in answer["outputs"] if o["name"] == "label")


def label_checks(expected: list[str]) -> dict[str, Callable[[dict], None]]:
    """protocol -> a check of an answer's labels against the model's."""

    def check(protocol: str) -> Callable[[dict], None]:
        def read(answer: dict) -> None:
            labels = answered_labels(protocol, answer)
            if labels != expected:
                raise RuntimeError(f"{protocol} answered {labels}, the model says {expected}")

        return read

    return {protocol: check(protocol) for protocol in _serving.PROTOCOLS}


def figures(
    kind: str, row: str, batch: int, stats: dict, against: str, against_stats: dict
) -> Iterator[dict]:
    """The figures of one row, each named against the same figure of row `against`."""
    units = {"requests_per_second": "requests/s", "p50_ms": "ms", "p99_ms": "ms"}
    for metric, unit in units.items():
        other = against_stats[metric]
        yield {
            "name": f"{kind}_{row}_batch{batch}_{metric}",
            "value": round(stats[metric], 2),
            "unit": unit,
            "compared_with": f"{kind}_{against}_batch{batch}_{metric} ({other:.2f} {unit}), "
            f"{WHY[against]}",
            "times_against": round(stats[metric] / other, 2) if other else None,
            "model": kind,
            "batch": batch,
            "requests": stats["requests"],
            "reviews_per_second": round(stats["requests_per_second"] * batch, 1),
            "bounds": f"{MAX_REQUESTS} requests or {ROUND_SECONDS:.0f} s, after {WARMUP} warm-up",
        }


def ratio_figures(kind: str, rows: dict, batch: int) -> Iterator[dict]:
    """_serving.ratio_figures for one model: `<model>_<protocol>_batch<N>_p50_over_floor`."""
    for figure in _serving.ratio_figures(rows, batch, "in_process"):
        name, against = figure["name"], figure["compared_with"]
        yield figure | {
            "name": f"{kind}_{name}",
            "compared_with": f"{kind}_{against}",
            "model": kind,
        }


def model_figures(kind: str, rows: dict) -> Iterator[dict]:
    """Every figure of one model's {(row, batch): summary}, batch by batch: each row read against
    READ_AGAINST's row, then the served p50s over the floor's."""
    for batch in BATCHES:
        for row in sorted(row for row, b in rows if b == batch):
            against = READ_AGAINST.get(row, row)
            yield from figures(kind, row, batch, rows[row, batch], against, rows[against, batch])
        yield from ratio_figures(kind, rows, batch)


def measure_model(kind: str, model_dir: Path, workdir: Path, reviews: list[str]) -> dict:
    """{(row, batch): summary} for one trained model: served, behind the floor and in process."""
    import httpx

    from imdb_sentiment import explain
    from imdb_sentiment.serve import SentimentServer
    from tests.harness.serving import serve

    local = SentimentServer(NAME, model_dir)
    local.load()
    rows: dict[tuple[str, int], dict] = {}
    print(f"imdb_serving: serving the {kind} model and its floor ...", file=sys.stderr)
    with (
        serve(MANIFEST, workdir=workdir, model_dir=model_dir, timeout=SERVER_START_TIMEOUT) as s,
        _serving.floor(CASE.name, model_dir, workdir, SERVER_START_TIMEOUT) as floor_url,
        httpx.Client(base_url=s.url, timeout=120) as client,
        httpx.Client(base_url=floor_url, timeout=120) as floor_client,
    ):
        for batch in BATCHES:
            texts = reviews[:batch]
            expected = [p["label"] for p in local.predict({"instances": texts})["predictions"]]
            sent = _serving.bodies({"instances": texts}, v2_request(texts))
            calls: dict[str, Callable[[], object]] = {
                "in_process": lambda texts=texts: local.score(texts)
            }
            checks = label_checks(expected)
            calls |= _serving.endpoint_calls("floor_", floor_client, NAME, sent, checks)
            calls |= _serving.endpoint_calls("", client, NAME, sent, checks)
            if batch == 1:
                body = (
                    json.dumps({"instances": texts}).encode(),
                    {"content-type": "application/json"},
                )
                calls["explain_in_process"] = lambda r=texts[0]: explain.explain(local.model, r)
                calls["explain"] = _serving.poster(
                    client, f"/v1/models/{NAME}:explain", body, lambda answer: None
                )
            print(f"imdb_serving: {kind}, {len(calls)} rows taking turns, batch {batch} ...",
                  file=sys.stderr)  # fmt: skip
            timed = _serving.measure_alternating(
                calls, MAX_REQUESTS, warmup=WARMUP, max_seconds=ROUND_SECONDS
            )
            for row, latencies in timed.items():
                rows[row, batch] = summarize(latencies, sum(latencies))
    return rows


def run() -> Iterator[dict]:
    from imdb_sentiment import data

    _, (texts, _) = data.load_sample()
    reviews = list(texts[: max(BATCHES)])
    with (
        _serving.one_thread(),
        tempfile.TemporaryDirectory(prefix="bench-imdb-serving-") as tmp,
    ):
        workdir = Path(tmp)
        measured = {}
        for kind in MODELS:
            model_dir = workdir / kind
            print(f"imdb_serving: training the {kind} model on the sample ...", file=sys.stderr)
            argv = [sys.executable, "-m", "imdb_sentiment.train", *train_args(kind)]
            run_logged([*argv, f"--model-dir={model_dir}"], workdir / f"train-{kind}.log", kind)
            measured[kind] = measure_model(kind, model_dir, workdir, reviews)

    for kind, rows in measured.items():
        yield from model_figures(kind, rows)

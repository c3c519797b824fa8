"""The recommender's top-N server against the same scoring in process and behind a bare FastAPI
endpoint.

    python -m benchmarks recommender_serving      # about 2 to 3 minutes on 2 cores

A model is trained once on the sample with case.toml's smoke arguments (1,000 customers, 300
products, into a temporary folder) and served as recommender/manifests/inferenceservice.yaml
describes, through tests.harness.serving on 127.0.0.1. Every request asks for the top 10 of
known customers (the sample's first customer ids), so each is scored against every product,
what they bought is left out and the best 10 are answered by raw product id. Rows, each at
batch 1 and batch 32:

* `in_process`: `RecommenderServer.recommend` in this process: the model's scores of every
  product (model.ItemScorer, the weights in NumPy), what the customer bought removed, the top N
  by raw id; exactly what the server and the floor compute per request;
* `v1`: POST /v1/models/recommender:predict, `instances` of {"customer": id, "n": 10};
* `v2`: POST /v2/models/recommender/infer, a BYTES tensor `customer` [N] and INT64 `n` [1], JSON;
* `v2_binary`: the same tensors with the binary-data extension;
* `floor_v1`, `floor_v2`, `floor_v2_binary`: the same three requests to a bare FastAPI endpoint
  around the same `RecommenderServer.recommend` (benchmarks/_floor.py), which answers what the
  server answers (products, scores, fallback, the model version) with no checks and no KServe.

One keep-alive client per server, one request at a time (so requests/s is 1 / mean latency, not
a throughput under concurrency); request bodies are encoded once beforehand. The rows of one
batch take turns call by call (benchmarks/_serving.py), MAX_REQUESTS rounds or ROUND_SECONDS,
after WARMUP untimed rounds, every process on one compute thread as the InferenceService's one
CPU would be; each HTTP row checks its first answer's products against `in_process`. Each figure
is named `<row>_batch<N>_<metric>` and read against the same figure of another row: a served
row against its floor, a floor against `in_process`; `customers_per_second` is requests/s times
the batch. Besides these, `<protocol>_batch<N>_p50_over_floor` gives the served p50 over the
floor's (and, in the same line, each over `in_process`), from the same run.
"""

from __future__ import annotations

import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks import _serving
from benchmarks.mnist_serving import summarize
from benchmarks.mnist_training import run_logged

REPO_ROOT = Path(__file__).resolve().parents[1]
CASE = REPO_ROOT / "recommender"
MANIFEST = CASE / "manifests" / "inferenceservice.yaml"
NAME = "recommender"  # the InferenceService's model name
TOP_N = 10
BATCHES = (1, 32)
MAX_REQUESTS = 500
ROUND_SECONDS = 30.0  # per batch, for the rows that take turns
WARMUP = 5
SERVER_START_TIMEOUT = 300  # seconds; a loaded machine imports TensorFlow slowly
# Each row's figures are read against the same figures of another row, for this reason:
READ_AGAINST = {
    "floor_v1": "in_process",
    "floor_v2": "in_process",
    "floor_v2_binary": "in_process",
    "v1": "floor_v1",
    "v2": "floor_v2",
    "v2_binary": "floor_v2_binary",
}
WHY = {
    "in_process": "RecommenderServer.recommend in process, what the server computes",
    "floor_v1": "a bare FastAPI endpoint around the same scoring, V1",
    "floor_v2": "a bare FastAPI endpoint around the same scoring, V2 JSON",
    "floor_v2_binary": "a bare FastAPI endpoint around the same scoring, V2 binary data",
}


def train_args() -> list[str]:
    """case.toml's smoke training: the sample, 10 epochs."""
    return list(tomllib.loads((CASE / "case.toml").read_text())["smoke"]["train_args"])


def v1_request(customers: list[str]) -> dict:
    return {"instances": [{"customer": c, "n": TOP_N} for c in customers]}


def v2_request(customers: list[str]) -> dict:
    return {
        "inputs": [
            {"name": "customer", "shape": [len(customers)], "datatype": "BYTES", "data": customers},
            {"name": "n", "shape": [1], "datatype": "INT64", "data": [TOP_N]},
        ]
    }


def answered_products(protocol: str, answer: dict) -> list[list[str]]:
    if protocol == "v1":
        return [p["products"] for p in answer["predictions"]]
    outputs = {o["name"]: o for o in answer["outputs"]}
    products, (rows, n) = outputs["products"]["data"], outputs["products"]["shape"]
    return [products[r * n : (r + 1) * n] for r in range(rows)]


def product_checks(expected: list[list[str]]) -> dict[str, Callable[[dict], None]]:
    """protocol -> a check of an answer's products against the in-process answer."""

    def check(protocol: str) -> Callable[[dict], None]:
        def read(answer: dict) -> None:
            products = answered_products(protocol, answer)
            if products != expected:
                raise RuntimeError(
                    f"{protocol} answered {products[:2]}..., expected {expected[:2]}"
                )

        return read

    return {protocol: check(protocol) for protocol in _serving.PROTOCOLS}


def figures(row: str, batch: int, stats: dict, against: str, against_stats: dict) -> Iterator[dict]:
    """The figures of one row, each named against the same figure of row `against`."""
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
            "top_n": TOP_N,
            "requests": stats["requests"],
            "customers_per_second": round(stats["requests_per_second"] * batch, 1),
            "bounds": f"{MAX_REQUESTS} requests or {ROUND_SECONDS:.0f} s, after {WARMUP} warm-up",
            "model": "the sample's smoke training (1,000 customers, 300 products)",
        }


def all_figures(rows: dict) -> Iterator[dict]:
    """Every figure of {(row, batch): summary}, batch by batch: each row read against
    READ_AGAINST's row, then the served p50s over the floor's."""
    for batch in BATCHES:
        for row in sorted(row for row, b in rows if b == batch):
            against = READ_AGAINST.get(row, row)
            yield from figures(row, batch, rows[row, batch], against, rows[against, batch])
        yield from _serving.ratio_figures(rows, batch, "in_process")


def measure(model_dir: Path, workdir: Path) -> dict:
    """{(row, batch): summary}: served, behind the floor and in process."""
    import httpx

    from recommender.serve import RecommenderServer
    from tests.harness.serving import serve

    local = RecommenderServer(NAME, model_dir)
    local.load()
    customers = local.mapping.user_ids[: max(BATCHES)]
    rows: dict[tuple[str, int], dict] = {}
    print("recommender_serving: serving the model and its floor ...", file=sys.stderr)
    with (
        serve(MANIFEST, workdir=workdir, model_dir=model_dir, timeout=SERVER_START_TIMEOUT) as s,
        _serving.floor(CASE.name, model_dir, workdir, SERVER_START_TIMEOUT) as floor_url,
        httpx.Client(base_url=s.url, timeout=120) as client,
        httpx.Client(base_url=floor_url, timeout=120) as floor_client,
    ):
        for batch in BATCHES:
            ids, ns = customers[:batch], [TOP_N] * batch
            expected = [a["products"] for a in local.recommend(ids, ns)]
            sent = _serving.bodies(v1_request(ids), v2_request(ids))
            calls: dict[str, Callable[[], object]] = {
                "in_process": lambda ids=ids, ns=ns: local.recommend(ids, ns)
            }
            checks = product_checks(expected)
            calls |= _serving.endpoint_calls("floor_", floor_client, NAME, sent, checks)
            calls |= _serving.endpoint_calls("", client, NAME, sent, checks)
            print(f"recommender_serving: {len(calls)} rows taking turns, batch {batch} ...",
                  file=sys.stderr)  # fmt: skip
            timed = _serving.measure_alternating(
                calls, MAX_REQUESTS, warmup=WARMUP, max_seconds=ROUND_SECONDS
            )
            for row, latencies in timed.items():
                rows[row, batch] = summarize(latencies, sum(latencies))
    return rows


def run() -> Iterator[dict]:
    with (
        _serving.one_thread(),
        tempfile.TemporaryDirectory(prefix="bench-recommender-serving-") as tmp,
    ):
        workdir = Path(tmp)
        model_dir = workdir / "model"
        print("recommender_serving: training on the sample ...", file=sys.stderr)
        argv = [sys.executable, "-m", "recommender.train", *train_args()]
        run_logged([*argv, f"--model-dir={model_dir}"], workdir / "train.log", "recommender")
        rows = measure(model_dir, workdir)
    yield from all_figures(rows)

"""What the serving benchmarks share: the floor server, calls that take turns, ratio figures.

Each case's serving benchmark measures, from one run and taking turns call by call (so that
whatever else the machine does slows every row alike):

* the model alone, in this process, on arrays already parsed (`in_process` rows);
* the floor: a bare FastAPI endpoint around the same model call (benchmarks/_floor.py), over V1,
  V2 JSON and V2 with the binary-data extension;
* the case's KServe server as its InferenceService runs it (tests.harness.serving), over the
  same three.

One keep-alive client per server, one request at a time: requests/s is 1 / mean latency, not a
throughput under concurrency. Request bodies are encoded once beforehand. Every process computes
on one thread (`one_thread`): the InferenceServices give the server one CPU, and on a small
machine the idle BLAS and TensorFlow threads of three processes taking turns would otherwise
spin against each other (measured here: ct's 4 ms in-process projection took 100 ms).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.harness import badrequests, procs

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = ("v1", "v2", "v2_binary")
GOAL = 1.2  # served p50 within this many times the floor's, at batch 32
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
}


@contextmanager
def one_thread() -> Iterator[None]:
    """One compute thread in this process (its BLAS pools; TensorFlow if it starts inside) and in
    the servers started inside the block, which inherit the environment."""
    from threadpoolctl import threadpool_limits

    saved = {name: os.environ.get(name) for name in ONE_THREAD}
    os.environ.update(ONE_THREAD)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def floor(case: str, model_dir: Path, workdir: Path, timeout: float = 300.0) -> Iterator[str]:
    """The floor server for a case on a free loopback port, until the block ends: its URL."""
    port = procs.free_port()
    argv = [sys.executable, "-m", "benchmarks._floor", case]
    argv += ["--model-dir", str(model_dir), "--port", str(port)]
    proc = procs.start(argv, log_path=workdir / f"floor-{case}.log", cwd=REPO_ROOT)
    url = f"http://{procs.LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log = (workdir / f"floor-{case}.log").read_text()[-3000:]
                raise RuntimeError(f"the floor server exited: {log}")
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the floor server was not ready after {timeout:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        procs.stop(proc)


def bodies(v1: dict, v2: dict) -> dict[str, tuple[bytes, dict[str, str]]]:
    """protocol -> (body, headers), encoded once: V1 JSON, V2 JSON, V2 binary."""
    return {
        "v1": (badrequests.dumps(v1), dict(badrequests.JSON)),
        "v2": (badrequests.dumps(v2), dict(badrequests.JSON)),
        "v2_binary": badrequests.binary_request(v2),
    }


def poster(
    client: httpx.Client,
    path: str,
    sent: tuple[bytes, dict[str, str]],
    check: Callable[[dict], None],
) -> Callable[[], None]:
    """A call that posts one encoded body and fails on an error; `check` reads its first answer."""
    body, headers = sent
    checked = False

    def call() -> None:
        nonlocal checked
        response = client.post(path, content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:300]}")
        if not checked:
            length = response.headers.get(badrequests.HEADER)  # raw outputs follow the JSON
            check(json.loads(response.content[: int(length)]) if length else response.json())
            checked = True

    return call


def endpoint_calls(
    prefix: str,
    client: httpx.Client,
    model_name: str,
    sent: Mapping[str, tuple[bytes, dict[str, str]]],
    check: Mapping[str, Callable[[dict], None]],
) -> dict[str, Callable[[], None]]:
    """{prefix + protocol: call} for the V1, V2 JSON and V2 binary bodies of one server."""
    paths = {
        "v1": f"/v1/models/{model_name}:predict",
        "v2": f"/v2/models/{model_name}/infer",
        "v2_binary": f"/v2/models/{model_name}/infer",
    }
    return {
        f"{prefix}{protocol}": poster(client, paths[protocol], sent[protocol], check[protocol])
        for protocol in PROTOCOLS
    }


def measure_alternating(
    calls: Mapping[str, Callable[[], object]],
    requests: int,
    *,
    warmup: int = 5,
    max_seconds: float = 120.0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """The latency of each timed call, per name: `warmup` untimed rounds, then rounds of one call
    of each in turn until `requests` rounds are done or max_seconds have passed. Taking turns
    puts whatever else the machine is doing on every row alike."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    start, done = clock(), 0
    while done < requests and clock() - start < max_seconds:
        for name, call in calls.items():
            before = clock()
            call()
            latencies[name].append(clock() - before)
        done += 1
    return latencies


def ratio_figures(
    stats: Mapping[tuple[str, int], dict], batch: int, floor_of: str, tag: str = ""
) -> Iterator[dict]:
    """Per protocol at one batch: the served p50 over the floor's and over the model alone's.

    stats holds summaries (mnist_serving.summarize) keyed (row, batch): rows `v1`, `v2`,
    `v2_binary`, their floors `floor_v1`..., and `floor_of`, the model alone in process. `tag`
    goes into each figure's name before the batch (a slice size, say).
    """
    for protocol in PROTOCOLS:
        served, bare = stats.get((protocol, batch)), stats.get((f"floor_{protocol}", batch))
        if served is None or bare is None:
            continue
        alone = stats[floor_of, batch]
        goal = f"; the goal at batch 32: at most {GOAL}" if protocol != "v2_binary" else ""
        yield {
            "name": f"{protocol}_{tag}batch{batch}_p50_over_floor",
            "value": round(served["p50_ms"] / bare["p50_ms"], 2),
            "unit": "times the floor's p50",
            "compared_with": f"floor_{protocol}_{tag}batch{batch}_p50_ms ({bare['p50_ms']:.2f} "
            f"ms), a bare FastAPI endpoint around the same model{goal}",
            "batch": batch,
            "served_p50_ms": round(served["p50_ms"], 3),
            "floor_p50_ms": round(bare["p50_ms"], 3),
            "in_process_p50_ms": round(alone["p50_ms"], 3),
            "served_over_in_process": round(served["p50_ms"] / alone["p50_ms"], 2),
            "floor_over_in_process": round(bare["p50_ms"] / alone["p50_ms"], 2),
        }

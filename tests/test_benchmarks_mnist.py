"""The mnist benchmarks' cheap parts: they load, time and summarise correctly, and build valid jobs.

The benchmarks themselves take minutes (`python -m benchmarks mnist_training mnist_serving
mnist_distributed`); here nothing trains or serves.
"""

from __future__ import annotations

import importlib
import json
import os

import numpy as np
import pytest

from benchmarks import __main__ as runner
from benchmarks import _serving, mnist_distributed, mnist_serving

MODULES = ("mnist_training", "mnist_serving", "mnist_distributed")


@pytest.mark.parametrize("name", MODULES)
def test_each_benchmark_is_listed_and_has_run(name: str) -> None:
    assert name in runner.available()
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(module.run)
    assert module.__doc__ and f"python -m benchmarks {name}" in module.__doc__


class FakeClock:
    """A clock that only moves when the fake request runs, by `step` seconds each time."""

    def __init__(self, step: float) -> None:
        self.now, self.step, self.calls = 0.0, step, 0

    def __call__(self) -> float:
        return self.now

    def request(self) -> None:
        self.calls += 1
        self.now += self.step


def test_measure_stops_after_max_requests_and_times_each() -> None:
    clock = FakeClock(step=0.25)
    latencies, seconds = mnist_serving.measure(
        clock.request, max_requests=3, max_seconds=100.0, warmup=2, clock=clock
    )
    assert latencies == [0.25, 0.25, 0.25]
    assert seconds == 0.75  # the warm-up calls are not in the total
    assert clock.calls == 5


def test_measure_stops_once_max_seconds_have_passed() -> None:
    clock = FakeClock(step=0.25)
    latencies, seconds = mnist_serving.measure(
        clock.request, max_requests=1000, max_seconds=1.0, warmup=0, clock=clock
    )
    assert len(latencies) == 4 and seconds == 1.0


def test_summary_percentiles_on_known_latencies() -> None:
    latencies = [ms / 1000 for ms in range(100, 0, -1)]  # 1..100 ms, in any order
    stats = mnist_serving.summarize(latencies, seconds=2.0)
    assert stats["requests"] == 100
    assert stats["requests_per_second"] == pytest.approx(50.0)
    assert stats["p50_ms"] == pytest.approx(50.5)  # between the 50th and 51st
    assert stats["p99_ms"] == pytest.approx(99.01)
    with pytest.raises(ValueError, match="nothing was measured"):
        mnist_serving.summarize([], seconds=1.0)


def test_serving_figures_name_the_in_process_figure_they_are_read_against() -> None:
    stats = {"requests": 10, "requests_per_second": 20.0, "p50_ms": 40.0, "p99_ms": 90.0}
    reference = {"requests": 500, "requests_per_second": 200.0, "p50_ms": 4.0, "p99_ms": 9.0}
    figures = list(mnist_serving.figures("v1", 32, stats, "predict_on_batch", reference))
    for figure in figures:
        runner.check(figure, "mnist_serving")  # the runner's required fields
    by_name = {f["name"]: f for f in figures}
    assert set(by_name) == {
        "v1_batch32_requests_per_second",
        "v1_batch32_p50_ms",
        "v1_batch32_p99_ms",
    }
    p50 = by_name["v1_batch32_p50_ms"]
    assert p50["value"] == 40.0 and p50["unit"] == "ms"
    assert p50["compared_with"].startswith("predict_on_batch_batch32_p50_ms (4.00 ms)")
    assert by_name["v1_batch32_requests_per_second"]["images_per_second"] == 640.0


def test_request_bodies_carry_the_pixels() -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    v1 = json.loads(mnist_serving.v1_body(images))
    assert np.array_equal(np.asarray(v1["instances"]), images)
    (tensor,) = json.loads(mnist_serving.v2_body(images))["inputs"]
    assert tensor["shape"] == [2, 28, 28] and tensor["datatype"] == "UINT8"
    assert np.array_equal(np.asarray(tensor["data"]).reshape(2, 28, 28), images)


@pytest.mark.parametrize("name", sorted(mnist_distributed.JOBS))
@pytest.mark.parametrize("workers", [1, 0])
def test_distributed_jobs_are_the_manifests_shrunk_to_the_sample(name: str, workers: int) -> None:
    job = mnist_distributed.JOBS[name]
    doc = mnist_distributed.smoke_job(name, workers)  # also validates it strictly
    specs = doc["spec"][job.field]
    assert specs[job.primary]["replicas"] == 1 and specs["Worker"]["replicas"] == workers
    for replica in (job.primary, "Worker"):
        args = specs[replica]["template"]["spec"]["containers"][0]["args"]
        assert "--sample" in args
        assert [a for a in args if a.startswith(("--epochs", "--batch-size"))] == [
            f"--epochs={mnist_distributed.EPOCHS}",
            f"--batch-size={mnist_distributed.GLOBAL_BATCH}",
        ]
        assert f"--model-dir={job.model_dir}" in args  # where measure() reads metrics.json


def test_served_rows_are_read_against_their_floor_and_floors_against_the_model() -> None:
    against = mnist_serving.READ_AGAINST
    for protocol in ("v1", "v2", "v2_binary"):
        assert against[protocol] == f"floor_{protocol}"
        assert against[f"floor_{protocol}"] == "predict_on_batch"
        assert f"floor_{protocol}" in mnist_serving.WHY


def test_digit_checks_refuse_an_answer_with_other_digits() -> None:
    checks = mnist_serving.digit_checks([7, 2])
    checks["v1"]({"predictions": [{"digit": 7}, {"digit": 2}]})
    checks["v2_binary"]({"outputs": [{"name": "digit", "data": [7, 2]}]})
    with pytest.raises(RuntimeError, match="the model says"):
        checks["v2"]({"outputs": [{"name": "digit", "data": [7, 1]}]})


# --- benchmarks/_serving.py, which every serving benchmark shares ----------------------------------


def test_ratio_figures_put_each_protocol_over_its_floor_and_the_model() -> None:
    def stats(p50: float) -> dict:
        return {"requests": 10, "requests_per_second": 1000 / p50, "p50_ms": p50, "p99_ms": p50}

    rows = {("in_process", 32): stats(2.0), ("v1", 32): stats(6.0), ("floor_v1", 32): stats(5.0)}
    rows |= {("v2_binary", 32): stats(3.0), ("floor_v2_binary", 32): stats(4.0)}
    figures = {f["name"]: f for f in _serving.ratio_figures(rows, 32, "in_process", tag="x_")}
    assert set(figures) == {"v1_x_batch32_p50_over_floor", "v2_binary_x_batch32_p50_over_floor"}
    v1 = figures["v1_x_batch32_p50_over_floor"]
    runner.check(v1, "serving")
    assert v1["value"] == 1.2 and v1["served_over_in_process"] == 3.0
    assert v1["compared_with"].startswith("floor_v1_x_batch32_p50_ms (5.00 ms)")
    assert "at most 1.2" in v1["compared_with"]
    assert figures["v2_binary_x_batch32_p50_over_floor"]["value"] == 0.75


def test_bodies_are_v1_v2_json_and_the_binary_form_of_the_same_v2() -> None:
    v2 = {"inputs": [{"name": "image", "shape": [1, 2], "datatype": "UINT8", "data": [3, 4]}]}
    sent = _serving.bodies({"instances": [[3, 4]]}, v2)
    assert json.loads(sent["v1"][0]) == {"instances": [[3, 4]]}
    assert json.loads(sent["v2"][0]) == v2
    body, headers = sent["v2_binary"]
    assert body.endswith(b"\x03\x04") and int(headers["inference-header-content-length"]) == (
        len(body) - 2
    )


def test_one_thread_sets_the_environment_and_gives_it_back(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with _serving.one_thread():
        assert os.environ["OMP_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == "1"
        assert os.environ["TF_NUM_INTRAOP_THREADS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "7" and "OPENBLAS_NUM_THREADS" not in os.environ

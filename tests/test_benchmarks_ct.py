"""The ct_scans benchmark's cheap parts: it times, compares and names figures correctly.

The benchmark itself starts Spark and factors scans up to 512x512x48 (`python -m benchmarks
ct_scans`, minutes); here no Spark session starts and every volume is tiny.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import __main__ as runner
from benchmarks import ct_scans as bench
from ct_scans import data, model


def test_listed_by_the_runner_with_run_and_its_command() -> None:
    assert "ct_scans" in runner.available()
    assert callable(bench.run)
    assert bench.__doc__ and "python -m benchmarks ct_scans" in bench.__doc__


class FakeClock:
    """A clock that only moves when the fake call runs, by the next of its steps."""

    def __init__(self, steps: list[float]) -> None:
        self.now, self.steps, self.calls = 0.0, list(steps), 0

    def __call__(self) -> float:
        return self.now

    def call(self) -> int:
        self.calls += 1
        self.now += self.steps.pop(0)
        return self.calls


def test_a_fast_call_runs_three_times_and_keeps_the_median_and_first_result() -> None:
    clock = FakeClock([0.5, 0.25, 1.5])
    timing, result = bench.time_call(clock.call, repeats=3, fast_seconds=2.0, clock=clock)
    assert timing == {"seconds": 0.5, "runs": [0.5, 0.25, 1.5]}
    assert result == 1 and clock.calls == 3


def test_a_slow_call_runs_once() -> None:
    clock = FakeClock([2.5, 0.1])
    timing, result = bench.time_call(clock.call, repeats=3, fast_seconds=2.0, clock=clock)
    assert timing == {"seconds": 2.5, "runs": [2.5]} and result == 1 and clock.calls == 1


def test_max_relative_error_over_the_leading_values_only() -> None:
    reference = [100.0, 50.0, 10.0, 1.0]
    s = [101.0, 49.0, 10.5, 3.0]  # 1 %, 2 %, 5 %, then 200 % beyond the leading three
    assert bench.max_relative_error(s, reference, 3) == pytest.approx(0.05)
    assert bench.max_relative_error(s, reference, 2) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="need 5"):
        bench.max_relative_error(s, reference, 5)


def test_spark_env_sets_what_spark_needs_and_restores_the_rest() -> None:
    env = {"PYTHONPATH": "/elsewhere", "SPARK_LOCAL_IP": "10.0.0.1"}
    with bench.spark_env(env):
        assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
        assert env["PYTHONPATH"].split(":") == [str(bench.REPO_ROOT), "/elsewhere"]
        assert f"--driver-memory {bench.DRIVER_MEMORY}" in env["PYSPARK_SUBMIT_ARGS"]
        assert env["PYSPARK_SUBMIT_ARGS"].endswith("pyspark-shell")
        assert env["PYSPARK_PYTHON"]
    assert env == {"PYTHONPATH": "/elsewhere", "SPARK_LOCAL_IP": "10.0.0.1"}


def test_measure_size_without_spark_on_a_tiny_phantom() -> None:
    result = bench.measure_size((12, 8, 8))  # 64 x 12: k = 12, so randomized is exact
    assert (result["m"], result["n"]) == (64, 12)
    assert set(result) == {"shape", "m", "n", "exact", "randomized", "error"}
    assert len(result["exact"]["runs"]) == bench.REPEATS  # far under FAST_SECONDS
    assert result["error"]["randomized"] < 1e-5


def fake_results(with_spark: bool = True) -> list[dict]:
    def timing(seconds: float, runs: int = 3) -> dict:
        return {"seconds": seconds, "runs": [seconds] * runs}

    results = []
    for shape, exact in (((48, 64, 64), 0.01), ((48, 128, 128), 0.04)):
        m, n = shape[1] * shape[2], shape[0]
        result = {
            "shape": shape,
            "m": m,
            "n": n,
            "exact": timing(exact),
            "randomized": timing(2 * exact),
            "error": {"randomized": 2e-8},
        }
        if with_spark:
            result["spark"] = timing(4.0, runs=1) | {"parallelize_seconds": 0.02}
            result["error"] |= {"spark": 3e-8, "spark_vs_randomized": 1e-15}
        results.append(result)
    return results


def test_timing_figures_compare_each_method_with_the_exact_svd_at_that_size() -> None:
    figures = {f["name"]: f for f in bench.timing_figures(fake_results())}
    for figure in figures.values():
        runner.check(figure, "ct_scans")
    assert set(figures) == {
        f"{method}_svd_seconds_{size}"
        for method in bench.METHODS
        for size in ("48x64x64", "48x128x128")
    }
    randomized = figures["randomized_svd_seconds_48x128x128"]
    assert randomized["value"] == 0.08 and randomized["times_exact"] == 2.0
    assert randomized["compared_with"] == "exact_svd_seconds_48x128x128 (0.0400 s)"
    assert randomized["unit"] == "s (median of 3)" and randomized["m"] == 16384
    spark = figures["spark_svd_seconds_48x64x64"]
    assert spark["unit"] == "s (1 run)" and spark["times_exact"] == 400.0
    assert spark["min_seconds"] == 4.0 and spark["runs"] == [4.0]
    assert spark["row_blocks_seconds"] == 0.02 and spark["partitions"] == bench.PARTITIONS
    exact = figures["exact_svd_seconds_48x128x128"]
    assert exact["compared_with"].startswith("exact_svd_seconds_48x64x64 (0.0100 s)")
    assert "4 times its entries" in exact["compared_with"] and exact["entries_vs_smallest"] == 4


def test_without_spark_there_are_no_spark_figures() -> None:
    names = [f["name"] for f in bench.timing_figures(fake_results(with_spark=False))]
    names += [f["name"] for f in bench.agreement_figures(fake_results(with_spark=False))]
    assert names and not any(name.startswith("spark") for name in names)


def test_agreement_and_startup_figures() -> None:
    results = fake_results()
    figures = {f["name"]: f for f in bench.agreement_figures(results)}
    for figure in figures.values():
        runner.check(figure, "ct_scans")
    spark = figures["spark_leading10_max_relative_error_48x64x64"]
    assert spark["value"] == 3e-8 and spark["spark_vs_randomized"] == 1e-15
    assert "np.linalg.svd at 48x64x64" in spark["compared_with"]
    assert figures["randomized_leading10_max_relative_error_48x128x128"]["value"] == 2e-8

    startup = bench.startup_figure({"session_seconds": 5.0, "warmup_seconds": 1.25}, results)
    runner.check(startup, "ct_scans")
    assert startup["value"] == 6.25 and startup["session_seconds"] == 5.0
    assert startup["compared_with"] == "spark_svd_seconds_48x64x64 (4.0000 s)"


def test_quality_on_a_small_phantom_and_its_figures() -> None:
    truth = data.phantom((16, 24, 24))
    table = bench.quality(truth, np.rint(data.noisy(truth)))
    assert table["rank"] == 16 and table["slices"] == 16
    for percent in model.PERCENTAGES:
        assert 1 <= table[percent]["kept"] <= 16
        assert -1 <= table[percent]["ssim"] <= 1
    # Dropping more never keeps more.
    assert [table[p]["kept"] for p in model.PERCENTAGES] == sorted(
        (table[p]["kept"] for p in model.PERCENTAGES), reverse=True
    )
    figures = {f["name"]: f for f in bench.quality_figures(table)}
    for figure in figures.values():
        runner.check(figure, "ct_scans")
    assert set(figures) == {
        f"{kind}_drop_{tag}"
        for kind in ("psnr_gain", "ssim")
        for tag in ("0_1", "1", "5", "10", "30")
    }
    gain = figures["psnr_gain_drop_5"]
    assert gain["value"] == pytest.approx(table[5.0]["psnr"] - table["noisy"]["psnr"], abs=1e-3)
    assert gain["unit"] == "dB" and "k=16" in gain["svd"]
    assert f"{table['noisy']['psnr']:.3f} dB" in gain["compared_with"]


# --- serving -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_basis(tmp_path_factory: pytest.TempPathFactory):
    """A basis of a 48 x 16 x 16 phantom, saved as train.py saves it, and noisy slices to send."""
    model_dir = tmp_path_factory.mktemp("basis")
    return model_dir, bench.serving_basis((16, 16), model_dir)


# starlette's TestClient, which the floor's test uses, warns about its own httpx dependency.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_the_floor_answers_as_the_server_model_does(small_basis) -> None:
    from fastapi.testclient import TestClient

    from benchmarks._floor import ct_app
    from ct_scans.serve import CtDenoiser

    model_dir, noisy = small_basis
    slices = np.rint(noisy[:3]).astype(np.int16)
    served = CtDenoiser("ct-scans", model_dir)
    served.load()
    expected, kept = served.denoise(slices.astype(np.float32), bench.SERVING_PERCENT)
    checks = bench.kept_checks(kept)
    client = TestClient(ct_app(model_dir))
    for protocol, (body, headers) in bench.serving_requests(slices).items():
        path = "/v1/models/ct-scans:predict" if protocol == "v1" else "/v2/models/ct-scans/infer"
        answer = client.post(path, content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        if protocol == "v2_binary":  # raw FP32 after the JSON, as asked
            length = int(answer.headers["inference-header-content-length"])
            checks[protocol](json.loads(answer.content[:length]))
            got = np.frombuffer(answer.content[length:], "<f4").reshape(expected.shape)
        else:
            checks[protocol](answer.json())
            got = answer.json()["predictions" if protocol == "v1" else "outputs"]
            got = np.reshape(got if protocol == "v1" else got[0]["data"], expected.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-3)


def test_kept_checks_refuse_another_count() -> None:
    checks = bench.kept_checks(18)
    checks["v1"]({"predictions": [], "kept": 18})
    with pytest.raises(RuntimeError, match="kept 17"):
        checks["v2"]({"outputs": [], "parameters": {"kept": 17}})


def test_serving_figures_read_served_rows_against_the_floor() -> None:
    def stats(p50: float) -> dict:
        return {"requests": 5, "requests_per_second": 1000 / p50, "p50_ms": p50, "p99_ms": p50}

    rows = {"denoise": 1.0, "floor_v1": 20.0, "floor_v2": 18.0, "floor_v2_binary": 4.0}
    rows |= {"v1": 21.0, "v2": 18.0, "v2_binary": 5.0}
    results = {"64x64": {(row, 32): stats(p50) for row, p50 in rows.items()}}
    figures = {f["name"]: f for f in bench.serving_figures(results)}
    for figure in figures.values():
        runner.check(figure, "ct_scans")
    v2 = figures["v2_64x64_batch32_p50_ms"]
    assert v2["compared_with"] == "floor_v2_64x64_batch32_p50_ms (18.00 ms)"
    assert figures["floor_v1_64x64_batch32_p50_ms"]["times_against"] == 20.0
    assert figures["v2_binary_64x64_batch32_p50_over_floor"]["value"] == 1.25
    assert figures["v1_64x64_batch32_p50_over_floor"]["served_over_in_process"] == 21.0

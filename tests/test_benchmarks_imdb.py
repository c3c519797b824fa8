"""The imdb_sentiment training benchmark's cheap parts: it is listed, builds the commands a user
runs, never downloads unless asked, and names its figures; one real run of the TF-IDF baseline on
the sample (a few seconds) checks that it reads what train.py writes.

The benchmark itself trains the BiLSTM too (`python -m benchmarks imdb_training`, about a minute
on the sample; IMDB_FULL=1 adds the full data, which downloads 84 MB and never runs here).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import __main__ as runner
from benchmarks import imdb_training as bench


def test_listed_by_the_runner_with_run_and_its_command() -> None:
    assert "imdb_training" in runner.available()
    assert callable(bench.run)
    assert bench.__doc__ and "python -m benchmarks imdb_training" in bench.__doc__


@pytest.mark.parametrize("value", [None, "", "0"])
def test_the_full_data_only_when_asked(value: str | None) -> None:
    env = {} if value is None else {bench.FULL_ENV: value}
    assert bench.data_sets(env) == ["sample"]
    assert bench.data_sets({bench.FULL_ENV: "1"}) == ["sample", "full"]


def test_the_sample_never_downloads_and_the_full_data_uses_the_cache(tmp_path: Path) -> None:
    for model in bench.MODELS:
        sample = bench.argv(model, "sample", tmp_path, env={})
        assert "--sample" in sample and f"--model={model}" in sample
        assert not [a for a in sample if a.startswith(("--data-dir", "--url", "--dataset"))]
        full = bench.argv(model, "full", tmp_path, env={bench.DATA_DIR_ENV: "/cache"})
        assert "--sample" not in full and "--data-dir=/cache" in full
        assert bench.argv(model, "full", tmp_path, env={}) == [
            a for a in full if a != "--data-dir=/cache"
        ]  # data.py's own cache by default
    assert "--epochs=5" in bench.argv("bilstm", "sample", tmp_path, env={})


def test_run_trains_only_the_sample_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_train(model: str, data: str, workdir: Path) -> dict:
        calls.append((model, data))
        speed = {"bilstm": 100.0, "tfidf": 5000.0}[model]
        return {
            "train_reviews_per_second": speed,
            "train_seconds": 640 / speed,
            "wall_seconds": 20.0,
            "test_accuracy": {"bilstm": 0.88, "tfidf": 0.91}[model],
            "test_ece": 0.05,
            "test_ece_uncalibrated": 0.08,
        }

    monkeypatch.delenv(bench.FULL_ENV, raising=False)
    monkeypatch.setattr(bench, "train", fake_train)
    figures = {f["name"]: f for f in bench.run()}
    assert calls == [("bilstm", "sample"), ("tfidf", "sample")]
    for figure in figures.values():
        runner.check(figure, "imdb_training")  # the runner's required fields
    assert set(figures) == {
        "sample_bilstm_train_reviews_per_second",
        "sample_tfidf_train_reviews_per_second",
        "sample_bilstm_test_accuracy",
        "sample_tfidf_test_accuracy",
    }
    speed = figures["sample_bilstm_train_reviews_per_second"]
    assert speed["value"] == 100.0 and speed["compared_with"] == "tfidf (5000.0 reviews/s)"
    accuracy = figures["sample_tfidf_test_accuracy"]
    assert accuracy["value"] == 0.91 and accuracy["compared_with"].startswith("bilstm (0.8800)")


def test_full_data_figures_are_read_against_the_issues_goals() -> None:
    runs = {
        model: {
            "train_reviews_per_second": 1.0,
            "train_seconds": 1.0,
            "wall_seconds": 1.0,
            "test_accuracy": 0.9,
            "test_ece": 0.0,
            "test_ece_uncalibrated": 0.0,
        }
        for model in bench.MODELS
    }
    figures = {f["name"]: f for f in bench.figures("full", runs)}
    assert "goal 0.87" in figures["full_bilstm_test_accuracy"]["compared_with"]
    assert "goal 0.89" in figures["full_tfidf_test_accuracy"]["compared_with"]


def test_one_real_run_of_the_baseline_on_the_sample(tmp_path: Path) -> None:
    metrics = bench.train("tfidf", "sample", tmp_path)
    assert metrics["test_accuracy"] > 0.8  # chance is 0.50
    assert metrics["train_reviews_per_second"] > 0 and metrics["wall_seconds"] > 0
    (figure,) = [
        f
        for f in bench.figures("sample", {"tfidf": metrics, "bilstm": metrics})
        if f["name"] == "sample_tfidf_test_accuracy"
    ]
    assert figure["value"] == round(metrics["test_accuracy"], 4)

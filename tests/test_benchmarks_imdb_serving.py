"""The imdb_serving benchmark's cheap parts: it is listed, builds its requests, checks the served
labels and names its figures against the in-process rows.

The benchmark itself takes minutes (`python -m benchmarks imdb_serving`); here nothing trains or
serves.
"""

from __future__ import annotations

import importlib
import json

import pytest

from benchmarks import __main__ as runner
from benchmarks import _serving, imdb_serving


def test_the_benchmark_is_listed_and_has_run() -> None:
    assert "imdb_serving" in runner.available()
    module = importlib.import_module("benchmarks.imdb_serving")
    assert callable(module.run)
    assert module.__doc__ and "python -m benchmarks imdb_serving" in module.__doc__


def test_both_models_are_trained_as_the_case_trains_them() -> None:
    assert imdb_serving.MODELS == ("bilstm", "tfidf")
    assert imdb_serving.BATCHES == (1, 64)
    bilstm = imdb_serving.train_args("bilstm")
    assert "--sample" in bilstm and "--epochs" in bilstm  # case.toml's smoke arguments
    assert imdb_serving.train_args("tfidf") == ["--sample", "--model", "tfidf"]


def test_requests_carry_the_reviews_as_text() -> None:
    reviews = ["A superb film.<br />Loved it.", "Ébouriffant, mais ennuyeux."]
    sent = _serving.bodies({"instances": reviews}, imdb_serving.v2_request(reviews))
    assert json.loads(sent["v1"][0]) == {"instances": reviews}
    (tensor,) = json.loads(sent["v2"][0])["inputs"]
    assert tensor == {"name": "review", "shape": [2], "datatype": "BYTES", "data": reviews}
    body, headers = sent["v2_binary"]
    raw = body[int(headers["inference-header-content-length"]) :]
    assert raw == b"".join(len(r.encode()).to_bytes(4, "little") + r.encode() for r in reviews)


def test_label_checks_refuse_an_answer_with_other_labels() -> None:
    checks = imdb_serving.label_checks(["positive", "negative"])
    checks["v1"]({"predictions": [{"label": "positive"}, {"label": "negative"}]})
    checks["v2_binary"]({"outputs": [{"name": "label", "data": ["positive", "negative"]}]})
    with pytest.raises(RuntimeError, match="the model says"):
        checks["v2"]({"outputs": [{"name": "label", "data": ["positive", "positive"]}]})


def test_figures_name_the_model_and_the_in_process_row_they_are_read_against() -> None:
    stats = {"requests": 10, "requests_per_second": 20.0, "p50_ms": 40.0, "p99_ms": 90.0}
    reference = {"requests": 300, "requests_per_second": 200.0, "p50_ms": 4.0, "p99_ms": 9.0}
    figures = list(imdb_serving.figures("bilstm", "v1", 64, stats, "in_process", reference))
    for figure in figures:
        runner.check(figure, "imdb_serving")  # the runner's required fields
    by_name = {f["name"]: f for f in figures}
    assert set(by_name) == {
        "bilstm_v1_batch64_requests_per_second",
        "bilstm_v1_batch64_p50_ms",
        "bilstm_v1_batch64_p99_ms",
    }
    p50 = by_name["bilstm_v1_batch64_p50_ms"]
    assert p50["value"] == 40.0 and p50["unit"] == "ms" and p50["times_against"] == 10.0
    assert p50["compared_with"].startswith("bilstm_in_process_batch64_p50_ms (4.00 ms)")
    assert by_name["bilstm_v1_batch64_requests_per_second"]["reviews_per_second"] == 1280.0


def test_every_served_row_is_read_against_an_in_process_row() -> None:
    for protocol in _serving.PROTOCOLS:
        assert imdb_serving.READ_AGAINST[protocol] == "in_process"
    assert imdb_serving.READ_AGAINST["explain"] == "explain_in_process"
    assert set(imdb_serving.READ_AGAINST.values()) <= set(imdb_serving.WHY)

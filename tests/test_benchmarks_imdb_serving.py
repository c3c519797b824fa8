"""The imdb_serving benchmark's cheap parts: it is listed, builds its requests, checks the served
labels, names its figures against the floor and the in-process rows, and its floor
(benchmarks/_floor.py's imdb_app) answers what the server answers.

The benchmark itself takes minutes (`python -m benchmarks imdb_serving`); here only a TF-IDF model
trains on the sample (about 2 s), and the floor answers in process.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

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


def test_served_rows_are_read_against_their_floor_and_floors_against_the_model() -> None:
    for protocol in _serving.PROTOCOLS:
        assert imdb_serving.READ_AGAINST[protocol] == f"floor_{protocol}"
        assert imdb_serving.READ_AGAINST[f"floor_{protocol}"] == "in_process"
    assert imdb_serving.READ_AGAINST["explain"] == "explain_in_process"
    assert set(imdb_serving.READ_AGAINST.values()) <= set(imdb_serving.WHY)


def fake_rows() -> dict[tuple[str, int], dict]:
    """Summaries of every row the benchmark measures, served p50 twice the floor's at batch 1."""

    def stats(p50: float) -> dict:
        return {"requests": 5, "requests_per_second": 1000 / p50, "p50_ms": p50, "p99_ms": p50}

    rows = {}
    for batch, scale in ((1, 1.0), (64, 4.0)):
        rows["in_process", batch] = stats(2.0 * scale)
        for protocol, floor_ms in zip(_serving.PROTOCOLS, (5.0, 6.0, 4.0), strict=True):
            rows[f"floor_{protocol}", batch] = stats(floor_ms * scale)
            rows[protocol, batch] = stats(floor_ms * scale * (2.0 if batch == 1 else 1.5))
    rows["explain_in_process", 1] = stats(50.0)
    rows["explain", 1] = stats(60.0)
    return rows


def test_every_model_gets_its_served_p50_over_the_floor_at_each_batch() -> None:
    figures = {f["name"]: f for f in imdb_serving.model_figures("tfidf", fake_rows())}
    for figure in figures.values():
        runner.check(figure, "imdb_serving")
    ratios = {name for name in figures if name.endswith("_p50_over_floor")}
    assert ratios == {
        f"tfidf_{protocol}_batch{batch}_p50_over_floor"
        for protocol in _serving.PROTOCOLS
        for batch in imdb_serving.BATCHES
    }
    v2 = figures["tfidf_v2_batch1_p50_over_floor"]
    assert v2["value"] == 2.0 and v2["model"] == "tfidf"
    assert v2["served_over_in_process"] == 6.0 and v2["floor_over_in_process"] == 3.0
    assert figures["tfidf_v2_binary_batch64_p50_over_floor"]["value"] == 1.5
    # What a ratio is read against is a figure of the same run, by its name.
    against = v2["compared_with"].split(" ")[0]
    assert against == "tfidf_floor_v2_batch1_p50_ms" and against in figures
    served = figures["tfidf_v1_batch64_p50_ms"]
    assert served["compared_with"].startswith("tfidf_floor_v1_batch64_p50_ms (20.00 ms)")
    floor = figures["tfidf_floor_v1_batch64_p50_ms"]
    assert floor["compared_with"].startswith("tfidf_in_process_batch64_p50_ms (8.00 ms)")
    assert figures["tfidf_explain_batch1_p50_ms"]["times_against"] == 1.2


# --- the floor against the server, on a TF-IDF model trained here --------------------------------


@pytest.fixture(scope="module")
def tfidf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m imdb_sentiment.train --sample --model tfidf` into a fresh folder (about 2 s)."""
    model_dir = tmp_path_factory.mktemp("imdb-tfidf")
    argv = [sys.executable, "-m", "imdb_sentiment.train", *imdb_serving.train_args("tfidf")]
    run = subprocess.run(
        [*argv, f"--model-dir={model_dir}"],
        cwd=imdb_serving.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return model_dir


def served_answer(server, protocol: str, body: bytes, headers: dict[str, str]) -> dict:
    """What imdb_sentiment/serve.py answers to one encoded request, as the client reads it."""
    from imdb_sentiment.serve import decode_v2, encode_v2

    if protocol == "v1":
        return json.loads(json.dumps(server.predict(json.loads(body))))
    request = decode_v2(body, headers, imdb_serving.NAME)
    return json.loads(encode_v2(server.predict(request), request).body)


# starlette's TestClient warns about its own httpx dependency.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_the_floor_answers_what_the_server_answers(tfidf_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from benchmarks._floor import imdb_app
    from imdb_sentiment import data
    from imdb_sentiment.serve import SentimentServer

    _, (texts, _) = data.load_sample()
    reviews = [*texts[:5], "Ébouriffant !<br /><br />A superb, moving film."]
    server = SentimentServer(imdb_serving.NAME, tfidf_dir)
    server.load()
    expected = [p["label"] for p in server.predict({"instances": reviews})["predictions"]]
    assert len(set(expected)) == 2, expected  # both labels, so a constant answer fails
    checks = imdb_serving.label_checks(expected)
    sent = _serving.bodies({"instances": reviews}, imdb_serving.v2_request(reviews))
    client = TestClient(imdb_app(tfidf_dir))
    for protocol, (body, headers) in sent.items():
        path = "/v1/models/imdb:predict" if protocol == "v1" else "/v2/models/imdb/infer"
        answer = client.post(path, content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        got, served = answer.json(), served_answer(server, protocol, body, headers)
        checks[protocol](got)
        if protocol == "v1":
            assert got == served
            continue
        assert got["model_name"] == served["model_name"] == imdb_serving.NAME
        fields = ("name", "datatype", "shape", "data")
        assert [{k: o[k] for k in fields} for o in got["outputs"]] == [
            {k: o[k] for k in fields} for o in served["outputs"]
        ]

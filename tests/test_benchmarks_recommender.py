"""The recommender benchmarks' cheap parts: both are listed and documented; the training
benchmark builds the runs a user runs (the sample with case.toml's smoke arguments, MovieLens-100k
with its own explicit flags and never unless asked), states its split on every line and reads
each figure against the others measured in the same run; the serving benchmark builds its V1, V2
and V2 binary requests of customer ids at batch 1 and 32, refuses an answer with other products
and names its figures against the floor and the in-process rows; and its floor
(benchmarks/_floor.py's recommender_app) answers exactly what recommender.serve answers.

One real run: the training benchmark's own `train("sample", ...)`, the model with case.toml's
smoke arguments (about 20 s), whose metrics.json its figures read beside BPR tuned in this process
(about 4 s), and whose model the floor and the server both serve in process. The benchmarks
themselves take minutes (`python -m benchmarks recommender_training`, `... recommender_serving`;
RECOMMENDER_MOVIELENS=1 downloads and never runs here).
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from benchmarks import __main__ as runner
from benchmarks import _floor, _serving
from benchmarks import recommender_serving as serving
from benchmarks import recommender_training as training

CASE = Path(__file__).resolve().parents[1] / "recommender"
SMOKE_ARGS = tomllib.loads((CASE / "case.toml").read_text())["smoke"]["train_args"]
WHO = ("model", "popularity", "bpr", "bpr_tuned")
METRICS = ("ndcg_at_10", "hit_rate_at_10")


def test_both_benchmarks_are_listed_and_say_how_to_run_them() -> None:
    for name, module in (("recommender_training", training), ("recommender_serving", serving)):
        assert name in runner.available()
        assert callable(module.run)
        assert module.__doc__ and f"python -m benchmarks {name}" in module.__doc__
    assert "RECOMMENDER_MOVIELENS=1 python -m benchmarks recommender_training" in training.__doc__
    assert "8:1:1" in training.__doc__ and "0.2768" in training.__doc__


# --- recommender_training -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "0"])
def test_movielens_only_when_asked(value: str | None) -> None:
    env = {} if value is None else {training.MOVIELENS_ENV: value}
    assert training.data_sets(env) == ["sample"]
    for asked in ("1", "grouplens"):
        assert training.data_sets({training.MOVIELENS_ENV: asked}) == ["sample", "movielens"]


def fake_training(calls: list[list[str]]):
    """run_logged's stand-in: records the command and writes the metrics.json train.py would."""

    def run_logged(argv: list[str], log_path: Path, label: str) -> float:
        calls.append(list(argv))
        (model_dir,) = [a.split("=", 1)[1] for a in argv if a.startswith("--model-dir=")]
        Path(model_dir).mkdir(parents=True)
        (Path(model_dir) / "metrics.json").write_text(json.dumps({"test_ndcg_at_10": 0.3}))
        return 12.5

    return run_logged


def test_the_sample_trains_with_case_tomls_smoke_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(training, "run_logged", fake_training(calls))
    monkeypatch.delenv(training.MOVIELENS_ENV, raising=False)
    monkeypatch.setenv(training.DATA_DIR_ENV, "/cache")  # the sample never reads the cache
    measured = training.train("sample", tmp_path)
    (argv,) = calls
    command, model_dir, sample, flags = argv[:3], argv[3], argv[4], argv[5:]
    assert command[1:] == ["-m", "recommender.train"] and model_dir.startswith("--model-dir=")
    assert sample == "--sample" and "--sample" in SMOKE_ARGS
    assert flags == [*(a for a in SMOKE_ARGS if a != "--sample"), f"--seed={training.SEED}"]
    assert not [a for a in flags if a.startswith(("--dataset", "--data-dir", "--url"))]
    assert measured["test_ndcg_at_10"] == 0.3 and measured["wall_seconds"] == 12.5
    assert measured["flags"] == " ".join(["--sample", *flags])
    assert training.SEED == 42  # train.py's default: this process splits as train.py did


@pytest.mark.parametrize(
    ("asked", "dataset"), [("1", "movielens-recbole"), ("grouplens", "movielens")]
)
def test_movielens_trains_with_its_own_explicit_flags(
    asked: str, dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(training, "run_logged", fake_training(calls))
    monkeypatch.setenv(training.MOVIELENS_ENV, asked)
    monkeypatch.setenv(training.DATA_DIR_ENV, "/cache")
    training.train("movielens", tmp_path)
    monkeypatch.delenv(training.DATA_DIR_ENV)
    training.train("movielens", tmp_path / "again")  # data.py's own cache by default
    (_, _, _, _, *flags), (_, _, _, _, *default_cache) = calls
    assert flags == [
        f"--dataset={dataset}",
        "--data-dir=/cache",
        *training.MOVIELENS_FLAGS,
        f"--seed={training.SEED}",
    ]
    assert default_cache == [a for a in flags if a != "--data-dir=/cache"]
    assert "--sample" not in flags and training.model_flags("movielens") == training.MOVIELENS_FLAGS


def test_every_flag_of_both_runs_is_train_pys_and_movielens_flags_change_a_default() -> None:
    from recommender import train

    defaults = vars(train.parse_args([]))
    sample = vars(
        train.parse_args([*training.data_flags("sample", {}), *training.model_flags("sample")])
    )
    assert sample["sample"] and sample["epochs"] == 10  # case.toml's smoke training
    assert training.MOVIELENS_FLAGS, "MovieLens-100k's settings are stated, not train.py's defaults"
    movielens = training.data_flags("movielens", {training.MOVIELENS_ENV: "1"})
    parsed = vars(train.parse_args([*movielens, *training.MOVIELENS_FLAGS]))
    assert parsed["dataset"] == "movielens-recbole" and not parsed["sample"]
    named = [f.split("=")[0] for f in training.MOVIELENS_FLAGS if f.startswith("--")]
    for flag in named:  # `--flag=value` or `--flag value`
        dest = flag.removeprefix("--").replace("-", "_")
        assert parsed[dest] != defaults[dest], f"{flag} is train.py's default: say what differs"


def made_up_run(**changes: float) -> dict:
    """What train() and baselines_in_process() hand figures(), with values no constant has."""
    run = {
        "train_examples_per_second": 2000.0,
        "train_seconds": 10.0,
        "wall_seconds": 20.0,
        "flags": "--sample --epochs 10",
        "bpr_train_examples_per_second": 500000.0,
        "bpr_fit_seconds": 0.5,
        "described": "the committed sample: 1,000 users, 300 items",
        "test_ndcg_at_10": 0.36,
        "test_hit_rate_at_10": 0.56,
        "popularity_test_ndcg_at_10": 0.12,
        "popularity_test_hit_rate_at_10": 0.28,
        "bpr_test_ndcg_at_10": 0.3,
        "bpr_test_hit_rate_at_10": 0.7,
        "bpr_tuned_test_ndcg_at_10": 0.4,
        "bpr_tuned_test_hit_rate_at_10": 0.8,
        "bpr_tuned_val_ndcg_at_10": 0.41,
        "bpr_tuned_settings": "learning_rate=0.01 iterations=50",
    }
    return run | changes


def test_every_line_states_the_data_and_the_split() -> None:
    assert "8:1:1" in training.SPLIT and "seed 42" in training.SPLIT
    assert "full ranking" in training.SPLIT
    for data in ("sample", "movielens"):
        lines = list(training.figures(data, made_up_run()))
        assert {f["name"] for f in lines} == {f"{data}_model_train_examples_per_second"} | {
            f"{data}_{who}_test_{metric}" for who in WHO for metric in METRICS
        }
        for line in lines:
            runner.check(line, "recommender_training")  # the runner's required fields
            assert line["split"] == training.SPLIT
            assert line["data"] == "the committed sample: 1,000 users, 300 items"


def test_the_models_speed_is_read_against_bprs_of_the_same_run() -> None:
    (speed,) = [f for f in training.figures("sample", made_up_run()) if "per_second" in f["name"]]
    assert speed["value"] == 2000.0 and speed["unit"] == "examples/s"
    assert speed["times_against"] == 0.004
    assert speed["compared_with"].startswith("sample_bpr_train_examples_per_second (500000.0 ")
    assert speed["train_seconds"] == 10.0 and speed["wall_seconds"] == 20.0
    assert speed["flags"] == "--sample --epochs 10"
    faster = made_up_run(bpr_train_examples_per_second=4000.0)
    (speed,) = [f for f in training.figures("sample", faster) if "per_second" in f["name"]]
    assert speed["times_against"] == 0.5


def test_each_recommender_is_read_against_the_others_of_the_same_run() -> None:
    lines = {f["name"]: f for f in training.figures("sample", made_up_run())}
    model = lines["sample_model_test_ndcg_at_10"]
    assert model["value"] == 0.36 and model["flags"] == "--sample --epochs 10"
    assert model["over_popularity"] == 3.0 and model["over_bpr"] == 1.2
    assert model["over_bpr_tuned"] == 0.9
    assert model["compared_with"] == "popularity (0.1200), bpr (0.3000), bpr_tuned (0.4000)"
    assert "over_recbole_bpr" not in model  # RecBole's figure is MovieLens-100k's, not the sample's
    hit = lines["sample_model_test_hit_rate_at_10"]
    assert hit["over_popularity"] == 2.0 and hit["over_bpr"] == 0.8 and hit["over_bpr_tuned"] == 0.7
    popularity = lines["sample_popularity_test_hit_rate_at_10"]
    assert popularity["value"] == 0.28 and popularity["over_model"] == 0.5
    assert popularity["compared_with"] == "model (0.5600)"
    tuned = lines["sample_bpr_tuned_test_ndcg_at_10"]
    assert tuned["over_model"] == 1.111 and tuned["val_ndcg_at_10"] == 0.41
    assert tuned["settings"] == "learning_rate=0.01 iterations=50"
    assert lines["sample_bpr_test_ndcg_at_10"]["over_model"] == 0.833


def test_movielens_lines_are_also_read_against_recboles_published_bpr() -> None:
    lines = {f["name"]: f for f in training.figures("movielens", made_up_run())}
    assert training.RECBOLE_BPR == {"ndcg_at_10": 0.2768, "hit_rate_at_10": 0.7614}
    for who in WHO:
        for metric, published in training.RECBOLE_BPR.items():
            line = lines[f"movielens_{who}_test_{metric}"]
            assert line["over_recbole_bpr"] == round(line["value"] / published, 3)
            assert line["compared_with"].endswith(f"RecBole's published BPR ({published:.4f})")
    assert lines["movielens_model_test_ndcg_at_10"]["over_recbole_bpr"] == 1.301


def test_run_measures_the_sample_only_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(training, "train", lambda data, workdir: calls.append(data) or {})
    monkeypatch.setattr(training, "baselines_in_process", lambda data: made_up_run())
    monkeypatch.delenv(training.MOVIELENS_ENV, raising=False)
    names = [f["name"] for f in training.run()]
    assert calls == ["sample"] and all(n.startswith("sample_") for n in names)
    monkeypatch.setenv(training.MOVIELENS_ENV, "1")
    names = [f["name"] for f in training.run()]
    assert calls == ["sample", "sample", "movielens"]
    assert "movielens_model_test_ndcg_at_10" in names and len(names) == 18


# --- the one real run: the training benchmark's sample model --------------------------------------


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """training.train("sample", ...): train.py with case.toml's smoke arguments (about 20 s)."""
    workdir = tmp_path_factory.mktemp("bench-recommender")
    return training.train("sample", workdir), workdir / "sample"


def test_the_sample_figures_read_what_train_py_wrote(sample_run: tuple[dict, Path]) -> None:
    metrics, _ = sample_run
    baselines = training.baselines_in_process("sample")
    assert baselines["described"].startswith("the committed sample: 1,000 users, 300 items")
    assert baselines["bpr_train_examples_per_second"] > 0
    lines = {f["name"]: f for f in training.figures("sample", metrics | baselines)}
    for who, key in (("model", "test"), ("popularity", "popularity_test"), ("bpr", "bpr_test")):
        assert lines[f"sample_{who}_test_ndcg_at_10"]["value"] == round(
            metrics[f"{key}_ndcg_at_10"], 4
        )
    # The sample has 300 products: ten random ones give NDCG@10 about 0.05 (case.toml's floors).
    model = lines["sample_model_test_ndcg_at_10"]
    assert model["value"] > 0.2 and model["over_popularity"] > 1
    assert lines["sample_bpr_tuned_test_ndcg_at_10"]["value"] > 0.2
    speed = lines["sample_model_train_examples_per_second"]
    assert speed["value"] > 0 and speed["flags"] == " ".join([*SMOKE_ARGS, "--seed=42"])


# --- recommender_serving ------------------------------------------------------------------------


def test_the_served_model_is_the_smoke_training_at_batch_1_and_32() -> None:
    assert serving.train_args() == SMOKE_ARGS
    assert serving.BATCHES == (1, 32) and serving.TOP_N == 10
    assert f"--model_name, {serving.NAME}," in serving.MANIFEST.read_text()


@pytest.mark.parametrize("batch", [1, 32])
def test_requests_carry_the_customer_ids_as_text(batch: int) -> None:
    ids = [f"{100 + i}" for i in range(batch - 1)] + ["client-é"]
    sent = _serving.bodies(serving.v1_request(ids), serving.v2_request(ids))
    v1 = json.loads(sent["v1"][0])
    assert v1 == {"instances": [{"customer": c, "n": 10} for c in ids]}
    customer, n = json.loads(sent["v2"][0])["inputs"]
    assert customer == {"name": "customer", "shape": [batch], "datatype": "BYTES", "data": ids}
    assert n == {"name": "n", "shape": [1], "datatype": "INT64", "data": [10]}
    body, headers = sent["v2_binary"]
    inputs, _ = _floor.v2_request(body, headers)  # read back as the floor reads it
    assert inputs["customer"][0] == [batch]
    assert [c.decode() for c in inputs["customer"][1]] == ids
    assert inputs["n"][0] == [1] and inputs["n"][1].tolist() == [10]


def test_the_answer_check_refuses_other_products() -> None:
    expected = [["7", "3"], ["9", "1"]]
    checks = serving.product_checks(expected)
    checks["v1"]({"predictions": [{"products": ["7", "3"]}, {"products": ["9", "1"]}]})
    v2 = {
        "outputs": [
            {"name": "count"},
            {"name": "products", "shape": [2, 2], "data": ["7", "3", "9", "1"]},
        ]
    }
    checks["v2"](v2)
    checks["v2_binary"](v2)
    with pytest.raises(RuntimeError, match="v1 answered"):
        checks["v1"]({"predictions": [{"products": ["3", "7"]}, {"products": ["9", "1"]}]})
    with pytest.raises(RuntimeError, match="v2 answered"):
        checks["v2"](
            {"outputs": [{"name": "products", "shape": [1, 4], "data": ["7", "3", "9", "1"]}]}
        )
    with pytest.raises(RuntimeError, match="v2_binary answered"):
        checks["v2_binary"](
            {"outputs": [{"name": "products", "shape": [2, 2], "data": ["7", "3", "9", "2"]}]}
        )


def fake_rows() -> dict[tuple[str, int], dict]:
    """Summaries of every row the benchmark measures: served p50 twice the floor's at batch 1."""

    def stats(p50: float) -> dict:
        return {"requests": 5, "requests_per_second": 1000 / p50, "p50_ms": p50, "p99_ms": p50}

    rows = {}
    for batch, scale in ((1, 1.0), (32, 4.0)):
        rows["in_process", batch] = stats(2.0 * scale)
        for protocol, floor_ms in zip(_serving.PROTOCOLS, (5.0, 6.0, 4.0), strict=True):
            rows[f"floor_{protocol}", batch] = stats(floor_ms * scale)
            rows[protocol, batch] = stats(floor_ms * scale * (2.0 if batch == 1 else 1.5))
    return rows


def test_served_rows_are_read_against_their_floor_and_floors_against_in_process() -> None:
    figures = {f["name"]: f for f in serving.all_figures(fake_rows())}
    for figure in figures.values():
        runner.check(figure, "recommender_serving")
    rows = ("in_process", *_serving.PROTOCOLS, *(f"floor_{p}" for p in _serving.PROTOCOLS))
    metrics = ("requests_per_second", "p50_ms", "p99_ms")
    assert set(figures) == {
        f"{row}_batch{b}_{m}" for row in rows for b in serving.BATCHES for m in metrics
    } | {f"{p}_batch{b}_p50_over_floor" for p in _serving.PROTOCOLS for b in serving.BATCHES}
    served = figures["v2_batch32_p50_ms"]
    assert served["value"] == 36.0 and served["times_against"] == 1.5
    assert served["compared_with"].startswith("floor_v2_batch32_p50_ms (24.00 ms)")
    floor = figures["floor_v1_batch1_requests_per_second"]
    assert floor["times_against"] == 0.4
    assert floor["compared_with"].startswith("in_process_batch1_requests_per_second (500.00 ")
    assert figures["v1_batch32_requests_per_second"]["customers_per_second"] == 1066.7
    ratio = figures["v2_binary_batch1_p50_over_floor"]
    assert ratio["value"] == 2.0 and ratio["served_over_in_process"] == 4.0
    against = ratio["compared_with"].split(" ")[0]
    assert against == "floor_v2_binary_batch1_p50_ms" and against in figures
    assert figures["v1_batch32_p50_over_floor"]["value"] == 1.5


# --- the floor against the server, on the sample model trained above ----------------------------

UNKNOWN = "a-customer-the-model-never-saw"


@pytest.fixture(scope="module")
def model_dir(sample_run: tuple[dict, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample model with a VERSION, as the pipeline publishes one."""
    folder = tmp_path_factory.mktemp("served") / "recommender"
    shutil.copytree(sample_run[1], folder)
    (folder / "VERSION").write_text("3\n")
    return folder


def served_answer(server, protocol: str, body: bytes, headers: dict[str, str]) -> dict:
    """What recommender/serve.py answers to one encoded request, as the client reads it."""
    from recommender.serve import decode_v2, encode_v2

    if protocol == "v1":
        return json.loads(json.dumps(server.predict(json.loads(body))))
    request = decode_v2(body, headers, serving.NAME)
    return json.loads(encode_v2(server.predict(request), request).body)


def padded_requests(customers: list[str], n: int) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Requests with an unknown customer and an n past what a known one has left: the fallback
    and the padded V2 rows."""
    v1 = {"instances": [{"customer": c, "n": n} for c in customers]}
    v2 = serving.v2_request(customers)
    v2["inputs"][1]["data"] = [n]
    return _serving.bodies(v1, v2)


# starlette's TestClient warns about its own httpx dependency.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_the_floor_answers_what_the_server_answers(model_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from recommender.serve import RecommenderServer, decode_v2

    server = RecommenderServer(serving.NAME, model_dir)
    server.load()
    assert server.version == "3"
    customers = server.mapping.user_ids[: max(serving.BATCHES)]  # as the benchmark picks them
    requests = []
    for batch in serving.BATCHES:
        ids = customers[:batch]
        expected = [a["products"] for a in server.recommend(ids, [serving.TOP_N] * batch)]
        sent = _serving.bodies(serving.v1_request(ids), serving.v2_request(ids))
        # The server reads back the customers and n the benchmark meant.
        assert server._v1_request(json.loads(sent["v1"][0])) == (ids, [serving.TOP_N] * batch)
        for protocol in ("v2", "v2_binary"):
            request = decode_v2(*sent[protocol], serving.NAME)
            assert server._v2_request(request) == (ids, serving.TOP_N)
        requests.append((sent, serving.product_checks(expected)))
    assert len({tuple(p) for p in expected}) > 1  # customers get their own lists
    requests.append((padded_requests([customers[0], UNKNOWN], server.n_items), None))

    client = TestClient(_floor.recommender_app(model_dir))
    for sent, checks in requests:
        for protocol, (body, headers) in sent.items():
            path = (
                "/v1/models/recommender:predict"
                if protocol == "v1"
                else "/v2/models/recommender/infer"
            )
            answer = client.post(path, content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            got, served = answer.json(), served_answer(server, protocol, body, headers)
            if checks:
                checks[protocol](got)
            assert got["model_version"] == served["model_version"] == "3"
            if protocol == "v1":
                assert got == served
                continue
            assert got["model_name"] == served["model_name"] == serving.NAME
            fields = ("name", "datatype", "shape", "data")
            assert [{k: o[k] for k in fields} for o in got["outputs"]] == [
                {k: o[k] for k in fields} for o in served["outputs"]
            ]
    # The last request's answers hold a fallback and a padded row, so both were compared.
    outputs = {o["name"]: o["data"] for o in got["outputs"]}
    assert outputs["fallback"] == [False, True]
    assert outputs["count"][0] < server.n_items == outputs["count"][1]
    assert outputs["products"][server.n_items - 1] == ""

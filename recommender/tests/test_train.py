"""recommender.train end to end on the committed sample: the real CLI, as Katib runs it.

The model is trained once per session (conftest.py). It must beat the popularity baseline by a
clear margin on the same split, print what metrics.json holds in lines Katib's collector reads,
and leave a model and id mappings from which the reported figures come back.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recommender import data
from recommender.metrics import evaluate
from recommender.model import KERAS_FILE, ItemScorer
from recommender.tests.conftest import (
    BPR_FLOORS,
    MARGIN_OVER_POPULARITY,
    MODEL_FLOORS,
    REPO_ROOT,
    SMOKE_ARGS,
    TrainingRun,
)
from tests.harness.katib import parse_text_metrics

METRIC_LINE = re.compile(r"^([\w-]+)=(\S+)$")
EPOCHS = int(SMOKE_ARGS[SMOKE_ARGS.index("--epochs") + 1])


def printed(stdout: str) -> list[tuple[str, float]]:
    return [(m[1], float(m[2])) for line in stdout.splitlines() if (m := METRIC_LINE.match(line))]


def metrics_of(run: TrainingRun) -> dict[str, float]:
    return json.loads((run.model_dir / "metrics.json").read_text())


def test_the_model_beats_the_popularity_baseline_by_a_margin(smoke_training: TrainingRun) -> None:
    metrics = metrics_of(smoke_training)
    for name, floor in (MODEL_FLOORS | BPR_FLOORS).items():
        assert metrics[name] >= floor, (name, metrics)
    for name, margin in MARGIN_OVER_POPULARITY.items():
        lead = metrics[f"test_{name}"] - metrics[f"popularity_test_{name}"]
        assert lead >= margin, (name, lead, metrics)
    assert 0 <= metrics["popularity_test_ndcg_at_10"] <= metrics["popularity_test_hit_rate_at_10"]
    assert metrics["train_examples_per_second"] > 0
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}))


def test_stdout_holds_what_metrics_json_holds(smoke_training: TrainingRun) -> None:
    metrics = metrics_of(smoke_training)
    last = dict(printed(smoke_training.stdout))  # the last line of each name wins
    assert set(metrics) <= set(last)
    for name, value in metrics.items():
        assert last[name] == value, name


def test_every_epoch_is_printed_for_katib(smoke_training: TrainingRun) -> None:
    lines = printed(smoke_training.stdout)
    assert [v for n, v in lines if n == "epoch"] == list(range(1, EPOCHS + 1))
    # What Katib's StdOut collector (default filter) reads: every epoch's NDCG, then the final.
    seen = parse_text_metrics(smoke_training.stdout, ["val_ndcg_at_10", "test_ndcg_at_10"])
    assert [n for n, _ in seen].count("val_ndcg_at_10") == EPOCHS + 1  # epochs, then the final
    assert [n for n, _ in seen][-1] == "test_ndcg_at_10"
    history = json.loads((smoke_training.model_dir / "history.json").read_text())
    assert {len(values) for values in history.values()} == {EPOCHS}
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_ndcg_at_10"][-1] > history["val_ndcg_at_10"][0]  # it learned to rank


def test_the_saved_model_and_mappings_give_the_reported_figures(trained_model_dir: Path) -> None:
    import keras

    inter = data.load_sample()
    mapping = data.IdMapping.load(trained_model_dir)
    assert mapping.user_ids == inter.user_ids and mapping.item_ids == inter.item_ids
    assert all(mapping.user_ids[mapping.user_index[u]] == u for u in inter.user_ids)
    model = keras.saving.load_model(trained_model_dir / KERAS_FILE)
    assert model.get_layer("user_embedding").get_weights()[0].shape[0] == len(mapping.user_ids)
    assert model.get_layer("product_embedding").get_weights()[0].shape[0] == len(mapping.item_ids)
    train, valid, test = data.split_by_user(inter, seed=42)  # train.py's default seed
    figures = evaluate(ItemScorer(model), train, test, also_seen=valid)
    metrics = json.loads((trained_model_dir / "metrics.json").read_text())
    assert figures["ndcg@10"] == pytest.approx(metrics["test_ndcg_at_10"], abs=1e-6)
    assert figures["hit_rate@10"] == pytest.approx(metrics["test_hit_rate_at_10"], abs=1e-6)
    # A raw customer id answers through the mapping as its index does.
    customer = inter.user_ids[5]
    x = {"users": np.array([[mapping.user_index[customer]]]), "products": np.array([[0]])}
    assert float(model.predict_on_batch(x)[0, 0]) == pytest.approx(
        float(ItemScorer(model)(np.array([5]))[0, 0]), abs=1e-5
    )


def run_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "recommender.train", *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "flags",
    [
        ["--dropout", "1"],
        ["--n-factors", "0"],
        ["--learning-rate", "-1"],
        ["--negatives", "zero"],
        ["--epochs", "1.5"],
    ],
)
def test_bad_flags_get_one_line_and_exit_2(flags: list[str], tmp_path: Path) -> None:
    run = run_cli("--sample", "--model-dir", str(tmp_path / "m"), *flags)
    assert run.returncode == 2
    assert flags[0] in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "m").exists()


def test_data_mistakes_get_one_line_before_tensorflow(tmp_path: Path) -> None:
    singles = tmp_path / "singles.csv"  # one purchase per customer: nothing to validate on
    singles.write_text("customerId,products\n1,5\n2,6\n3,5\n")
    broken = tmp_path / "broken.csv"
    broken.write_text("customerId,products\n1,5||6\n")
    for args, words in [
        (["--data-file", str(singles)], "split is empty"),
        (["--data-file", str(broken)], "broken.csv:2"),
        (["--sample", "--dataset", "movielens"], "--sample"),
    ]:
        run = run_cli("--model-dir", str(tmp_path / "m"), *args)
        assert run.returncode == 1, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], run.stderr
        assert "tensorflow" not in run.stdout.lower()
    assert not (tmp_path / "m").exists()

"""imdb_sentiment.train end to end on the committed sample: the real CLI, as Katib runs it.

Both models are trained once per session (tests/conftest.py) and reported side by side.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from imdb_sentiment import data
from imdb_sentiment.model import (
    KERAS_FILE,
    SKLEARN_FILE,
    SentimentModel,
    expected_calibration_error,
    load_keras,
)
from imdb_sentiment.tests.conftest import TrainingRun, train_cli
from tests.harness import cases

CASE = cases.load_case(Path(data.__file__).parent)
METRIC_LINE = re.compile(r"^(\w+)=(\S+)$")  # what Katib's StdOut collector picks out
CHANCE = 0.5  # the sample is balanced


def printed(stdout: str) -> list[tuple[str, float]]:
    return [(m[1], float(m[2])) for line in stdout.splitlines() if (m := METRIC_LINE.match(line))]


@pytest.mark.parametrize("run", ["bilstm", "tfidf"])
def test_both_models_beat_chance_by_a_clear_margin(run: str, request) -> None:
    training: TrainingRun = request.getfixturevalue(
        "smoke_training" if run == "bilstm" else "tfidf_training"
    )
    metrics = json.loads((training.model_dir / "metrics.json").read_text())
    floors = CASE.floors("smoke" if run == "bilstm" else "tfidf")
    assert floors["test_accuracy"] >= CHANCE + 0.25  # the floor itself means something
    for name, floor in floors.items():
        assert metrics[name] >= floor, (run, metrics)
    for name, ceiling in CASE.ceilings("smoke" if run == "bilstm" else "tfidf").items():
        assert metrics[name] <= ceiling, (run, metrics)
    # The last name=value line of each metric is what metrics.json holds.
    last = dict(printed(training.stdout))
    for name in ("test_accuracy", "test_loss", "test_ece"):
        assert last[name] == metrics[name], name
    print(f"{run}: {json.dumps({k: round(v, 4) for k, v in metrics.items()})}")


def test_the_bilstm_prints_every_epoch_for_katib(smoke_training: TrainingRun) -> None:
    epochs = int(CASE.smoke["train_args"][CASE.smoke["train_args"].index("--epochs") + 1])
    lines = printed(smoke_training.stdout)
    assert [v for n, v in lines if n == "epoch"] == list(range(1, epochs + 1))
    assert len([v for n, v in lines if n == "val_accuracy"]) == epochs
    history = json.loads((smoke_training.model_dir / "history.json").read_text())
    assert len(history["val_accuracy"]) == epochs and len(history["loss"]) == epochs
    assert history["loss"][-1] < history["loss"][0]  # it learned something


@pytest.mark.parametrize("run", ["bilstm", "tfidf"])
def test_reported_figures_are_those_of_the_saved_model(run: str, request) -> None:
    """Accuracy and both calibration errors, recomputed from what a server would load."""
    folder: Path = request.getfixturevalue(
        "trained_model_dir" if run == "bilstm" else "tfidf_model_dir"
    )
    metrics = json.loads((folder / "metrics.json").read_text())
    _, (test_x, test_y) = data.load_sample()
    model = SentimentModel.load(folder)
    assert model.kind == run
    calibrated = model.probabilities(test_x)
    raw = model.classifier.raw_probabilities(test_x)
    assert np.mean((calibrated >= 0.5) == test_y) == pytest.approx(metrics["test_accuracy"])
    assert expected_calibration_error(calibrated, test_y) == pytest.approx(
        metrics["test_ece"], abs=1e-6
    )
    assert expected_calibration_error(raw, test_y) == pytest.approx(
        metrics["test_ece_uncalibrated"], abs=1e-6
    )
    # The calibration is a real fit, not the identity it starts from.
    calibration = json.loads((folder / "calibration.json").read_text())
    assert calibration != {"slope": 1.0, "intercept": 0.0}


def test_the_exported_bilstm_reads_raw_text_and_cleans_it_itself(trained_model_dir: Path) -> None:
    model = load_keras(trained_model_dir / KERAS_FILE)
    reviews = [
        "A wonderful, moving film.<br /><br />I loved the music!",
        "A wonderful, moving film. I loved the music",
        "a wonderful moving film<BR>i LOVED the music",
        "Dreadful acting.<br />A complete waste of time.",
    ]
    probs = model.predict_on_batch(np.asarray(reviews, dtype=object).reshape(-1, 1)).reshape(-1)
    # Line breaks, case and punctuation are cleaned inside the model: the same words, the same
    # answer.
    assert probs[0] == pytest.approx(probs[1], abs=1e-6) == pytest.approx(probs[2], abs=1e-6)
    assert probs[0] > 0.5 > probs[3]


def test_a_model_of_the_other_kind_is_replaced_not_left_beside(tmp_path: Path) -> None:
    (tmp_path / KERAS_FILE).write_text("a stale BiLSTM from an earlier run")
    train_cli(tmp_path, "--sample", "--model", "tfidf")
    assert (tmp_path / SKLEARN_FILE).exists() and not (tmp_path / KERAS_FILE).exists()
    assert SentimentModel.load(tmp_path).kind == "tfidf"

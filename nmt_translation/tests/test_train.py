"""nmt_translation.train end to end on the committed sample: the real CLI, as Katib runs it.

Both models are trained once per session (tests/conftest.py) and checked against the floors
there: each must beat the copy-the-input baseline by a clear margin on held-out sources.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from nmt_translation import train
from nmt_translation.tests.conftest import (
    ATTENTION_SMOKE,
    COPY_MARGIN,
    FLOORS,
    REPO_ROOT,
    TRANSFORMER_SMOKE,
    TrainingRun,
)

METRIC_LINE = re.compile(r"^(\w+)=(\S+)$")  # what Katib's StdOut collector picks out


def printed(stdout: str) -> list[tuple[str, float]]:
    return [(m[1], float(m[2])) for line in stdout.splitlines() if (m := METRIC_LINE.match(line))]


def smoke_epochs(args: list[str]) -> int:
    return int(args[args.index("--epochs") + 1])


@pytest.mark.parametrize("kind", ["attention", "transformer"])
def test_each_model_beats_the_copy_baseline_by_a_clear_margin(kind: str, trainings) -> None:
    run: TrainingRun = trainings[kind]
    metrics = json.loads((run.model_dir / "metrics.json").read_text())
    assert metrics["test_bleu"] >= metrics["copy_bleu"] + COPY_MARGIN, metrics
    for name, floor in FLOORS[kind].items():
        assert metrics[name] >= floor, (kind, name, metrics)
    # The interval brackets the score it is about, and beam search is scored on every source.
    assert metrics["test_bleu_low"] <= metrics["test_bleu"] <= metrics["test_bleu_high"]
    assert metrics["test_sources"] == 246
    assert metrics["bleu_signature"].startswith("nrefs:var|")  # multi-reference
    print(f"{kind}: {run.seconds:.1f} s; " + json.dumps(
        {k: round(v, 2) for k, v in metrics.items() if isinstance(v, float)}
    ))  # fmt: skip


@pytest.mark.parametrize("kind", ["attention", "transformer"])
def test_printed_metrics_are_those_in_metrics_json(kind: str, trainings) -> None:
    run: TrainingRun = trainings[kind]
    metrics = json.loads((run.model_dir / "metrics.json").read_text())
    last = dict(printed(run.stdout))
    for name in train.FINAL_LINES:
        assert last[name] == metrics[name], name
    # One line of each per epoch for Katib (val_bleu once more in the final set).
    lines = printed(run.stdout)
    epochs = smoke_epochs(ATTENTION_SMOKE if kind == "attention" else TRANSFORMER_SMOKE)
    assert [v for n, v in lines if n == "epoch"] == list(range(1, epochs + 1))
    assert len([v for n, v in lines if n == "val_bleu"]) == epochs + 1
    history = json.loads((run.model_dir / "history.json").read_text())
    assert len(history["val_bleu"]) == len(history["loss"]) == epochs
    assert history["loss"][-1] < history["loss"][0]  # it learned something
    assert history["val_bleu"][-1] == metrics["val_bleu"]
    for name in ("config.json", "model.weights.h5", "spa.json", "eng.json"):
        assert (run.model_dir / name).is_file(), name


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--model", "rnn"], "invalid choice"),
        (["--epochs", "0"], "--epochs"),
        (["--dropout", "1.5"], "--dropout"),
        (["--vocab-size", "10"], "--vocab-size"),
        (["--hparams-set", "transformer_huge"], "invalid choice"),
        (["--learning-rate", "-1"], "--learning-rate"),
    ],
)
def test_a_bad_flag_exits_2_with_one_line(flags: list[str], words: str, tmp_path) -> None:
    cmd = [sys.executable, "-m", "nmt_translation.train", "--sample", "--model-dir", str(tmp_path)]
    run = subprocess.run([*cmd, *flags], cwd=REPO_ROOT, capture_output=True, text=True)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error:") and words in last, run.stderr
    assert "Traceback" not in run.stderr


def test_a_missing_data_file_is_one_line_not_a_traceback(tmp_path) -> None:
    bad = tmp_path / "spa.txt"
    bad.write_text("only one column\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "nmt_translation.train", "--data-file", str(bad)]
    run = subprocess.run(
        [*cmd, "--model-dir", str(tmp_path / "m")], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_the_flag_choices_are_the_models_own() -> None:
    from nmt_translation import model

    assert train.MODELS == model.MODELS
    assert set(train.HPARAMS_SETS) == set(model.HPARAMS_SETS)

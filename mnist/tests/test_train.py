"""mnist.train end to end on the committed sample: the real CLI, as Katib and the harness run it."""

from __future__ import annotations

import json
import re

from mnist.tests.conftest import SMOKE_CEILINGS, SMOKE_EPOCHS, SMOKE_FLOORS, TrainingRun

EPOCHS = SMOKE_EPOCHS
METRIC_LINE = re.compile(r"^(\w+)=(\S+)$")  # what Katib's StdOut collector picks out


def test_smoke_training_on_the_sample(smoke_training: TrainingRun) -> None:
    run, tmp_path = smoke_training, smoke_training.model_dir
    printed: dict[str, list[float]] = {}
    for line in run.stdout.splitlines():
        if m := METRIC_LINE.match(line):
            printed.setdefault(m[1], []).append(float(m[2]))
    assert printed["epoch"] == list(range(1, EPOCHS + 1))
    for name in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert len(printed[name]) == EPOCHS, name

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name, floor in SMOKE_FLOORS.items():
        assert metrics[name] >= floor, metrics  # test_accuracy: chance is 0.10
    for name, ceiling in SMOKE_CEILINGS.items():
        assert metrics[name] <= ceiling, metrics  # test_loss: a guess has ln 10 = 2.30
    for name in ("accuracy", "loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss"):
        assert printed[name][-1] == metrics[name], name  # the last printed value is the final one
    assert (tmp_path / "model.keras").stat().st_size > 0
    history = json.loads((tmp_path / "history.json").read_text())  # the notebook's curves
    assert history["val_accuracy"] == printed["val_accuracy"]
    print(f"smoke: test_accuracy={metrics['test_accuracy']:.4f} in {run.seconds:.1f}s")

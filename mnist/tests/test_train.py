"""mnist.train end to end on the committed sample: the real CLI, as Katib and the harness run it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 3  # about 0.93-0.95 test accuracy on the sample; 2 epochs land too close to 0.90
METRIC_LINE = re.compile(r"^(\w+)=(\S+)$")  # what Katib's StdOut collector picks out


def test_smoke_training_on_the_sample(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mnist.train", "--sample", "--epochs", str(EPOCHS)]
    start = time.perf_counter()
    run = subprocess.run(
        [*cmd, "--model-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - start
    assert run.returncode == 0, run.stderr[-3000:]

    printed: dict[str, list[float]] = {}
    for line in run.stdout.splitlines():
        if m := METRIC_LINE.match(line):
            printed.setdefault(m[1], []).append(float(m[2]))
    assert printed["epoch"] == list(range(1, EPOCHS + 1))
    for name in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert len(printed[name]) == EPOCHS, name

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.90, metrics  # chance is 0.10
    for name in ("accuracy", "loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss"):
        assert printed[name][-1] == metrics[name], name  # the last printed value is the final one
    assert (tmp_path / "model.keras").stat().st_size > 0
    history = json.loads((tmp_path / "history.json").read_text())  # the notebook's curves
    assert history["val_accuracy"] == printed["val_accuracy"]
    print(f"smoke: test_accuracy={metrics['test_accuracy']:.4f} in {seconds:.1f}s")

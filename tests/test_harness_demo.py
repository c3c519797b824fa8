"""`make demo`'s screen: what of a step's output a person sees, and what stays in its log."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from tests.harness import cases, demo

# What `python -m mnist.train` writes to a log, TensorFlow's start-up included.
KERAS_RUN = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795905127.466492    6891 port.cc:153] oneDNN custom operations are on.
I0000 00:00:1795905127.466893    6891 cudart_stub.cc:31] Could not find cuda drivers on your machine.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow.
train=3600 validation=400 test=1000 images
E0000 00:00:1795905132.430917    6891 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)
Epoch 1/2
epoch=1
accuracy=0.6941666603088379
loss=0.9672761559486389
113/113 - 4s - 36ms/step - accuracy: 0.6942 - loss: 0.9673
Epoch 2/2
epoch=2
accuracy=0.914722204208374
loss=0.29141882061958313
113/113 - 2s - 18ms/step - accuracy: 0.9147 - loss: 0.2914
/x/site-packages/keras/src/trainers.py:12: UserWarning: something a reader need not see
  warnings.warn(
test_accuracy=0.9350000023841858
test_loss=0.23927167057991028
"""


def shown(mode: str, text: str, **kwargs) -> list[str]:
    lines: list[str] = []
    progress = demo.Progress(lines.append, mode, **kwargs)
    for line in text.splitlines():
        progress.feed(line)
    progress.flush()
    return lines


def test_a_trainers_output_is_its_own_lines_and_one_line_per_epoch() -> None:
    assert shown("script", KERAS_RUN) == [
        "train=3600 validation=400 test=1000 images",
        "epoch 1: accuracy 0.6942, loss 0.9673",
        "epoch 2: accuracy 0.9147, loss 0.2914",
        "test_accuracy 0.935, test_loss 0.2393",
    ]


def test_verbose_shows_every_line() -> None:
    assert shown("script", KERAS_RUN, verbose=True) == KERAS_RUN.splitlines()


def test_final_metrics_right_after_the_last_epoch_are_a_line_of_their_own() -> None:
    # train_torch.py: a tqdm bar between epochs, none between the last epoch and the test.
    text = (
        "epoch=1\naccuracy=0.69\nloss=0.98\nepoch 2/2:  50%|#  | 1/2 [00:01<00:01]\n"
        "epoch=2\naccuracy=0.89\nloss=0.33\ntest_accuracy=0.919\ntest_loss=0.2769\n"
    )
    lines: list[str] = []
    progress = demo.Progress(lines.append, "job", prefix="node-0: ")
    for line in text.splitlines():
        progress.feed(line)
    progress.flush()
    assert lines == [
        "node-0: epoch 1: accuracy 0.69, loss 0.98",
        "node-0: epoch 2: accuracy 0.89, loss 0.33",
    ]  # the final metrics go on the job's result line
    assert progress.last_metrics == {"test_accuracy": "0.919", "test_loss": "0.2769"}


def test_a_long_metric_line_keeps_the_metrics_case_toml_bounds() -> None:
    text = "".join(f"psnr_drop_{i}=2{i}.123456\n" for i in range(12)) + "psnr_gain=3.035\n"
    (line,) = shown("script", text, keep=("psnr_gain",))
    assert line == "psnr_gain 3.035 (and 12 more in the log)"


def test_a_pipeline_is_its_tasks_endings_with_their_final_metrics_and_spark_stages() -> None:
    text = """\
22:34:29.895 - INFO - Running pipeline: 'mnist'
/x/kfp/local/orchestrator/task_executor.py:100: UserWarning: Task 'train': settings ['cpu_limit'] have no effect in the current local runner and will be ignored.
  _warn_local_only_noops(task_name, task_spec, executor_spec.container)
22:34:30.735 - INFO - Executing task 'train'
    [KFP Executor 2026-11-28 22:34:30,830 INFO]: Got executor_input:
    {
        "parameterValues": {
            "epochs": 2
        }
    }
    epoch=1
    accuracy=0.69
    113/113 - 2s - 18ms/step - accuracy: 0.69
    test_accuracy=0.935
22:34:49.702 - INFO - Task 'train' finished with status SUCCESS
22:34:49.702 - INFO - Task 'train' outputs:
    metrics: Metrics( name='metrics',
                      uri='/work/runs/x/train/metrics',
22:34:49.703 - INFO - Executing task 'svd-on-spark'
    26/11/28 22:37:24 WARN Utils: Your hostname, vm, resolves to a loopback address
    [Stage 0:>                                                          (0 + 2) / 2]
    [Stage 0:=============================>                             (1 + 1) / 2]
22:34:59.117 - INFO - Task 'svd-on-spark' finished with status SUCCESS
22:34:59.117 - INFO - Pipeline 'mnist' finished with status SUCCESS
"""
    lines = shown("pipeline", text)
    assert [line.split(" (")[0] for line in lines] == [
        "task train: SUCCESS",
        "task svd-on-spark:",
        "  spark stage 0: 2 tasks",
        "task svd-on-spark: SUCCESS",
    ]
    assert lines[0].endswith("; test_accuracy 0.935")


def test_katib_shows_each_trial_as_it_finishes() -> None:
    text = """\
[katib] experiment mnist-random: random (RandomSampler) over learning_rate; up to 2 trials
[katib] trial mnist-random-4rvgkf67 created: learning_rate=0.00307006287931
[katib] trial mnist-random-4rvgkf67 Succeeded in 22.4 s: val_accuracy=0.9425 (best so far)
NAME                    TYPE        STATUS   AGE   learning_rate
"""
    assert shown("katib", text) == [
        "trial mnist-random-4rvgkf67 Succeeded in 22.4 s: val_accuracy=0.9425 (best so far)"
    ]


def test_tail_splits_redrawn_lines_and_reads_to_the_end(tmp_path: Path) -> None:
    log = tmp_path / "step.log"
    lines: list[str] = []
    with demo.Tail(log, demo.Progress(lines.append, "pipeline")):
        log.write_text(
            "Executing task 'svd'\n[Stage 3:>   (0 + 2) / 2]\r[Stage 3:=>  (1 + 1) / 2]\r"
            "Task 'svd' finished with status SUCCESS"  # no newline: read when the step ends
        )
    assert lines[:2] == ["task svd:", "  spark stage 3: 2 tasks"]
    assert lines[2].startswith("task svd: SUCCESS")


def test_output_to_sends_this_process_and_its_children_to_the_log(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys\n"
        "from pathlib import Path\n"
        "from tests.harness.demo import output_to\n"
        "with output_to(Path(sys.argv[1])):\n"
        "    print('from the parent', flush=True)\n"
        "    subprocess.run([sys.executable, '-c', 'import sys; sys.stderr.write(\"child\\\\n\")'])\n"
        "print('on the screen')\n"
    )
    log = tmp_path / "logs" / "step.log"
    done = subprocess.run(
        [sys.executable, "-c", code, str(log)],
        capture_output=True,
        text=True,
        cwd=cases.REPO_ROOT,
        check=True,
    )
    assert done.stdout == "on the screen\n" and done.stderr == ""
    assert log.read_text() == "from the parent\nchild\n"


def test_the_report_shows_each_tasks_artifacts_by_their_type(tmp_path: Path) -> None:
    case = next(c for c in cases.discover() if c.name == "income_census")
    root = tmp_path / "pipeline_root" / "income-census-2026"
    evaluate, explain = root / "evaluate", root / "explain"
    explain.mkdir(parents=True)
    evaluate.mkdir()
    matrix = {
        "annotationSpecs": [{"displayName": "<=50K"}, {"displayName": ">50K"}],
        "rows": [{"row": [1428, 127]}, {"row": [180, 265]}],
    }
    (evaluate / "executor_output.json").write_text(
        json.dumps(
            {
                "parameterValues": {"Output": 0.8465},
                "artifacts": {
                    "confusion": {
                        "artifacts": [
                            {
                                "uri": str(evaluate / "confusion"),
                                "metadata": {"confusionMatrix": matrix},
                            }
                        ]
                    },
                    "metrics": {
                        "artifacts": [
                            {"uri": str(evaluate / "metrics"), "metadata": {"accuracy": 0.8465}}
                        ]
                    },
                },
            }
        )
    )
    (explain / "report").write_text("# Anchors\n\n| class | anchor |\n|---|---|\n| >50K | a |\n")
    (explain / "executor_output.json").write_text(
        json.dumps({"artifacts": {"report": {"artifacts": [{"uri": str(explain / "report")}]}}})
    )
    run = SimpleNamespace(
        root=root, task_dir=lambda task: next(p for p in root.iterdir() if p.name == task)
    )

    page = demo.write_report(case, run, tmp_path / "report.html").read_text()

    assert "<h2>evaluate</h2>" in page and "<h2>explain</h2>" in page
    assert "(system.ClassificationMetrics)" in page and "<td>1428</td>" in page
    assert "<th>&gt;50K</th>" in page  # labels escaped
    assert "<td>accuracy</td><td>0.8465</td>" in page
    assert "<h1>Anchors</h1>" in page and "<td>&gt;50K</td>" in page  # Markdown rendered


def test_the_summary_says_how_well_in_case_tomls_words() -> None:
    case = next(c for c in cases.discover() if c.name == "mnist")
    out = io.StringIO()
    run = demo.Demo(case, cases.REPO_ROOT / "runs" / "nothing-here", console=out)
    run.metrics = {"test_accuracy": 0.947, "test_loss": 0.2, "train_seconds": 8.2}
    run.summary(12.0)
    text = out.getvalue()
    assert "94.7% of the 1,000 held-out test digits right" in text
    assert "case.toml's floors met: test_accuracy >= 0.9, test_loss <= 0.5" in text
    assert "`make lab`, open mnist/notebooks/walkthrough.ipynb" in text
    run.metrics["test_accuracy"] = 0.5
    run.summary(12.0)
    assert "BELOW case.toml's floors: test_accuracy 0.5 < 0.9" in out.getvalue()


def test_a_served_answer_in_a_few_words() -> None:
    v1 = {"predictions": [{"digit": 7, "probabilities": [0.1] * 10}, {"digit": 2}]}
    assert demo.gist(json.dumps(v1)) == "2 predictions: digit 7; digit 2"
    v2 = {"outputs": [{"name": "denoised", "datatype": "FP32", "shape": [1, 64, 64], "data": []}]}
    assert demo.gist(json.dumps(v2)) == "outputs denoised FP32 [1, 64, 64]"
    assert demo.gist("not json") == "not json"

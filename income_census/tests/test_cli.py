"""The trainers' command lines: a user's mistake gets one line and an exit code, never a traceback.

Bad values are refused by argparse before any work (exit 2, the usage then one `error:` line);
mistakes found later (a --dataset folder without the data files, a failed download) print one
`error:` line that says what to do and exit 1. The real CLI runs in a subprocess.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from income_census import train, train_distributed

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINERS = ("income_census.train", "income_census.train_distributed")


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DMLC_", "RANK", "WORLD"))}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# Copied from mnist.tests.test_cli.refused_url
def refused_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens: a connection there is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def error_line(run: subprocess.CompletedProcess, prog: str) -> str:
    """The one `error:` line of a refused run, after checking nothing else went wrong."""
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if f"{prog}: error:" in line]
    assert len(errors) == 1, run.stderr
    assert run.stderr.rstrip().endswith(errors[0]), run.stderr  # the last thing said
    return errors[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--n-estimators", "0"], "argument --n-estimators: must be a whole number >= 1, got '0'"),
        (["--max-depth", "-1"], "argument --max-depth: must be a whole number >= 0"),
        (["--min-samples-leaf", "0"], "argument --min-samples-leaf: must be a whole number >= 1"),
        (["--learning-rate", "-0.1"], "argument --learning-rate: must be a number > 0"),
        (["--seed", "-1"], "argument --seed: must be a whole number from 0 to 2**32 - 1"),
        (["--n-jobs", "0"], "argument --n-jobs: must be -1 (one per CPU) or a whole number >= 1"),
        (["--model", "svm"], "argument --model: invalid choice: 'svm'"),
        (["--dataset", "no/such"], "argument --dataset: no such file or folder: 'no/such'"),
        (["--model-dir", "README.md"], "argument --model-dir: 'README.md' is a file, not a folder"),
        (["--data-dir", "README.md"], "argument --data-dir: 'README.md' is a file, not a folder"),
    ],
)
@pytest.mark.parametrize("parse_args", [train.parse_args, train_distributed.parse_args])
def test_bad_values_are_refused_before_any_work(
    parse_args, args: list[str], expected: str, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--sample", *args])
    assert exit_.value.code == 2
    assert expected in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--checkpoint-rounds", "0"], "argument --checkpoint-rounds: must be a whole number >= 1"),
        (["--checkpoint-dir", "README.md"], "'README.md' is a file, not a folder"),
    ],
)
def test_distributed_refuses_bad_checkpoint_flags(
    args: list[str], expected: str, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit) as exit_:
        train_distributed.parse_args(["--sample", *args])
    assert exit_.value.code == 2
    assert expected in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("module", TRAINERS)
def test_a_bad_value_is_one_line_and_exit_2_from_the_real_cli(module: str) -> None:
    run = run_cli(module, "--sample", "--n-estimators", "0")
    assert run.returncode == 2
    prog = module.rsplit(".", 1)[1] + ".py"
    line = error_line(run, prog)
    assert line == f"{prog}: error: argument --n-estimators: must be a whole number >= 1, got '0'"
    assert run.stderr.startswith("usage: ")  # argparse's usage, then the error: nothing else
    assert run.stdout == ""


@pytest.mark.parametrize("module", TRAINERS)
def test_a_dataset_without_the_data_files_is_one_line_and_exit_1(
    module: str, tmp_path: Path
) -> None:
    (tmp_path / "dataset").mkdir()
    run = run_cli(module, f"--dataset={tmp_path / 'dataset'}", f"--model-dir={tmp_path / 'm'}")
    assert run.returncode == 1
    line = error_line(run, module.rsplit(".", 1)[1] + ".py")
    assert str(tmp_path / "dataset" / "adult.data") in line
    assert "check --dataset, --data-dir and --mirror, or use the committed --sample" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("module", TRAINERS)
def test_a_failed_download_is_one_line_and_exit_1(module: str, tmp_path: Path) -> None:
    mirror = refused_url()
    run = run_cli(
        module,
        f"--mirror={mirror}",
        f"--data-dir={tmp_path / 'c'}",
        f"--model-dir={tmp_path / 'm'}",
    )
    assert run.returncode == 1
    # The distributed trainer's rank 0 has started XGBoost's tracker by then: it is stopped
    # quietly (its finalizer would print a traceback).
    line = error_line(run, module.rsplit(".", 1)[1] + ".py")
    assert f"{mirror}adult.data: download failed" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("parse_args", [train.parse_args, train_distributed.parse_args])
def test_help_puts_data_and_model_flags_first_and_states_every_default(
    parse_args, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--help"])
    assert exit_.value.code == 0
    options = capsys.readouterr().out.split("options:", 1)[1]
    flags = [line.split()[0].rstrip(",") for line in options.splitlines() if line[2:4] == "--"]
    assert flags[:6] == [
        "--sample",
        "--dataset",
        "--data-dir",
        "--mirror",
        "--model-dir",
        "--model",
    ]
    if "--checkpoint-dir" in flags:  # the distributed plumbing comes last
        assert flags[-2:] == ["--checkpoint-dir", "--checkpoint-rounds"]
    assert " ".join(options.split()).count("(default:") == len(flags)

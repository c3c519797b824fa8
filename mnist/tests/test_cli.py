"""The trainers' command lines: a user's mistake gets one line and an exit code, never a traceback.

Bad values are refused by argparse before any work (exit 2, the usage then one `error:` line);
mistakes found later (a --dataset that is no .npz, a failed download) print one `error:` line
that says what to do and exit 1. The real CLI runs in a subprocess, as a user would type it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mnist import train, train_torch
from mnist.train_torch import world_from_env

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINERS = ("mnist.train", "mnist.train_torch")


def run_cli(
    module: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def refused_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens: a connection there is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def error_line(run: subprocess.CompletedProcess, prog: str) -> str:
    """The one `error:` line of a refused run, after checking nothing else went wrong."""
    assert "Traceback" not in run.stderr, run.stderr
    assert run.stdout == "", run.stdout  # nothing trained, nothing reported
    errors = [line for line in run.stderr.splitlines() if f"{prog}: error:" in line]
    assert len(errors) == 1, run.stderr
    assert run.stderr.rstrip().endswith(errors[0]), run.stderr  # the last thing said
    return errors[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--epochs", "0"], "argument --epochs: must be a whole number >= 1, got '0'"),
        (["--batch-size", "-32"], "argument --batch-size: must be a whole number >= 1"),
        (["--learning-rate", "0"], "argument --learning-rate: must be a number > 0"),
        (["--learning-rate", "nan"], "argument --learning-rate: must be a number > 0"),
        (["--seed", "-1"], "argument --seed: must be a whole number from 0 to 2**32 - 1"),
        (["--num-layers", "4"], "argument --num-layers: invalid choice: 4"),
        (["--optimizer", "adamw"], "argument --optimizer: invalid choice: 'adamw'"),
        (["--dataset", "no/such.npz"], "argument --dataset: no such file or folder: 'no/such.npz'"),
        (["--model-dir", "README.md"], "argument --model-dir: 'README.md' is a file, not a folder"),
        (["--data-dir", "README.md"], "argument --data-dir: 'README.md' is a file, not a folder"),
    ],
)
@pytest.mark.parametrize("parse_args", [train.parse_args, train_torch.parse_args])
def test_bad_values_are_refused_before_any_work(
    parse_args, args: list[str], expected: str, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--sample", *args])
    assert exit_.value.code == 2
    assert expected in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--threads", "0"], {}, "argument --threads: must be a whole number >= 1"),
        (["--checkpoint-dir", "README.md"], {}, "'README.md' is a file, not a folder"),
        ([], {"WORLD_SIZE": "2", "RANK": "-1"}, "RANK=-1 is not a rank of WORLD_SIZE=2 processes"),
        ([], {"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 is not a rank of WORLD_SIZE=2 processes"),
        ([], {"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number"),
        (["--batch-size", "33"], {"WORLD_SIZE": "2"}, "--batch-size 33 must divide evenly over 2"),
    ],
)
def test_torch_refuses_bad_threads_checkpoints_and_ranks(
    args: list[str], env: dict, expected: str, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        train_torch.parse_args(["--sample", *args])
    assert exit_.value.code == 2
    assert expected in capsys.readouterr().err.splitlines()[-1]


def test_world_from_env() -> None:
    assert world_from_env({}) == (1, 0)
    assert world_from_env({"WORLD_SIZE": "4", "RANK": "3"}) == (4, 3)
    with pytest.raises(ValueError, match="WORLD_SIZE=0"):
        world_from_env({"WORLD_SIZE": "0"})


@pytest.mark.parametrize("module", TRAINERS)
def test_a_bad_value_is_one_line_and_exit_2_from_the_real_cli(module: str) -> None:
    run = run_cli(module, "--sample", "--epochs", "0")
    assert run.returncode == 2
    prog = module.rsplit(".", 1)[1] + ".py"
    line = error_line(run, prog)
    assert line == f"{prog}: error: argument --epochs: must be a whole number >= 1, got '0'"
    assert run.stderr.startswith("usage: ")  # argparse's usage, then the error: nothing else


@pytest.mark.parametrize("module", TRAINERS)
def test_a_dataset_that_is_no_npz_is_one_line_and_exit_1(module: str, tmp_path: Path) -> None:
    bad = tmp_path / "dataset.npz"
    bad.write_bytes(b"not a zip archive")
    run = run_cli(module, f"--dataset={bad}", f"--model-dir={tmp_path / 'model'}")
    assert run.returncode == 1
    line = error_line(run, module.rsplit(".", 1)[1] + ".py")
    assert f"--dataset {bad}: not a .npz of uint8 train_x, train_y, test_x, test_y" in line
    assert "--sample" in line  # what to do instead
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("module", TRAINERS)
def test_a_failed_download_is_one_line_and_exit_1(module: str, tmp_path: Path) -> None:
    mirror = refused_url()
    run = run_cli(
        module,
        f"--mirror={mirror}",
        f"--data-dir={tmp_path / 'cache'}",
        f"--model-dir={tmp_path / 'model'}",
    )
    assert run.returncode == 1
    line = error_line(run, module.rsplit(".", 1)[1] + ".py")
    assert f"{mirror}train-images-idx3-ubyte.gz: download failed" in line
    assert "check --dataset, --data-dir and --mirror, or use the committed --sample" in line
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("parse_args", [train.parse_args, train_torch.parse_args])
def test_help_states_every_default_with_the_data_and_training_flags_first(
    parse_args, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    options = text.split("options:", 1)[1]
    flags = [line.split()[0].rstrip(",") for line in options.splitlines() if line[2:4] == "--"]
    # What a user sets first: the data, where the model goes, then the hyperparameters Katib
    # tunes; process plumbing (torch's backend and threads) comes last.
    assert flags[:5] == ["--sample", "--dataset", "--data-dir", "--mirror", "--model-dir"]
    order = [flags.index(f) for f in ("--epochs", "--batch-size", "--learning-rate", "--seed")]
    assert order == sorted(order) and order[0] > flags.index("--model-dir")
    if "--backend" in flags:
        assert flags[-2:] == ["--backend", "--threads"]
    joined = " ".join(options.split())
    assert joined.count("(default:") == len(flags), joined  # every flag states its default


TWO_WORKERS = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}'


@pytest.mark.parametrize(
    ("args", "tf_config", "expected"),
    [
        (["--epochs", "0"], None, "argument --epochs: must be a whole number >= 1, got '0'"),
        (["--checkpoint-steps", "-1"], None, "argument --checkpoint-steps: must be a whole number"),
        (["--batch-size", "7"], TWO_WORKERS, "--batch-size 7 does not split evenly over the 2"),
        ([], TWO_WORKERS.replace('"index": 1', '"index": 2'), "is not in its cluster"),
        ([], "chief-0", "TF_CONFIG is not a cluster and a task"),
    ],
)
def test_the_distributed_trainer_refuses_bad_flags_and_clusters_before_any_replica_waits(
    args: list[str], tf_config: str | None, expected: str
) -> None:
    env = {"TF_CONFIG": tf_config} if tf_config else {}
    run = run_cli("mnist.train_distributed", "--sample", *args, env=env)
    assert run.returncode == 2
    assert expected in error_line(run, "train_distributed.py")
    assert "tensorflow" not in run.stderr.lower()  # refused before TensorFlow was imported


def test_a_batch_larger_than_the_data_is_one_line_and_exit_1(tmp_path: Path) -> None:
    run = run_cli(
        "mnist.train_distributed", "--sample", "--batch-size", "5000", "--model-dir", str(tmp_path)
    )
    assert run.returncode == 1
    assert "--batch-size 5000 exceeds the 3600 training images" in error_line(
        run, "train_distributed.py"
    )

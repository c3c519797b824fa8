"""The trainers' command lines: a user's mistake gets one line and an exit code, never a traceback.

Bad values are refused by argparse before any work (exit 2, the usage then one `error:` line);
mistakes found later (a --dataset that is not the IMDB layout, a failed download) print one
`error:` line that says what to do and exit 1. The real CLI runs in a subprocess, as a user would
type it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from imdb_sentiment import train, train_distributed

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINERS = ("imdb_sentiment.train", "imdb_sentiment.train_distributed")


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
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


PARSERS = [train.parse_args, train_distributed.parse_args]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--epochs", "0"], "argument --epochs: must be a whole number >= 1, got '0'"),
        (["--batch-size", "-32"], "argument --batch-size: must be a whole number >= 1"),
        (["--learning-rate", "0"], "argument --learning-rate: must be a number > 0"),
        (["--max-tokens", "zero"], "argument --max-tokens: must be a whole number >= 1"),
        (["--sequence-length", "0"], "argument --sequence-length: must be a whole number >= 1"),
        (["--seed", "-1"], "argument --seed: must be a whole number from 0 to 2**32 - 1"),
        (["--dataset", "no/such"], "argument --dataset: no such file or folder: 'no/such'"),
        (["--model-dir", "README.md"], "argument --model-dir: 'README.md' is a file, not a folder"),
        (["--data-dir", "README.md"], "argument --data-dir: 'README.md' is a file, not a folder"),
    ],
)
@pytest.mark.parametrize("parse_args", PARSERS)
def test_bad_values_are_refused_before_any_work(
    parse_args, args: list[str], expected: str, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--sample", *args])
    assert exit_.value.code == 2
    assert expected in capsys.readouterr().err.splitlines()[-1]


def test_train_refuses_an_unknown_model_and_a_bad_c(capsys: pytest.CaptureFixture) -> None:
    for args, expected in (
        (["--model", "svm"], "argument --model: invalid choice: 'svm'"),
        (["--tfidf-c", "-1"], "argument --tfidf-c: must be a number > 0"),
    ):
        with pytest.raises(SystemExit) as exit_:
            train.parse_args(["--sample", *args])
        assert exit_.value.code == 2
        assert expected in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("module", TRAINERS)
def test_a_bad_value_is_one_line_and_exit_2_from_the_real_cli(module: str) -> None:
    run = run_cli(module, "--sample", "--epochs", "0")
    assert run.returncode == 2
    prog = module.rsplit(".", 1)[1] + ".py"
    assert error_line(run, prog) == (
        f"{prog}: error: argument --epochs: must be a whole number >= 1, got '0'"
    )
    assert run.stderr.startswith("usage: ") and run.stdout == ""


@pytest.mark.parametrize("module", TRAINERS)
def test_a_dataset_that_is_not_imdb_is_one_line_and_exit_1(module: str, tmp_path: Path) -> None:
    (tmp_path / "dataset" / "aclImdb").mkdir(parents=True)
    run = run_cli(module, f"--dataset={tmp_path / 'dataset'}", f"--model-dir={tmp_path / 'm'}")
    assert run.returncode == 1
    line = error_line(run, module.rsplit(".", 1)[1] + ".py")
    assert "aclImdb/train/ needs reviews in both pos/ and neg/" in line
    assert "check --dataset, --data-dir and --url, or use the committed --sample" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("module", TRAINERS)
def test_a_failed_download_is_one_line_and_exit_1(module: str, tmp_path: Path) -> None:
    url = refused_url() + "aclImdb_v1.tar.gz"
    run = run_cli(
        module, f"--url={url}", f"--data-dir={tmp_path / 'c'}", f"--model-dir={tmp_path}/m"
    )
    assert run.returncode == 1
    line = error_line(run, module.rsplit(".", 1)[1] + ".py")
    assert f"{url}: download failed" in line
    assert not (tmp_path / "m").exists()
    assert not list((tmp_path / "c").glob("*"))  # nothing half-written in the cache


@pytest.mark.parametrize("parse_args", PARSERS)
def test_help_states_every_default_with_the_data_flags_first(
    parse_args, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--help"])
    assert exit_.value.code == 0
    options = capsys.readouterr().out.split("options:", 1)[1]
    flags = [line.split()[0].rstrip(",") for line in options.splitlines() if line[2:4] == "--"]
    assert flags[:5] == ["--sample", "--dataset", "--data-dir", "--url", "--model-dir"]
    assert " ".join(options.split()).count("(default:") == len(flags)


def test_the_distributed_trainer_refuses_bad_checkpoint_flags_and_clusters(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    two = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}'
    for env, args, expected in (
        (None, ["--checkpoint-steps", "-1"], "argument --checkpoint-steps: must be a whole"),
        (None, ["--checkpoint-dir", "README.md"], "'README.md' is a file, not a folder"),
        (two, ["--batch-size", "33"], "--batch-size 33 does not split evenly over the 2 workers"),
        ("{not json", [], "TF_CONFIG is not a cluster and a task"),
    ):
        if env is None:
            monkeypatch.delenv("TF_CONFIG", raising=False)
        else:
            monkeypatch.setenv("TF_CONFIG", env)
        with pytest.raises(SystemExit) as exit_:
            train_distributed.parse_args(["--sample", *args])
        assert exit_.value.code == 2
        assert expected in capsys.readouterr().err.splitlines()[-1]

"""The trainers' command lines: a user's mistake gets one line and an exit code, never a traceback.

Bad values are refused by argparse before any work (exit 2, the usage then one `error:` line);
mistakes found later (a folder that holds no DICOM series, a failed download) print one `error:`
line that says what to do and exit 1. The real CLI runs in a subprocess, as a user would type it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ct_scans import train, train_distributed

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINERS = ("ct_scans.train", "ct_scans.train_distributed")


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
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
        (["--sample", "--rank", "0"], "argument --rank: must be a whole number >= 1, got '0'"),
        (
            ["--sample", "--oversampling", "-1"],
            "argument --oversampling: must be a whole number >= 0",
        ),
        (["--sample", "--power-iterations", "-2"], "argument --power-iterations: must be a whole"),
        (
            ["--sample", "--percent", "100"],
            "argument --percent: must be a number from 0 to under 100",
        ),
        (["--sample", "--percent", "-0.5"], "argument --percent: must be a number from 0 to under"),
        (["--sample", "--percent", "nan"], "argument --percent: must be a number from 0 to under"),
        (
            ["--sample", "--seed", "-1"],
            "argument --seed: must be a whole number from 0 to 2**32 - 1",
        ),
        (["--series-dir", "no/such"], "argument --series-dir: no such file or folder: 'no/such'"),
        (["--sample", "--model-dir", "README.md"], "'README.md' is a file, not a folder"),
        (["--sample", "--data-dir", "README.md"], "'README.md' is a file, not a folder"),
        ([], "choose a scan: --sample, --series-dir DIR or --url URL [--sha256 SUM]"),
    ],
)
@pytest.mark.parametrize("parse_args", [train.parse_args, train_distributed.parse_args])
def test_bad_values_are_refused_before_any_work(
    parse_args, args: list[str], expected: str, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit) as exit_:
        parse_args(args)
    assert exit_.value.code == 2
    assert expected in capsys.readouterr().err.splitlines()[-1]


def test_distributed_refuses_zero_partitions(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        train_distributed.parse_args(["--sample", "--partitions", "0"])
    assert exit_.value.code == 2
    assert "argument --partitions: must be a whole number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("module", TRAINERS)
def test_a_bad_value_is_one_line_and_exit_2_from_the_real_cli(module: str) -> None:
    run = run_cli(module, "--sample", "--percent", "150")
    assert run.returncode == 2
    prog = module.rsplit(".", 1)[1] + ".py"
    line = error_line(run, prog)
    assert line == (
        f"{prog}: error: argument --percent: must be a number from 0 to under 100, got '150'"
    )
    assert run.stderr.startswith("usage: ")  # argparse's usage, then the error: nothing else
    assert run.stdout == ""


@pytest.mark.parametrize("module", TRAINERS)
def test_a_folder_without_a_series_is_one_line_and_exit_1(module: str, tmp_path: Path) -> None:
    (tmp_path / "scan").mkdir()
    (tmp_path / "scan" / "notes.txt").write_text("not a DICOM file\n")
    run = run_cli(module, f"--series-dir={tmp_path / 'scan'}", f"--model-dir={tmp_path / 'm'}")
    assert run.returncode == 1
    line = error_line(run, module.rsplit(".", 1)[1] + ".py")
    assert str(tmp_path / "scan") in line
    assert "check --series-dir, --url and --data-dir, or use the phantom: --sample" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("module", TRAINERS)
def test_a_failed_download_is_one_line_and_exit_1(module: str, tmp_path: Path) -> None:
    url = refused_url() + "series.zip"
    run = run_cli(
        module, f"--url={url}", f"--data-dir={tmp_path / 'c'}", f"--model-dir={tmp_path}/m"
    )
    assert run.returncode == 1
    line = error_line(run, module.rsplit(".", 1)[1] + ".py")
    assert f"{url}: download failed" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("parse_args", [train.parse_args, train_distributed.parse_args])
def test_help_puts_the_scan_first_and_states_every_default(
    parse_args, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--help"])
    assert exit_.value.code == 0
    options = capsys.readouterr().out.split("options:", 1)[1]
    flags = [line.split()[0].rstrip(",") for line in options.splitlines() if line[2:4] == "--"]
    assert flags[:6] == [
        "--sample",
        "--series-dir",
        "--url",
        "--sha256",
        "--data-dir",
        "--model-dir",
    ]
    if "--master" in flags:  # Spark's plumbing comes last
        assert flags[-2:] == ["--partitions", "--master"]
    assert " ".join(options.split()).count("(default:") == len(flags)

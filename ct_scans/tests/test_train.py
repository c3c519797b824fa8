"""ct_scans.train end to end on the phantom: the real CLI, as Katib and the harness run it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The floors of this run, read straight from case.toml so the test needs no harness (it runs in
# a case folder copied alone); tests.harness.cases reads the same table.
FLOORS = tomllib.loads((REPO_ROOT / "ct_scans" / "case.toml").read_text())["smoke"]["floors"]
METRIC_LINE = re.compile(r"^(\w+)=(\S+)$")  # what Katib's StdOut collector picks out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("ct-train")
    cmd = [sys.executable, "-m", "ct_scans.train", "--sample", "--images"]
    out = subprocess.run(
        [*cmd, f"--model-dir={tmp / 'model'}", f"--data-dir={tmp / 'data'}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp / "model", out.stdout


def test_metrics_printed_and_written_agree(run) -> None:
    model_dir, stdout = run
    printed = {m[1]: float(m[2]) for line in stdout.splitlines() if (m := METRIC_LINE.match(line))}
    metrics = json.loads((model_dir / "metrics.json").read_text())
    for name in ("psnr", "ssim", "psnr_noisy", "psnr_drop_0_1", "psnr_drop_30", "kept"):
        assert printed[name] == metrics[name], name
    assert metrics["psnr"] == metrics["psnr_drop_5"]  # --percent 5 by default


def test_denoising_the_phantom_gains_psnr_and_ssim(run) -> None:
    metrics = json.loads((run[0] / "metrics.json").read_text())
    assert metrics["psnr_gain"] >= FLOORS["psnr_gain"], metrics  # about 3.0 dB here
    assert metrics["ssim"] >= FLOORS["ssim"], metrics
    assert metrics["ssim"] > metrics["ssim_noisy"] + 0.05, metrics
    assert metrics["psnr_drop_30"] < metrics["psnr_noisy"], metrics


def test_basis_and_pictures(run) -> None:
    model_dir = run[0]
    basis = np.load(model_dir / "basis.npz")
    assert basis["u"].shape == (64 * 64, 40) and basis["s"].shape == (40,)
    assert basis["shape"].tolist() == [64, 64]
    assert np.all(np.diff(basis["s"]) <= 0)  # largest first
    assert (model_dir / "slices.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_real_scan_without_truth_reports_what_it_kept(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    from ct_scans import data

    # pydicom's real 128 x 128 CT slice, five times with small changes, as a series.
    single = tmp_path / "single"
    single.mkdir()
    (single / "ct.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    volume = data.read_series(single).volume
    series = tmp_path / "series"
    data.write_series(np.repeat(volume, 5, axis=0) + 7 * np.arange(5)[:, None, None], series)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ct_scans.train",
            f"--series-dir={series}",
            f"--model-dir={tmp_path / 'm'}",
            "--rank=5",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert "psnr" not in metrics and metrics["rank"] == 5.0 and metrics["kept"] >= 1

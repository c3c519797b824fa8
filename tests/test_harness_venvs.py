"""Isolated environments are made on demand, once, and again when their requirements change."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import venvs


def test_made_once_and_remade_when_requirements_change(tmp_path: Path) -> None:
    (tmp_path / "requirements").mkdir()
    requirements = tmp_path / "requirements/extra.txt"
    requirements.write_text("# nothing to install: the mechanism is what is tested\n")
    python = venvs.ensure("extra", root=tmp_path)
    assert python == tmp_path / ".venv-extra/bin/python"
    out = subprocess.run(
        [python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True
    )
    assert out.stdout.strip() == str(tmp_path / ".venv-extra")
    stamp = tmp_path / ".venv-extra/.installed"
    first = stamp.stat().st_mtime
    venvs.ensure("extra", root=tmp_path)
    assert stamp.stat().st_mtime == first  # nothing reinstalled
    later = time.time() + 5
    os.utime(requirements, (later, later))
    venvs.ensure("extra", root=tmp_path)
    assert stamp.stat().st_mtime > first


def test_unknown_environment_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no isolated environment 'nope'"):
        venvs.ensure("nope", root=tmp_path)

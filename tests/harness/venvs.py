"""Small isolated environments for packages that cannot live in requirements/main.txt.

`ensure("seldon")` makes `.venv-seldon` from `requirements/seldon.txt` the first time it is
asked for, and again only when that file is newer than the environment's stamp, so the tests
that need it pay the install once and the main environment stays resolvable.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness.containers import REPO_ROOT


def ensure(name: str, root: Path = REPO_ROOT) -> Path:
    """The Python of `.venv-<name>`, built from `requirements/<name>.txt` when missing or stale."""
    requirements = root / "requirements" / f"{name}.txt"
    if not requirements.exists():
        raise FileNotFoundError(f"{requirements} does not exist: no isolated environment {name!r}")
    venv = root / f".venv-{name}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists() and stamp.stat().st_mtime >= requirements.stat().st_mtime:
        return python
    print(f"making {venv.name} from {requirements.relative_to(root)} (once)", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    subprocess.run([str(python), "-m", "pip", "check"], check=True)
    stamp.touch()
    return python

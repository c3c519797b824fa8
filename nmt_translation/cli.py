"""What every command line of this case shares: flag types that refuse bad values, and `fail`.

Copied from mnist/cli.py (see there and the `# Copied from` markers; `make fix-copies` keeps
them equal).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import NoReturn


# Copied from mnist.cli.positive_int
def positive_int(text: str) -> int:
    """A whole number >= 1: epochs, a batch size, a thread count."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


# Copied from mnist.cli.non_negative_int
def non_negative_int(text: str) -> int:
    """A whole number >= 0: a count that may be zero, a depth where 0 means no limit."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


# Copied from mnist.cli.seed
def seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2**32 - 1, what NumPy accepts."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 0 to 2**32 - 1, got {text!r}"
        )
    return value


# Copied from mnist.cli.positive_float
def positive_float(text: str) -> float:
    """A finite number > 0: a learning rate."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


# Copied from mnist.cli.existing_path
def existing_path(text: str) -> Path:
    """A file or folder that is there now: data to read."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file or folder: {text!r}")
    return path


# Copied from mnist.cli.output_dir
def output_dir(text: str) -> Path:
    """A folder to write into, made if missing; refused when a file already has its name."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    return path


# Copied from mnist.cli.fail
def fail(message: str) -> NoReturn:
    """Exit 1 with `<prog>: error: <message>` on one line, as argparse words its own errors."""
    prog = Path(sys.argv[0]).name or "python"
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    raise SystemExit(1)

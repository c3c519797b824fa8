"""The UCI Adult ("Census Income") data in its original format: download (checksummed) and parse.

Two comma-separated files without a header: `adult.data` (32,561 people, the training split) and
`adult.test` (16,281, the test split). Each line has 14 attributes and the income class; a
missing value is written `?`. `adult.test` differs in two ways that a parser must handle: its
first line is `|1x3 Cross validator`, and its class labels end with a dot (`<=50K.`).

They are downloaded once from the UCI repository into a cache directory and verified against
their sha256 before anything reads them. `load_sample()` reads the real rows committed in
sample/, stored in the same format so the same parser reads both.
"""

from __future__ import annotations

import argparse
import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pooch
import requests

from income_census.cli import existing_path, output_dir

MIRROR = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
DEFAULT_DATA_DIR = Path("~/.cache/kubeflow-cases/income_census")  # expanded when used
SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
RETRIES = 2  # a failed download is tried again this often (pooch waits 1 s, then 2 s)

# sha256 of the files as UCI serves them (the same values appear in several public loaders).
SHA256 = {
    "adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
}
SAMPLE_FILES = {"adult.data": "sample-adult.data", "adult.test": "sample-adult.test"}

# The columns in file order, as adult.names describes them.
COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
NUMERIC_COLUMNS = (
    "age",
    "fnlwgt",
    "education-num",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
)
LABEL = "income"
POSITIVE = ">50K"  # label 1; "<=50K" is 0
TEST_HEADER = "|1x3 Cross validator"

Split = tuple[pd.DataFrame, np.ndarray]  # the 14 attributes, labels (N,) int64 (1 = >50K)


# Copied from mnist.data.DownloadError
class DownloadError(RuntimeError):
    """A download failed, was truncated, or does not match its checksum."""


class AdultFormatError(ValueError):
    """Text that is not a well-formed Adult data file."""


def parse_adult(text: str, source: str = "adult file") -> Split:
    """Parse the text of adult.data or adult.test into (attributes, labels).

    Values lose their surrounding spaces, `?` becomes a missing value (NaN), blank lines and
    adult.test's first line are skipped, and a trailing dot on the label is dropped.
    """
    lines = text.splitlines()
    if lines and lines[0].startswith("|"):
        lines = lines[1:]
    rows = [line for line in lines if line.strip()]
    if not rows:
        raise AdultFormatError(f"{source}: no data rows")
    for number, line in enumerate(rows, start=1):
        if line.count(",") != len(COLUMNS) - 1:
            raise AdultFormatError(
                f"{source}: data row {number} has {line.count(',') + 1} fields, "
                f"expected {len(COLUMNS)}"
            )
    frame = pd.read_csv(
        io.StringIO("\n".join(rows)),
        header=None,
        names=COLUMNS,
        skipinitialspace=True,
        na_values=["?"],
        dtype=str,
        keep_default_na=False,
    )
    labels = frame.pop(LABEL).str.rstrip(".")
    unknown = sorted(set(labels) - {POSITIVE, "<=50K"})
    if unknown:
        raise AdultFormatError(f"{source}: unknown income labels {unknown}, expected <=50K or >50K")
    for column in NUMERIC_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            raise AdultFormatError(
                f"{source}: data row {row}: {column} is {frame[column][bad].iloc[0]!r}, not a number"
            )
        frame[column] = values.astype(float)
    return frame, (labels == POSITIVE).to_numpy(np.int64)


def read_adult(path: Path) -> Split:
    """Read one Adult file from disk; format errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as err:
        raise AdultFormatError(f"{path}: not an ASCII text file ({err})") from err
    return parse_adult(text, str(path))


# Copied from mnist.data.download
def download(url: str, dest: Path, sha256: str | None, *, progress: bool = True) -> Path:
    """Download url to dest unless a verified copy is there; return dest.

    pooch streams to a temporary file beside dest and moves it into place only once its sha256
    matches, so a failed, truncated or corrupt download leaves no file that a later run would
    trust, and replicas sharing a cache volume never see half a file. It fetches again a cached
    copy that no longer matches, retries a failed download RETRIES times and draws a progress
    bar on stderr. sha256=None is for a source that publishes no checksum: the first download's
    sha256 is recorded beside it, in `<dest>.sha256`, and a later copy that differs is refused.
    """
    dest = Path(dest).expanduser()
    record = dest.with_name(dest.name + ".sha256")
    trusted = sha256 or (record.read_text().strip() if record.exists() else None)
    fetcher = pooch.create(
        dest.parent,
        base_url="",
        registry={dest.name: f"sha256:{trusted}" if trusted else None},
        urls={dest.name: url},
        retry_if_failed=RETRIES,
    )
    try:
        fetcher.fetch(dest.name, progressbar=progress)
    except ValueError as err:  # pooch's checksum test (it deleted the download) or a bad URL
        got = re.search(r"but got (\w+)", str(err))
        if got is None:
            raise DownloadError(f"{url}: download failed: {err}") from err
        why = "a corrupt download or a changed file"
        if not sha256:
            why = f"it differs from the first download's, recorded in {record}; delete {dest} and"
            why += " that record to accept the new file"
        raise DownloadError(
            f"{url}: sha256 mismatch, expected {trusted}, got {got[1]} ({why}); nothing was saved"
        ) from err
    except requests.exceptions.ChunkedEncodingError as err:  # the server hung up mid-file
        sizes = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected", str(err))
        told = f", {sizes[1]} of {int(sizes[1]) + int(sizes[2])} bytes" if sizes else ""
        raise DownloadError(f"{url}: truncated download{told}; nothing was saved") from err
    except OSError as err:  # requests' errors (a 404, a refused connection, a timeout), disk
        raise DownloadError(f"{url}: download failed: {err}") from err
    if not trusted:  # first download from a source without a published checksum: record it
        partial = record.with_name(f".{record.name}.{os.getpid()}")
        partial.write_text(pooch.file_hash(str(dest)) + "\n")
        partial.replace(record)
    return dest


def load_adult(
    data_dir: Path | str = DEFAULT_DATA_DIR,
    *,
    mirror: str = MIRROR,
    checksums: dict[str, str] = SHA256,
    progress: bool = True,
) -> tuple[Split, Split]:
    """The full standard split: ((train_rows, train_labels), (test_rows, test_labels))."""
    data_dir = Path(data_dir).expanduser()
    paths = {
        name: download(mirror.rstrip("/") + "/" + name, data_dir / name, sha, progress=progress)
        for name, sha in checksums.items()
    }
    return read_adult(paths["adult.data"]), read_adult(paths["adult.test"])


def load_sample(sample_dir: Path | str = SAMPLE_DIR) -> tuple[Split, Split]:
    """The committed sample (4,000 training and 2,000 test rows), shaped like `load_adult`."""
    sample_dir = Path(sample_dir)
    return (
        read_adult(sample_dir / SAMPLE_FILES["adult.data"]),
        read_adult(sample_dir / SAMPLE_FILES["adult.test"]),
    )


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every trainer shares to choose its data (read them with `load_chosen`)."""
    parser.add_argument(
        "--sample", action="store_true", help="train on the committed sample (default: full Adult)"
    )
    parser.add_argument(
        "--dataset",
        type=existing_path,
        default=None,
        help="a folder with adult.data and adult.test in the original format, as the pipeline's "
        "load_data step writes; overrides --sample and --data-dir (default: none)",
    )
    parser.add_argument(
        "--data-dir",
        type=output_dir,
        default=DEFAULT_DATA_DIR,
        help=f"cache for the downloaded data (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--mirror", default=MIRROR, help=f"where to download from (default: {MIRROR})"
    )


def load_chosen(args: argparse.Namespace, *, progress: bool = True) -> tuple[Split, Split]:
    """The data the flags of `add_data_arguments` chose: a prepared folder, the sample or Adult."""
    if args.dataset is not None:
        return read_adult(args.dataset / "adult.data"), read_adult(args.dataset / "adult.test")
    if args.sample:
        return load_sample()
    return load_adult(args.data_dir, mirror=args.mirror, progress=progress)

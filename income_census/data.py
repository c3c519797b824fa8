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
import hashlib
import io
import os
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

MIRROR = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
DEFAULT_DATA_DIR = Path("~/.cache/kubeflow-cases/income_census")  # expanded when used
SAMPLE_DIR = Path(__file__).resolve().parent / "sample"

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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str, *, progress: bool = True) -> Path:
    """Download url to dest unless a verified copy is there; return dest.

    The bytes go to a temporary file beside dest and are renamed into place only after the size
    and sha256 check out, so a failed, truncated or corrupt download never leaves a file that a
    later run would trust, and replicas sharing one cache volume never see half a file.
    """
    dest = Path(dest)
    if dest.exists():
        if sha256_of(dest) == sha256:
            return dest
        dest.unlink()  # a stale or tampered copy: fetch it again rather than fail forever
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest, received = hashlib.sha256(), 0
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=60) as response,
        ):
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        # http.client returns a short read rather than raising when the server hangs up early.
        if total is not None and received != total:
            raise DownloadError(f"{url}: truncated download, {received} of {total} bytes")
        if digest.hexdigest() != sha256:
            raise DownloadError(
                f"{url}: sha256 mismatch, expected {sha256}, got {digest.hexdigest()}"
                " (corrupt download or a changed file); nothing was saved"
            )
        tmp.replace(dest)  # atomic on POSIX: readers see the old state or the whole file
    except OSError as err:  # URLError, timeouts and disk errors are OSErrors
        raise DownloadError(f"{url}: download failed: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
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
        type=Path,
        default=None,
        help="a folder with adult.data and adult.test in the original format, as the pipeline's "
        "load_data step writes; overrides --sample and --data-dir (default: none)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
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

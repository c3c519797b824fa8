"""The IMDB Large Movie Review data set in its own layout: download (checksummed, atomic) and read.

Maas et al. (2011) published 50,000 labelled reviews, half for training and half for testing, as
one archive, `aclImdb_v1.tar.gz` (84,125,825 bytes), whose folders are the labels:

    aclImdb/train/pos/<id>_<stars>.txt    12,500 reviews of 7 stars or more
    aclImdb/train/neg/<id>_<stars>.txt    12,500 reviews of 4 stars or fewer
    aclImdb/train/unsup/<id>_0.txt        50,000 unlabelled reviews (not read here)
    aclImdb/test/{pos,neg}/...            the same for the test split

The archive is downloaded once into a cache folder and checked against its sha256 before anything
reads it; the reviews are read straight from it (no extraction, so no half-extracted folder can
mislead a later run), or from a folder already extracted. `--sample` reads the committed
sample/aclImdb_sample.tar.gz, which has the same layout, with the same code.

Reviews carry HTML line breaks (`<br />`). They are not removed here: the models remove them,
with the same rule in training and serving (imdb_sentiment/model.py: `standardize`).
"""

from __future__ import annotations

import argparse
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pooch
import requests

from imdb_sentiment.cli import existing_path, output_dir

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
ARCHIVE = "aclImdb_v1.tar.gz"
SIZE = 84_125_825
# sha256 of the archive as its home serves it (84,125,825 bytes); it publishes none itself.
SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
DEFAULT_DATA_DIR = Path("~/.cache/kubeflow-cases/imdb_sentiment")  # expanded when used
SAMPLE = Path(__file__).resolve().parent / "sample" / "aclImdb_sample.tar.gz"
RETRIES = 2  # a failed download is tried again this often (pooch waits 1 s, then 2 s)
LABELS = ("neg", "pos")  # label 0 and 1
VALIDATION_FRACTION = 0.2  # of the training split: val_accuracy and the probability calibration
# <id>_<stars>.txt: 7-10 stars in pos/, 1-4 in neg/ (the data set's README)
REVIEW_NAME = re.compile(r"aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt")
STARS = {"pos": range(7, 11), "neg": range(1, 5)}

Split = tuple[list[str], np.ndarray]  # review texts, labels (N,) int64: 1 positive, 0 negative


class DataError(ValueError):
    """A file or folder that is not the IMDB data set's layout."""


# Copied from mnist.data.DownloadError
class DownloadError(RuntimeError):
    """A download failed, was truncated, or does not match its checksum."""


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


def _label(name: str, where: Path) -> tuple[str, str, int] | None:
    """(split, label, id) of a labelled review's path inside the layout; None for other files."""
    match = REVIEW_NAME.fullmatch(name)
    if match is None:
        return None
    split, label, review_id, stars = match[1], match[2], int(match[3]), int(match[4])
    if stars not in STARS[label]:
        raise DataError(f"{where}: {name} has {stars} stars, which IMDB never files under {label}/")
    return split, label, review_id


def _from_archive(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.isfile() and REVIEW_NAME.fullmatch(member.name):
                    yield member.name, tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as err:  # not gzip, truncated, not a tar
        raise DataError(f"{path}: not a complete .tar.gz archive ({err})") from err


def _from_folder(path: Path) -> Iterator[tuple[str, bytes]]:
    # The folder that holds aclImdb/, or aclImdb/ itself.
    root = path if (path / "aclImdb").is_dir() else path.parent
    for file in sorted(root.glob("aclImdb/*/*/*.txt")):
        name = file.relative_to(root).as_posix()
        if REVIEW_NAME.fullmatch(name):
            yield name, file.read_bytes()


def read_reviews(path: Path | str) -> tuple[Split, Split]:
    """((train_texts, train_labels), (test_texts, test_labels)) from an archive or a folder.

    Reviews are in the order of their split, label (negative first) and numeric id, whatever
    order the archive stores them in, so every reader of the same data sees the same order.
    """
    path = Path(path).expanduser()
    found: dict[tuple[str, str, int], str] = {}
    reader = _from_folder if path.is_dir() else _from_archive
    for name, raw in reader(path):
        key = _label(name, path)
        try:
            found[key] = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: {name} is not UTF-8 text ({err})") from err
    splits = []
    for split in ("train", "test"):
        keys = sorted((k for k in found if k[0] == split), key=lambda k: (LABELS.index(k[1]), k[2]))
        labels = np.array([LABELS.index(k[1]) for k in keys], dtype=np.int64)
        if len(set(labels.tolist())) < 2:
            raise DataError(
                f"{path}: aclImdb/{split}/ needs reviews in both pos/ and neg/, found"
                f" {int(labels.sum())} positive and {int(len(labels) - labels.sum())} negative"
                " (is it the IMDB archive or its extracted folder?)"
            )
        splits.append(([found[k] for k in keys], labels))
    return splits[0], splits[1]


def load_imdb(
    data_dir: Path | str = DEFAULT_DATA_DIR,
    *,
    url: str = URL,
    sha256: str = SHA256,
    progress: bool = True,
) -> tuple[Split, Split]:
    """The full data set (25,000 training and 25,000 test reviews), downloaded once."""
    archive = download(url, Path(data_dir).expanduser() / ARCHIVE, sha256, progress=progress)
    return read_reviews(archive)


def load_sample(path: Path | str = SAMPLE) -> tuple[Split, Split]:
    """The committed sample (800 training and 400 test reviews), shaped like `load_imdb`."""
    return read_reviews(path)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every trainer shares to choose its data (read them with `load_chosen`)."""
    parser.add_argument(
        "--sample",
        action="store_true",
        help="train on the committed sample (default: the full data set)",
    )
    parser.add_argument(
        "--dataset",
        type=existing_path,
        default=None,
        help="an IMDB archive (.tar.gz) or extracted folder already on disk, such as the "
        "pipeline's load_data step writes; overrides --sample and --data-dir (default: none)",
    )
    parser.add_argument(
        "--data-dir",
        type=output_dir,
        default=DEFAULT_DATA_DIR,
        help=f"cache for the downloaded archive (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument("--url", default=URL, help=f"where to download from (default: {URL})")


def load_chosen(args: argparse.Namespace, *, progress: bool = True) -> tuple[Split, Split]:
    """The data the flags of `add_data_arguments` chose: a given archive, the sample or IMDB."""
    if args.dataset is not None:
        return read_reviews(args.dataset)
    if args.sample:
        return load_sample()
    return load_imdb(args.data_dir, url=args.url, progress=progress)


def validation_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (validation, fit) of a seeded shuffle, the same in every trainer.

    An explicit shuffled hold-out: the training split is sorted by label, and Keras'
    validation_split would take its last rows, all positive.
    """
    order = np.random.default_rng(seed).permutation(count)
    n_val = int(count * VALIDATION_FRACTION)
    return order[:n_val], order[n_val:]
